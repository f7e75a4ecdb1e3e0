"""The session folder: everything a served session keeps on disk, written atomically.

==========================  ====================================================
path                        content
==========================  ====================================================
``config.json``             the resolved settings (:class:`~auxol.serve.settings.ServeSettings`)
``session.pt``              the AuxOL learner and the count of corrections it has learned,
                            saved after every learned correction
``journal/``                every correction received, before it is acknowledged
                            (:mod:`auxol.serve.journal`)
``corrections.csv``         one row per learned correction (:data:`CORRECTION_FIELDS`)
``images/<id>.png``         every image received, as the model saw it (uint8 RGB)
``shown/<id>.png``          the last mask shown for the image, 0/255
``corrected/<id>.png``      the corrected mask received for it, 0/255
``volumes/<id>/``           an uploaded volume's record and slice masks (:mod:`auxol.serve.volumes`)
==========================  ====================================================

A later prediction or correction of the same image replaces its ``shown`` or
``corrected`` file.
"""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from auxol.data import read_image
from auxol.evaluate.metrics import correction_effort
from auxol.io import (
    read_json_object,
    write_csv,
    write_image_png,
    write_json,
    write_mask_png,
)
from auxol.serve.encoding import IMAGE_ID

CORRECTION_FIELDS = [
    "correction", "image_id", "time", "prompts", "alpha", "shown_dice", "base_dice",
    "shown_changed_px", "shown_changed_fraction", "base_changed_px", "base_changed_fraction", "source",
]
"""Columns of ``corrections.csv``: the correction's number in the journal, the image, when
the correction arrived (UTC, ISO 8601), its number of prompts, the fusion weight used
for the shown mask (empty while the foundation model is used alone), the Dice of the
shown mask and of the foundation model's mask with the corrected mask (1 = nothing to
correct), and where the correction came from (``api`` or ``label-studio``)."""


class SessionFolder:
    """The files of one session under ``root`` (created if missing); see the module docstring."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.config_path = self.root / "config.json"
        self.state_path = self.root / "session.pt"
        self.corrections_path = self.root / "corrections.csv"
        self.journal_path = self.root / "journal"
        for folder in ("images", "shown", "corrected"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.image_ids = {path.stem for path in (self.root / "images").glob("*.png")}
        self.corrections = self._read_corrections()
        self._lock = threading.Lock()  # guards corrections and image_ids

    def read_config(self) -> dict[str, Any] | None:
        """The saved settings, or None for a new session."""
        return read_json_object(self.config_path, "session settings") if self.config_path.is_file() else None

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.config_path, config)

    def _path(self, kind: str, image_id: str) -> Path:
        return self.root / kind / f"{image_id}.png"

    def save_image(self, image_id: str, image: np.ndarray) -> None:
        """Write ``images/<id>.png`` once (uint8 (H, W, 3))."""
        with self._lock:
            if image_id in self.image_ids:
                return
            self.image_ids.add(image_id)
        write_image_png(self._path("images", image_id), image)

    def load_image(self, image_id: str) -> np.ndarray | None:
        """The uint8 (H, W, 3) image saved under ``image_id``, or None if there is none (or the id is malformed)."""
        if not IMAGE_ID.fullmatch(image_id) or image_id not in self.image_ids:
            return None
        return read_image(self._path("images", image_id))

    def save_shown(self, image_id: str, mask: np.ndarray) -> None:
        write_mask_png(self._path("shown", image_id), mask)

    def save_corrected(self, image_id: str, mask: np.ndarray) -> None:
        write_mask_png(self._path("corrected", image_id), mask)

    def has_corrected(self, image_id: str) -> bool:
        """Whether a corrected mask was received for ``image_id``."""
        return self._path("corrected", image_id).is_file()

    def _read_corrections(self) -> list[dict[str, str]]:
        if not self.corrections_path.is_file():
            return []
        with open(self.corrections_path, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    def keep_corrections(self, learned: int) -> None:
        """Drop the rows of corrections numbered ``learned`` or more: written, but their learning was not saved."""
        with self._lock:
            kept = [row for row in self.corrections if not row.get("correction") or int(row["correction"]) < learned]
            if len(kept) < len(self.corrections):
                self.corrections = kept
                write_csv(self.corrections_path, self.corrections, CORRECTION_FIELDS)

    def effort(self) -> dict[str, float | None]:
        """The clinician's effort over the corrections learned, as the stream's summary reports it.

        ``auxol_accept_90`` / ``auxol_accept_95``: fraction of corrections whose shown
        mask had Dice >= 0.90 / 0.95 with the correction (could have been accepted as is);
        ``base_accept_*`` the same for the foundation model's mask; ``auxol_changed_fraction``
        / ``base_changed_fraction``: the mean share of the object the correction changed.
        None before the first correction (or for rows written before these columns existed).
        """
        with self._lock:
            rows = list(self.corrections)
        def column(name: str) -> list[float]:
            return [float(row[name]) for row in rows if row.get(name) not in (None, "")]

        return {
            key: value
            for shown, prefix in (("auxol", "shown"), ("base", "base"))
            for key, value in correction_effort(shown, column(f"{prefix}_dice"), column(f"{prefix}_changed_fraction")).items()
        }

    def append_correction(self, record: dict[str, Any]) -> None:
        """Add one row to ``corrections.csv`` (the whole file is rewritten atomically)."""
        with self._lock:
            self.corrections.append(record)
            write_csv(self.corrections_path, self.corrections, CORRECTION_FIELDS)

"""The correction journal: each correction is on disk, fsynced, before the server acknowledges it.

A correction is journaled as two files under ``journal/``, numbered in arrival order
from 0 (its *sequence number*):

- ``<seq>.pt``: its arrays (``torch.save``, loadable with ``weights_only=True``): the
  corrected mask, bool (H, W), and the prediction shown for it when there was one
  (:func:`prediction_state`);
- ``<seq>.json``: what else learning needs (the image id or the Label Studio task's
  image reference, the prompts, where it came from, when it arrived). Written last:
  a correction is in the journal once this file is.

Each file is written to a temporary name, fsynced, renamed into place, and the folder is
fsynced, so after a crash (even ``kill -9`` or a power cut) a correction is either wholly
in the journal or not at all. The session's learner records how many corrections it has
learned (:mod:`auxol.serve.session`); on start the rest are learned in order.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auxol.errors import DataError
from auxol.io import atomic_open, fsync_folder
from auxol.online import Crop, Prediction


def prediction_state(prediction: Prediction) -> dict[str, Any]:
    """The parts of a shown prediction that :meth:`AuxOL.learn` reads, as tensors and plain values.

    The full-image foundation logits (N, H, W) are left out: learning reads the crops'
    own logits, and the full ones would make a journal entry N x 4 bytes per pixel.
    """
    return {
        "base_mask": torch.from_numpy(prediction.base_mask.copy()),
        "fm_mask": torch.from_numpy(prediction.fm_mask.copy()),
        "click_boxes": [None if box is None else list(box) for box in prediction.click_boxes],
        "click_extent": prediction.click_extent,
        "boxcut_mask": torch.from_numpy(prediction.boxcut_mask.copy()),
        "mask": torch.from_numpy(prediction.mask.copy()),
        "alpha": prediction.alpha,
        "crops": [
            {
                "box": list(crop.box),
                "aux_input": crop.aux_input,
                "base_logits": torch.from_numpy(crop.base_logits),
                "aux_logits": torch.from_numpy(crop.aux_logits),
                "fused_prob": torch.from_numpy(crop.fused_prob),
                "click": None if crop.click is None else list(crop.click),
                "prompt": crop.prompt,
            }
            for crop in prediction.crops
        ],
    }


def prediction_from_state(state: dict[str, Any]) -> Prediction:
    """Inverse of :func:`prediction_state`; ``base_logits`` is empty, shape (0, H, W)."""
    base_mask = state["base_mask"].numpy()
    crops = [
        Crop(
            box=tuple(crop["box"]),
            aux_input=crop["aux_input"],
            base_logits=crop["base_logits"].numpy(),
            aux_logits=crop["aux_logits"].numpy(),
            fused_prob=crop["fused_prob"].numpy(),
            click=None if crop.get("click") is None else tuple(crop["click"]),
            prompt=crop.get("prompt", 0),
        )
        for crop in state["crops"]
    ]
    return Prediction(
        base_logits=np.zeros((0, *base_mask.shape), dtype=np.float32),
        base_mask=base_mask,
        fm_mask=state["fm_mask"].numpy() if "fm_mask" in state else base_mask,
        boxcut_mask=state["boxcut_mask"].numpy(),
        mask=state["mask"].numpy(),
        alpha=state["alpha"],
        crops=crops,
        click_boxes=[None if box is None else tuple(box) for box in state.get("click_boxes", [None] * len(crops))],
        click_extent=state.get("click_extent"),
    )


class CorrectionJournal:
    """The corrections of one session, in ``folder`` (created if missing); see the module docstring."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for unfinished in self.folder.glob(".*.tmp"):  # a write cut by a crash: never part of the journal
            unfinished.unlink()
        self._lock = threading.Lock()
        self._meta: list[dict[str, Any]] = []
        while (path := self._path(len(self._meta), "json")).is_file():
            try:
                self._meta.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as error:
                raise DataError(f"{path}: unreadable journal entry ({error})") from None

    def _path(self, seq: int, suffix: str) -> Path:
        return self.folder / f"{seq:06d}.{suffix}"

    def __len__(self) -> int:
        with self._lock:
            return len(self._meta)

    def append(self, meta: dict[str, Any], corrected: np.ndarray, prediction: Prediction | None) -> int:
        """Journal one correction durably; returns its sequence number.

        Args:
            meta: JSON-able facts of the correction (see the module docstring).
            corrected: bool (H, W) corrected mask.
            prediction: the prediction shown for it, or None if there was none.
        """
        arrays = {
            "corrected": torch.from_numpy(np.ascontiguousarray(corrected, dtype=bool)),
            "prediction": None if prediction is None else prediction_state(prediction),
        }
        with self._lock:
            seq = len(self._meta)
            entry = {**meta, "seq": seq}
            with atomic_open(self._path(seq, "pt"), "wb") as handle:
                torch.save(arrays, handle)
            with atomic_open(self._path(seq, "json"), "w", encoding="utf-8") as handle:
                json.dump(entry, handle)
            fsync_folder(self.folder)
            self._meta.append(entry)
        return seq

    def meta(self, seq: int) -> dict[str, Any]:
        """The JSON facts of correction ``seq``."""
        with self._lock:
            return self._meta[seq]

    def arrays(self, seq: int) -> tuple[np.ndarray, Prediction | None]:
        """The corrected mask, bool (H, W), and the shown prediction (or None) of correction ``seq``."""
        path = self._path(seq, "pt")
        try:
            arrays = torch.load(path, weights_only=True)
        except Exception as error:  # torch raises many kinds for a damaged file
            raise DataError(f"{path}: unreadable journal entry ({type(error).__name__})") from None
        prediction = arrays["prediction"]
        return arrays["corrected"].numpy(), None if prediction is None else prediction_from_state(prediction)

    def latest_for(self, image_id: str) -> int | None:
        """The sequence number of the last correction journaled for ``image_id``, or None."""
        with self._lock:
            return next((entry["seq"] for entry in reversed(self._meta) if entry.get("image_id") == image_id), None)

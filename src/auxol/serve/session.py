"""One served AuxOL session: predictions a person waits for, and durable learning that never makes them wait.

- :meth:`ServeSession.predict` embeds the image once (outside any lock: the costly
  part), then runs the learner with its weights as they are, and remembers the
  result as the image's shown prediction.
- :meth:`ServeSession.learn` (a correction of a shown prediction) and
  :meth:`ServeSession.submit_annotation` (a Label Studio annotation) check the
  corrected mask and journal it durably (:mod:`auxol.serve.journal`) before they
  return, so an acknowledged correction survives ``kill -9``.
- One worker thread learns the journaled corrections in journal order: ``AuxOL.learn``
  (its optimiser steps run in the learner's own background thread, so predictions run
  between them), the image's row of ``corrections.csv``, then ``session.pt``: the
  learner's whole state (weights, optimiser, online batch, alphas, RNG) together with
  the number of corrections learned, in one atomic file.
- On start, the corrections journaled but not in ``session.pt`` are learned, in order,
  while the server already answers (``learning_queue`` in :meth:`ServeSession.status`).
  Learning is a function of the saved state and the journal alone, so the learner that
  catches up after a crash equals one that never crashed.
- Prequential: a correction is learned from the prediction shown for its image, after
  that prediction was returned; it can only change later predictions. A Label Studio
  annotation of an image no prediction is waiting for is predicted by the worker (from
  the annotation's rectangles and key points, else boxes around its mask) just before
  it is learned. An image is learned once from Label Studio: a later annotation of an
  image already learned replaces ``corrected/<id>.png`` but is not learned again, since a
  new prediction of the image would already know its label (its fusion weight would
  leak into the alpha history).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from auxol.errors import AuxolError, DataError, PromptError
from auxol.evaluate.metrics import changed_pixels, dice
from auxol.models import PromptableModel
from auxol.online import AuxOL, AuxOLConfig, Prediction
from auxol.online.state_file import read_state_file, write_state_file
from auxol.prompts import DEFAULT_BOX_MARGIN, Prompt, prompts_from_mask
from auxol.serve.cache import DEFAULT_CACHE_SIZE, ImageCache, ImageEntry
from auxol.serve.encoding import image_id
from auxol.serve.journal import CorrectionJournal
from auxol.serve.settings import ServeSettings
from auxol.serve.store import SessionFolder

LOG = logging.getLogger(__name__)

TaskImageReader = Callable[[str], np.ndarray]
"""Reads a Label Studio task's image reference into a uint8 (H, W, 3) image."""

_NEW_LEARNER = threading.Lock()
"""Creating a learner seeds the process-wide generators: one at a time."""


class UnknownImageError(DataError):
    """An image id this session never received."""


class NothingToCorrectError(DataError):
    """A correction for an image that has no shown prediction waiting for one."""


class ServeSession:
    """The frozen model, the AuxOL learner, the images in memory, the journal and the session folder.

    Use :meth:`open`. Args:
        model: the frozen foundation model (shared by every session of a server).
        learner: an AuxOL learner around ``model`` with ``background=True``.
        folder: where the session is kept.
        settings: the session's resolved settings (reported by :meth:`status`).
        progress: what ``session.pt`` holds besides the learner (:meth:`_progress`).
        cache_size: images kept in memory (with embedding and shown prediction); older
            ones are read back from ``folder`` when asked for.
        read_task_image: reads a Label Studio task's image for a journaled annotation.
    """

    def __init__(
        self,
        model: PromptableModel,
        learner: AuxOL,
        folder: SessionFolder,
        settings: ServeSettings,
        progress: dict[str, Any],
        cache_size: int = DEFAULT_CACHE_SIZE,
        read_task_image: TaskImageReader | None = None,
    ) -> None:
        self.model = model
        self.learner = learner
        self.folder = folder
        self.settings = settings
        self.cache = ImageCache(cache_size)
        self.journal = CorrectionJournal(folder.journal_path)
        self.learned: int = progress.get("learned", 0)
        """Corrections of the journal learned (or skipped as failed) and saved: numbers 0 .. learned - 1."""
        self.learned_images: set[str] = set(progress.get("learned_images", []))
        self.failed: list[int] = list(progress.get("failed", []))
        self.last_error: str | None = None
        self.read_task_image = read_task_image
        self._submit_lock = threading.Lock()  # a shown prediction is journaled once
        self._progress = threading.Condition()  # guards learned; notified when it grows or work arrives
        self._closing = False
        self.folder.keep_corrections(self.learned)
        self._worker = threading.Thread(target=self._run, name="auxol-serve-learn", daemon=True)
        self._worker.start()

    @classmethod
    def open(
        cls,
        folder: SessionFolder,
        model: PromptableModel,
        settings: ServeSettings,
        cache_size: int = DEFAULT_CACHE_SIZE,
        read_task_image: TaskImageReader | None = None,
    ) -> ServeSession:
        """Resume the session saved in ``folder`` (its ``session.pt`` and journal), or start a new one; writes ``config.json``.

        Corrections journaled but not yet learned are learned in the background from now on.
        """
        with _NEW_LEARNER:
            if folder.state_path.is_file():
                state = read_state_file(folder.state_path, model.device)
                learner = AuxOL(model, AuxOLConfig.from_dict(state["config"]), background=True)
                learner.load_state_dict(state)
                progress = state.get("serve", {})
            else:
                learner = AuxOL(model, settings.auxol, background=True)
                progress = {}
        folder.write_config(settings.to_dict())
        return cls(model, learner, folder, settings, progress, cache_size, read_task_image)

    # ------------------------------------------------------------------ images

    def add_image(self, image: np.ndarray) -> str:
        """Receive a uint8 (H, W, 3) image: keep it in memory and in ``images/``; returns its id."""
        key = image_id(image)
        if self.cache.get(key) is None:
            self.cache.put(key, ImageEntry(image))
        self.folder.save_image(key, image)
        return key

    def image(self, key: str) -> np.ndarray:
        """The uint8 (H, W, 3) image with id ``key``."""
        return self._entry(key).image

    def _entry(self, key: str) -> ImageEntry:
        entry = self.cache.get(key)
        if entry is None:
            image = self.folder.load_image(key)
            if image is None:
                raise UnknownImageError(f"unknown image id {key!r}: upload the image first")
            entry = ImageEntry(image)
            self.cache.put(key, entry)
        return entry

    # -------------------------------------------------------------- prediction

    def _predict(self, key: str, prompts: list[Prompt]) -> tuple[ImageEntry, Prediction]:
        entry = self._entry(key)
        if not prompts:
            raise PromptError("no prompt: give at least one box or point")
        height, width = entry.image.shape[:2]
        for prompt in prompts:  # before the costly embedding
            prompt.check_inside(height, width, source=f"image {key}")
        if entry.embedding is None:
            entry.embedding = self.model.embed(entry.image)
        return entry, self.learner.predict(entry.image, prompts, entry.embedding)

    def predict(self, key: str, prompts: list[Prompt]) -> Prediction:
        """Segment image ``key`` with ``prompts`` (image pixels) and keep the result as its shown prediction.

        The shown mask is also written to ``shown/<id>.png``.
        """
        entry, prediction = self._predict(key, prompts)
        entry.prediction = prediction
        self.folder.save_shown(key, prediction.mask)
        return prediction

    def has_prediction(self, key: str) -> bool:
        """Whether image ``key`` has a shown prediction waiting for a correction."""
        return self._entry(key).prediction is not None

    # ------------------------------------------------------------- corrections

    def check_correction(self, key: str, corrected: np.ndarray) -> np.ndarray:
        """``corrected`` as bool (H, W) if it can correct image ``key``: the image's size, not empty."""
        corrected = np.asarray(corrected, dtype=bool)
        height, width = self.image(key).shape[:2]
        if corrected.shape != (height, width):
            size = "x".join(str(n) for n in corrected.shape[::-1])
            raise DataError(f"corrected mask is {size} pixels but image {key} is {width}x{height}")
        if not corrected.any():
            raise DataError(f"corrected mask of image {key} is empty: nothing to learn")
        return corrected

    def learn(self, key: str, corrected: np.ndarray, source: str = "api") -> dict[str, Any]:
        """Journal the corrected mask of image ``key``'s shown prediction; it is learned in the background.

        Args:
            key: the image id.
            corrected: bool (H, W) at the image's size, not empty (see :meth:`check_correction`).
            source: where the correction came from, for ``corrections.csv``.

        Returns ``{"image_id", "status", "correction", "learning_queue"}``: status
        ``queued`` (journaled now; the shown prediction is used up, a second correction
        needs a new prediction), or ``already journaled`` when the same mask was
        journaled for the image and no prediction waits (a client re-sending after a
        lost answer or a restart).
        """
        corrected = self.check_correction(key, corrected)
        entry = self._entry(key)
        with self._submit_lock:
            prediction = entry.prediction
            if prediction is None:
                seq = self.journal.latest_for(key)
                if seq is not None and np.array_equal(self.journal.arrays(seq)[0], corrected):
                    return self._answer(key, "already journaled", seq)
                raise NothingToCorrectError(f"image {key} has no shown prediction waiting for a correction: predict it first")
            seq = self._journal(corrected, prediction, {"image_id": key, "source": source})
            entry.prediction = None
        return self._answer(key, "queued", seq)

    def submit_annotation(
        self, corrected: np.ndarray, reference: str, key: str | None, prompts: list[Prompt], facts: dict[str, Any]
    ) -> dict[str, Any]:
        """Journal a Label Studio annotation's mask; it is learned in the background (see the module docstring).

        Args:
            corrected: bool (H, W) mask of the annotation.
            reference: the task's image reference, read by the worker when ``key`` is None.
            key: the image's id if it is known (predicted before), else None.
            prompts: the annotation's own prompts, for an image with no prediction waiting.
            facts: what else to journal (task and annotation ids).
        """
        with self._submit_lock:
            prediction = None
            if key is not None:
                corrected = self.check_correction(key, corrected)
                entry = self._entry(key)
                prediction, entry.prediction = entry.prediction, None
            meta = {"image_id": key, "image": reference, "source": "label-studio", "prompts": [p.to_dict() for p in prompts], **facts}
            seq = self._journal(corrected, prediction, meta)
        return self._answer(key, "queued", seq)

    def _journal(self, corrected: np.ndarray, prediction: Prediction | None, meta: dict[str, Any]) -> int:
        meta = {**meta, "time": datetime.now(UTC).isoformat(timespec="seconds")}
        seq = self.journal.append(meta, corrected, prediction)
        with self._progress:
            self._progress.notify_all()
        return seq

    def _answer(self, key: str | None, status: str, seq: int) -> dict[str, Any]:
        return {"image_id": key, "status": status, "correction": seq, "learning_queue": self.queued()}

    # ---------------------------------------------------------------- learning

    def _run(self) -> None:
        """The worker: learn each journaled correction in order, until :meth:`close`."""
        while True:
            with self._progress:
                while self.learned >= len(self.journal) and not self._closing:
                    self._progress.wait()
                if self._closing:
                    return
                seq = self.learned
            self._learn_one(seq)
            with self._progress:
                self.learned = seq + 1
                self._progress.notify_all()

    def _learn_one(self, seq: int) -> None:
        """Learn correction ``seq`` and save; a correction that cannot be learned is logged and skipped."""
        try:
            self._apply(seq)
        except Exception as error:  # noqa: BLE001 - the worker must go on with the next correction
            self.failed.append(seq)
            self.last_error = f"correction {seq} not learned: {error}"
            LOG.error("auxol serve: %s", self.last_error, exc_info=not isinstance(error, AuxolError))
        self._save(seq + 1)

    def _apply(self, seq: int) -> None:
        meta = self.journal.meta(seq)
        corrected, prediction = self.journal.arrays(seq)
        key = meta.get("image_id")
        if key is None:
            if self.read_task_image is None:
                raise DataError(f"task image {meta.get('image')!r}: no reader for Label Studio task images")
            key = self.add_image(self.read_task_image(meta["image"]))
        corrected = self.check_correction(key, corrected)
        if prediction is None:
            if key in self.learned_images:
                self.folder.save_corrected(key, corrected)
                return
            prompts = [Prompt.from_dict(item) for item in meta.get("prompts", [])]
            _, prediction = self._predict(key, prompts or prompts_from_mask(corrected, "box", box_margin=DEFAULT_BOX_MARGIN))
        self.learner.learn(prediction, corrected)
        self.folder.save_corrected(key, corrected)
        self.folder.append_correction({
            "correction": seq,
            "image_id": key,
            "time": meta["time"],
            "prompts": len(prediction.click_boxes),
            "alpha": prediction.alpha,
            "shown_dice": dice(prediction.mask, corrected),
            "base_dice": dice(prediction.base_mask, corrected),
            **effort_columns(prediction, corrected),
            "source": meta["source"],
        })
        self.learned_images.add(key)

    def _save(self, learned: int) -> None:
        """Write the learner with the count of corrections learned to ``session.pt``, atomically."""
        progress = {"learned": learned, "learned_images": sorted(self.learned_images), "failed": list(self.failed)}
        write_state_file(self.folder.state_path, {**self.learner.state_dict(), "serve": progress})

    def queued(self) -> int:
        """Corrections journaled and not yet learned."""
        with self._progress:
            return len(self.journal) - self.learned

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every correction journaled so far is learned and saved; False if ``timeout`` (s) ran out first."""
        target = len(self.journal)
        with self._progress:
            return self._progress.wait_for(lambda: self.learned >= target, timeout)

    def close(self) -> None:
        """Stop the worker after the correction it is learning; the rest stay journaled for the next start."""
        with self._progress:
            self._closing = True
            self._progress.notify_all()
        self._worker.join()

    def status(self) -> dict[str, Any]:
        """Counters of the session, as ``GET /api/status`` returns them."""
        return {
            "model": self.settings.model,
            "preset": self.settings.preset,
            "session": str(self.folder.root),
            "images_seen": len(self.folder.image_ids),
            "images_learned": self.learner.images_rectified,
            "corrections_journaled": len(self.journal),
            "corrections_failed": len(self.failed),
            "learning_queue": self.queued(),
            "alpha_history": self.learner.alphas_recorded,
            "alpha": self.learner.alpha,
            "images_in_memory": len(self.cache),
            "last_error": self.last_error,
            **self.folder.effort(),
        }


def effort_columns(prediction: Prediction, corrected: np.ndarray) -> dict[str, float]:
    """What the correction changed: pixels of the shown (AuxOL) and of the base mask that
    differ from ``corrected`` (|mask XOR corrected|), and that count as a share of the
    corrected object's area (the stream's ``*_changed_px`` / ``*_changed_fraction``)."""
    shown_px, shown_fraction = changed_pixels(prediction.mask, corrected)
    base_px, base_fraction = changed_pixels(prediction.base_mask, corrected)
    return {
        "shown_changed_px": shown_px,
        "shown_changed_fraction": shown_fraction,
        "base_changed_px": base_px,
        "base_changed_fraction": base_fraction,
    }

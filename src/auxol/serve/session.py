"""One served AuxOL session: predictions a person waits for, and learning that never makes them wait.

- :meth:`ServeSession.predict` embeds the image once (outside any lock: the costly
  part), then runs the learner with its weights as they are, and remembers the
  result as the image's shown prediction.
- :meth:`ServeSession.learn` checks a corrected mask and queues it. One worker thread
  learns from the queued corrections in arrival order: ``AuxOL.learn``, then the
  learner's optimiser steps (in the learner's own background thread, so predictions
  run between the steps), then it saves the learner atomically to ``session.pt`` and
  appends the image's row to ``corrections.csv``.
- Prequential: a correction is learned from the prediction shown for its image, after
  that prediction was returned; it can only change later predictions.
- The learner is safe to share between the request threads and the worker: its own lock
  orders predictions, learning and the copy of its state that is saved.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np

from auxol.errors import DataError, PromptError
from auxol.evaluate.metrics import dice
from auxol.models import PromptableModel
from auxol.online import AuxOL, Prediction
from auxol.prompts import Prompt
from auxol.serve.cache import DEFAULT_CACHE_SIZE, ImageCache, ImageEntry
from auxol.serve.encoding import image_id
from auxol.serve.settings import ServeSettings
from auxol.serve.store import SessionFolder

LOG = logging.getLogger(__name__)


class UnknownImageError(DataError):
    """An image id this session never received."""


class NothingToCorrectError(DataError):
    """A correction for an image that has no shown prediction waiting for one."""


class ServeSession:
    """The frozen model, the AuxOL learner, the images in memory and the session folder.

    Args:
        model: the frozen foundation model.
        learner: an AuxOL learner around ``model`` with ``background=True``.
        folder: where the session is kept.
        settings: the session's resolved settings (reported by :meth:`status`).
        cache_size: images kept in memory (with embedding and shown prediction); older
            ones are read back from ``folder`` when asked for.
    """

    def __init__(
        self,
        model: PromptableModel,
        learner: AuxOL,
        folder: SessionFolder,
        settings: ServeSettings,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.model = model
        self.learner = learner
        self.folder = folder
        self.settings = settings
        self.cache = ImageCache(cache_size)
        self.last_error: str | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auxol-serve-learn")
        self._pending: set[Future] = set()
        self._pending_lock = threading.Lock()

    @classmethod
    def open(
        cls, folder: SessionFolder, model: PromptableModel, settings: ServeSettings, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> ServeSession:
        """Resume the session saved in ``folder`` (its ``session.pt``), or start a new one; writes ``config.json``."""
        if folder.state_path.is_file():
            learner = AuxOL.load(folder.state_path, model, background=True)
        else:
            learner = AuxOL(model, settings.auxol, background=True)
        folder.write_config(settings.to_dict())
        return cls(model, learner, folder, settings, cache_size)

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

    def predict(self, key: str, prompts: list[Prompt]) -> Prediction:
        """Segment image ``key`` with ``prompts`` (image pixels) and keep the result as its shown prediction.

        The shown mask is also written to ``shown/<id>.png``.
        """
        entry = self._entry(key)
        if not prompts:
            raise PromptError("no prompt: give at least one box or point")
        height, width = entry.image.shape[:2]
        for prompt in prompts:  # before the costly embedding
            prompt.check_inside(height, width, source=f"image {key}")
        if entry.embedding is None:
            entry.embedding = self.model.embed(entry.image)
        prediction = self.learner.predict(entry.image, prompts, entry.embedding)
        entry.prediction = prediction
        self.folder.save_shown(key, prediction.mask)
        return prediction

    def has_prediction(self, key: str) -> bool:
        """Whether image ``key`` has a shown prediction waiting for a correction."""
        return self._entry(key).prediction is not None

    # ---------------------------------------------------------------- learning

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

    def update_learned(self, key: str, corrected: np.ndarray) -> bool:
        """Save ``corrected`` over the correction already learned for image ``key``; returns whether it did.

        Only when the image has no shown prediction waiting for a correction and a
        correction of it was learned before: an updated annotation is kept on disk but not
        learned twice.
        """
        if self.has_prediction(key) or not self.folder.has_corrected(key):
            return False
        self.folder.save_corrected(key, corrected)
        return True

    def learn(self, key: str, corrected: np.ndarray, source: str = "api") -> int:
        """Queue learning from the corrected mask of image ``key``'s shown prediction.

        Args:
            key: the image id.
            corrected: bool (H, W) at the image's size, not empty (see :meth:`check_correction`).
            source: where the correction came from, for ``corrections.csv``.

        Returns the number of corrections queued or being learned. The shown prediction
        is used up: a second correction needs a new prediction first.
        """
        entry = self._entry(key)
        corrected = self.check_correction(key, corrected)
        prediction, entry.prediction = entry.prediction, None
        if prediction is None:
            raise NothingToCorrectError(f"image {key} has no shown prediction waiting for a correction: predict it first")
        self.folder.save_corrected(key, corrected)
        record = {
            "image_id": key,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "prompts": len(prediction.crops),
            "alpha": prediction.alpha,
            "shown_dice": dice(prediction.mask, corrected),
            "base_dice": dice(prediction.base_mask, corrected),
            "source": source,
        }
        with self._pending_lock:
            future = self._worker.submit(self._learn, prediction, corrected, record)
            self._pending.add(future)
        future.add_done_callback(self._finished)
        return self.queued()

    def _learn(self, prediction: Prediction, corrected: np.ndarray, record: dict[str, Any]) -> None:
        self.learner.learn(prediction, corrected)
        self.learner.save(self.folder.state_path)  # after its optimiser steps, between which predictions run
        self.folder.append_correction(record)

    def _finished(self, future: Future) -> None:
        with self._pending_lock:
            self._pending.discard(future)
        error = future.exception()
        if error is not None:
            self.last_error = f"learning failed: {type(error).__name__}: {error}"
            LOG.error("auxol serve: %s", self.last_error, exc_info=error)

    def queued(self) -> int:
        """Corrections queued or being learned."""
        with self._pending_lock:
            return len(self._pending)

    def wait(self) -> None:
        """Return when every correction queued so far is learned and saved."""
        self._worker.submit(lambda: None).result()

    def close(self) -> None:
        """Learn what is queued, then stop the worker."""
        self._worker.shutdown(wait=True)

    def status(self) -> dict[str, Any]:
        """Counters of the session, as ``GET /api/status`` returns them."""
        return {
            "model": self.settings.model,
            "preset": self.settings.preset,
            "session": str(self.folder.root),
            "images_seen": len(self.folder.image_ids),
            "images_learned": self.learner.images_rectified,
            "learning_queue": self.queued(),
            "alpha_history": self.learner.alphas_recorded,
            "alpha": self.learner.alpha,
            "images_in_memory": len(self.cache),
            "last_error": self.last_error,
        }

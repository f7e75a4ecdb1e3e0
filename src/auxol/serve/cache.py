"""The images a session holds in memory: the most recently used ones, with their embedding and shown prediction."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from auxol.models import Embedding
from auxol.online import Prediction

DEFAULT_CACHE_SIZE = 32


@dataclass
class ImageEntry:
    """One image in memory.

    Attributes:
        image: uint8 (H, W, 3) RGB.
        embedding: the foundation model's embedding, once computed.
        prediction: the last prediction shown for the image and not learned yet, if any.
    """

    image: np.ndarray
    embedding: Embedding | None = None
    prediction: Prediction | None = None


class ImageCache:
    """At most ``capacity`` entries by image id; adding one more drops the least recently used."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, ImageEntry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image_id: str) -> ImageEntry | None:
        with self._lock:
            entry = self._entries.get(image_id)
            if entry is not None:
                self._entries.move_to_end(image_id)
            return entry

    def put(self, image_id: str, entry: ImageEntry) -> None:
        with self._lock:
            self._entries[image_id] = entry
            self._entries.move_to_end(image_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

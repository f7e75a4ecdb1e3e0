"""Many sessions under one root folder, sharing one frozen foundation model.

A session is named (letters, digits, ``.``, ``_``, ``-``; at most 64 characters) and
lives in ``<root>/<name>/`` (:mod:`auxol.serve.store`). It is opened the first time a
request names it, and resumed from its folder if it has one; a session folder on disk
is listed by ``GET /api/sessions`` even before it is opened. Each Label Studio project
gets the session ``label-studio-<project id>``. Sessions share nothing but the model:
each has its own learner, images, journal and worker.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auxol.errors import DataError
from auxol.models import PromptableModel
from auxol.serve.cache import DEFAULT_CACHE_SIZE
from auxol.serve.session import ServeSession, TaskImageReader
from auxol.serve.settings import ServeSettings
from auxol.serve.store import SessionFolder
from auxol.serve.volumes import remove_interrupted_uploads

LOG = logging.getLogger("auxol.serve")

DEFAULT_SESSION = "default"
SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

SettingsResolver = Callable[[SessionFolder], ServeSettings]
"""The settings of the session in a folder: its saved ones, or new ones from the server's options."""


class Sessions:
    """The sessions of one server.

    Args:
        root: the folder holding one folder per session (created if missing).
        model: the frozen foundation model every session uses.
        settings_for: resolves a session folder's settings (raises ConfigError for a
            folder whose saved settings do not fit ``model``).
        cache_size: images each session keeps in memory.
        read_task_image: reads Label Studio task images for the sessions' workers.
    """

    def __init__(
        self,
        root: str | Path,
        model: PromptableModel,
        settings_for: SettingsResolver,
        cache_size: int = DEFAULT_CACHE_SIZE,
        read_task_image: TaskImageReader | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.settings_for = settings_for
        self.cache_size = cache_size
        self.read_task_image = read_task_image
        self._open: dict[str, ServeSession] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None = None) -> ServeSession:
        """The session called ``name`` (None: ``default``), opened or resumed on first use."""
        name = name or DEFAULT_SESSION
        if not SESSION_NAME.fullmatch(name):
            raise DataError(f"session name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        with self._lock:
            if name not in self._open:
                folder = SessionFolder(self.root / name)
                self._open[name] = ServeSession.open(
                    folder, self.model, self.settings_for(folder), self.cache_size, self.read_task_image
                )
                for scratch in remove_interrupted_uploads(folder.root):
                    LOG.info("session %s: removed %s, left by an upload its server did not finish", name, scratch)
            return self._open[name]

    def names(self) -> list[str]:
        """The sessions open or on disk, sorted."""
        on_disk = {path.parent.name for path in self.root.glob("*/config.json")}
        with self._lock:
            return sorted(on_disk | set(self._open))

    def status(self) -> list[dict[str, Any]]:
        """``{"name", ...counters}`` of each session; those not open yet are opened."""
        return [{"name": name, **self.get(name).status()} for name in self.names()]

    def close(self) -> None:
        """Stop every open session's worker."""
        with self._lock:
            for session in self._open.values():
                session.close()
            self._open.clear()

"""Helpers of the serve tests (no tests here): a stand-in foundation model, served sessions, a server subprocess.

``EllipseModel`` answers like a promptable model at no cost, so the HTTP tests run in
milliseconds; the tests of learning with the real LiteMedSAM are in test_serve_learning.py.
"""

from __future__ import annotations

import base64
import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import torch
from fastapi.testclient import TestClient

from auxol.models import Embedding
from auxol.prompts import Prompt
from auxol.serve import Sessions, SessionFolder, create_app, resolve_settings
from auxol.serve.limits import Limits
from auxol.serve.sources import TaskImages


class EllipseModel:
    """A stand-in foundation model: logit +6 inside the ellipse inscribed in a box prompt, -6 elsewhere.

    A prompt of points alone gives a disk of radius 8 px around its first point.
    """

    name = "ellipse"
    device = torch.device("cpu")

    def embed(self, image: np.ndarray) -> Embedding:
        return Embedding(features=torch.zeros(1, 256, 64, 64), image_size=image.shape[:2])

    def segment_many(self, embedding: Embedding, prompts: list[Prompt]) -> np.ndarray:
        return np.stack([self._logits(prompt, embedding.image_size) for prompt in prompts])

    @staticmethod
    def _logits(prompt: Prompt, size: tuple[int, int]) -> np.ndarray:
        inside = np.zeros(size, np.uint8)
        if prompt.box is not None:
            x1, y1, x2, y2 = prompt.box
            centre, axes = (round((x1 + x2) / 2), round((y1 + y2) / 2)), (round((x2 - x1) / 2), round((y2 - y1) / 2))
            cv2.ellipse(inside, centre, axes, 0, 0, 360, 1, -1)
        else:
            cv2.circle(inside, tuple(round(v) for v in prompt.points[0]), 8, 1, -1)
        return np.where(inside > 0, 6.0, -6.0).astype(np.float32)


def open_sessions(root: Path, model=None, cache_size: int = 32, images: TaskImages | None = None) -> Sessions:
    """The sessions under ``root`` (new or resumed) around ``model`` (default: an EllipseModel); session ``default`` is in ``root / "default"``."""
    model = model or EllipseModel()

    def settings_for(folder: SessionFolder):
        return resolve_settings(folder, model=model.name)

    return Sessions(root, model, settings_for, cache_size, images.read if images else None)


def client_for(
    sessions: Sessions, images: TaskImages | None = None, limits: Limits | None = None, api_key: str | None = None
) -> TestClient:
    """A test client of the app on ``sessions``; use it in a ``with`` block (stopping it closes the sessions)."""
    return TestClient(create_app(sessions, images, limits, api_key))


def png(array: np.ndarray) -> bytes:
    """An image (H, W[, 3]) uint8 or bool mask (as 0/255) encoded as PNG bytes (RGB order for colour)."""
    array = np.where(array, 255, 0).astype(np.uint8) if array.dtype == bool else array
    if array.ndim == 3:
        array = array[:, :, ::-1]
    return cv2.imencode(".png", array)[1].tobytes()


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def decode_png(text: str) -> np.ndarray:
    """The bool (H, W) mask of a base64 0/255 PNG."""
    return cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_UNCHANGED) > 127


def ellipse_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """What EllipseModel answers to ``box`` on an image of ``size`` (H, W), as a bool mask."""
    return EllipseModel._logits(Prompt.from_box(box), size) > 0


def wait_learned(client: httpx.Client, timeout_s: float = 60) -> dict:
    """The status once the learning queue is empty."""
    deadline = time.monotonic() + timeout_s
    while (status := client.get("/api/status").json())["learning_queue"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    return status


class Server:
    """One ``serve_forever`` subprocess on ``root``; :meth:`start` waits until it answers."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.args = args
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0
        self.log: list[str] = []

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self.root), *self.args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        for line in self.process.stderr:
            if found := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line):
                self.url = found.group(1)
                break
        else:
            raise AssertionError(f"the server did not start (exit {self.process.wait()})")
        threading.Thread(target=self._read_log, daemon=True).start()
        self.starts += 1

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM), MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process:
            self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its clean shutdown


def serve_forever(root: str, max_body_mb: str = "128") -> None:
    """Serve the sessions under ``root`` around an EllipseModel with uvicorn on any free port.

    What the fault and bad-input tests run as a real subprocess (:class:`Server`):
    ``python tests/test_serve_support.py ROOT [MAX_BODY_MB]``; task images may be files
    under ``ROOT/files``. Uvicorn prints the address it listens on.
    """
    import logging

    import uvicorn

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sessions = open_sessions(Path(root))
    sessions.get()  # resume the default session: its journal is learned from now on
    limits = Limits(max_body_bytes=round(float(max_body_mb) * 2**20))
    app = create_app(sessions, TaskImages(files_roots=[Path(root) / "files"], limits=limits), limits)
    uvicorn.run(app, host="127.0.0.1", port=0, log_level="info")


if __name__ == "__main__":
    import sys

    serve_forever(*sys.argv[1:])

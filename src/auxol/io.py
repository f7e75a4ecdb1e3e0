"""Atomic writes of results and state.

A file is written to a temporary sibling and renamed over its target, so a crash or
Ctrl-C leaves either the old file or the new one, never half of one. Also the reading
of the small JSON files a user writes (options, prompts), with one-line errors.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from auxol.errors import ConfigError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file renamed into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp_name, 0o644)  # mkstemp makes the file private; results are ordinary files
    try:
        with open(tmp_name, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames inside ``folder`` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON; numpy scalars and paths are converted."""

    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(f"cannot write {type(value).__name__} as JSON")

    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=default, allow_nan=True)
        handle.write("\n")


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fieldnames: list[str] | None = None) -> None:
    """Write dict rows as CSV with a header; columns default to the first row's keys."""
    rows = list(rows)
    if fieldnames is None:
        fieldnames = list(rows[0].keys()) if rows else []
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


PNG_COMPRESSION = 1
"""zlib level of the PNGs written: a 300 x 300 RGB ultrasound image encodes in ~9 ms at 1
against ~27 ms at PIL's default 6, for a file ~13% larger (what a served new image waits for)."""


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a binary mask (H, W), any dtype, nonzero = foreground, as a 0/255 8-bit PNG."""
    image = Image.fromarray(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), mode="L")
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG", compress_level=PNG_COMPRESSION)


def write_image_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an 8-bit image (H, W) or (H, W, 3) as PNG."""
    with atomic_open(path, "wb") as handle:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(handle, format="PNG", compress_level=PNG_COMPRESSION)


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """The JSON object in the file at ``path``; ``what`` names its content in errors.

    Raises:
        ConfigError: naming the file, if it cannot be read or holds no JSON object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read {what} JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of {what}")
    return data


def read_options_file(path: str | os.PathLike, known: Iterable[str]) -> dict:
    """The options in the JSON object at ``path``; a key not in ``known`` raises ConfigError."""
    values = read_json_object(path, "options")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return values

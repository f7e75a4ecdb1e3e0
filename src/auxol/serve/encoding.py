"""Bytes at the service's edge: uploaded image and mask files in, PNG images and masks out, image ids.

Uploaded files are decoded by the package's own readers (:func:`auxol.data.read_image`,
:func:`auxol.data.read_mask`), so an upload obeys the rules of a file in a dataset:
8- or 16-bit, gray, RGB or RGBA images; 0/1 or 0/255 masks. Their size is checked
against :class:`~auxol.serve.limits.Limits` from the file header before decoding.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from auxol.data import read_image, read_mask
from auxol.errors import DataError
from auxol.serve.limits import Limits

IMAGE_ID = re.compile(r"[0-9a-f]{16}")
"""An image id: 16 lower-case hex digits (see :func:`image_id`)."""


def image_id(image: np.ndarray) -> str:
    """The id of a uint8 (H, W, 3) image: the first 16 hex digits of the SHA-256 of its shape and pixels.

    The same pixels give the same id, whichever file format or route (upload, Label
    Studio task) brought them.
    """
    digest = hashlib.sha256(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:16]


def _read_bytes(data: bytes, name: str, reader: Callable[[Path], np.ndarray], limits: Limits) -> np.ndarray:
    """Run a file reader of :mod:`auxol.data` on ``data``; errors name the upload ``name``, not the temporary file."""
    if not data:
        raise DataError(f"{name}: cannot read image (empty file)")
    limits.check_image_header(data, name)
    with tempfile.TemporaryDirectory(prefix="auxol-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            return reader(path)
        except DataError as error:
            raise DataError(f"{name}{str(error).removeprefix(str(path))}") from None


def decode_image(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """The uint8 (H, W, 3) RGB image in an image file's bytes; ``name`` names it in errors."""
    return _read_bytes(data, name, read_image, limits)


def decode_mask(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """The bool (H, W) mask in a mask file's bytes (0/1 or 0/255, first channel); ``name`` names it in errors."""
    return _read_bytes(data, name, read_mask, limits)


def image_png_base64(image: np.ndarray) -> str:
    """A uint8 (H, W, 3) RGB image as a base64-encoded PNG."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise DataError(f"cannot encode an image of shape {image.shape} as PNG")
    return base64.b64encode(png.tobytes()).decode("ascii")


def mask_png_base64(mask: np.ndarray) -> str:
    """A bool (H, W) mask as a base64-encoded 8-bit gray PNG, 255 = foreground, 0 = background."""
    ok, png = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not ok:
        raise DataError(f"cannot encode a mask of shape {mask.shape} as PNG")
    return base64.b64encode(png.tobytes()).decode("ascii")

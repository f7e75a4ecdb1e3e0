"""Reading 2-D images and masks from disk.

Images are decoded with OpenCV, which keeps 16-bit colour and float TIFF data intact
(Pillow reduces 16-bit colour to 8 bits on reading). Masks and label maps are decoded
with Pillow, which keeps the raw index of palette ("P" mode) files, where OpenCV would
return the palette colours.

Every failure raises :class:`~auxol.errors.DataError` with one line:
``"<path>: cannot read image (<reason>)"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from auxol.errors import DataError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File suffixes (lower case) recognised as images or masks in dataset folders."""

def _cannot_read(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: cannot read image ({reason})")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Return ``array`` as uint8: unchanged if already uint8, else min-max rescaled to 0..255.

    The rescale is per image, over all channels together: its minimum maps to 0 and its
    maximum to 255 (a constant image becomes all 0). Intensities of different 16-bit
    images are therefore not comparable after reading.
    """
    if array.dtype == np.uint8:
        return array
    values = np.nan_to_num(array.astype(np.float64))
    low, high = values.min(), values.max()
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.round((values - low) * scale).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB, shape (H, W, 3), values 0..255.

    Any format OpenCV decodes is accepted (png, jpg, jpeg, bmp, tif, tiff, ...), with
    8-bit, 16-bit or float samples and 1 (gray), 2 (gray + alpha), 3 (colour) or 4
    (colour + alpha) channels. Alpha is dropped, gray is repeated into R, G and B, and a
    multi-page TIFF gives its first page. Non-uint8 images (16-bit, float) are min-max
    rescaled per image to 0..255. EXIF orientation is ignored, as it is for masks.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise _cannot_read(path, exc.strerror or type(exc).__name__) from None
    if data.size == 0:
        raise _cannot_read(path, "empty file")
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise _cannot_read(path, "not an image, or corrupt")
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels in (1, 2):  # gray, gray + alpha
        rgb = np.repeat(array[:, :, :1], 3, axis=2)
    elif channels in (3, 4):  # OpenCV's BGR, BGRA
        rgb = array[:, :, 2::-1]
    else:
        raise _cannot_read(path, f"{channels} channels; expected 1 to 4")
    return np.ascontiguousarray(_to_uint8(rgb))


def _read_first_channel(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` with Pillow into its raw values, first channel only, shape (H, W)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except FileNotFoundError:
        raise _cannot_read(path, "no such file") from None
    except Image.UnidentifiedImageError:
        raise _cannot_read(path, "not an image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _cannot_read(path, reason) from None
    return array if array.ndim == 2 else array[:, :, 0]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a binary mask as bool, shape (H, W), True = foreground.

    Rule: a mask whose maximum is <= 127 (0/1 masks, 1-bit files, [0, 1] float masks,
    label maps 0..K such as ``auxol slices`` writes) is foreground where > 0; any other
    mask (0/255, 0/65535, JPEG-compressed 0/255, ...) is foreground where > 127.
    Multi-channel masks use their first channel; palette masks use the palette index.
    """
    array = _read_first_channel(path)
    threshold = 0 if array.max(initial=0) <= 127 else 127
    return array > threshold


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read an integer label map as int64, shape (H, W): the raw values of the first channel.

    Palette files give their palette indices. A float file with non-integer values
    raises :class:`~auxol.errors.DataError`.
    """
    array = _read_first_channel(path)
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise DataError(f"{path}: label map has non-integer values")
    return array.astype(np.int64)

"""Annotation noise: degrade a rectified mask as a hurried or imprecise annotator would.

As in the AuxOL paper's robustness study, the mask is dilated or eroded with a square
kernel whose side is ``max(1, round(ratio * reference_size))`` pixels, where the caller
passes ``reference_size = min(crop height, crop width)`` (ratio 0.05 or 0.10 in the
paper). A side of 1 px leaves the mask unchanged. Pixels outside the image count as
foreground for erosion (OpenCV's default), so a mask touching the border stays there.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from auxol.errors import ConfigError

NoiseKind = Literal["dilate", "erode", "either"]


def degrade_mask(mask: np.ndarray, kind: NoiseKind, ratio: float, rng: np.random.Generator, reference_size: int) -> np.ndarray:
    """Dilate or erode ``mask`` (H, W), any dtype, nonzero = foreground; return bool (H, W).

    ``kind="either"`` draws dilation or erosion with probability 1/2 each from ``rng``
    (one draw per call); "dilate" and "erode" use no random numbers.
    """
    if kind not in ("dilate", "erode", "either"):
        raise ConfigError(f"annotation noise must be 'dilate', 'erode' or 'either', got {kind!r}")
    if ratio < 0:
        raise ConfigError(f"annotation noise ratio must be >= 0, got {ratio}")
    if kind == "either":
        kind = "dilate" if rng.random() < 0.5 else "erode"
    side = max(1, round(ratio * reference_size))
    kernel = np.ones((side, side), dtype=np.uint8)
    morph = cv2.dilate if kind == "dilate" else cv2.erode
    return morph(np.asarray(mask).astype(bool).astype(np.uint8), kernel) > 0

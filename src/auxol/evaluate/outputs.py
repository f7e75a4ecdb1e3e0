"""The folder layout every command writes, and the outlines it draws.

Prediction masks go to ``<root>/<part>/<stem>.png``; a dataset that is itself one part
(named ``"."``) writes ``<root>/<stem>.png``. Scripts rely on these paths.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

TRUTH_COLOUR = (0, 200, 0)
PREDICTION_COLOUR = (255, 40, 40)


def mask_path(root: Path, part: str, stem: str) -> Path:
    """``root/part/stem.png``, or ``root/stem.png`` for the part ``"."``."""
    return (root if part == "." else root / part) / f"{stem}.png"


def overlay(image: np.ndarray, contours: list[tuple[np.ndarray, tuple[int, int, int]]], thickness: int = 2) -> np.ndarray:
    """Draw mask outlines on an image.

    Args:
        image: uint8 (H, W, 3) RGB.
        contours: (bool mask (H, W), RGB colour) pairs, drawn in order.
    Returns:
        A new uint8 (H, W, 3) image.
    """
    canvas = image.copy()
    for mask, colour in contours:
        found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, found, -1, colour, thickness)
    return canvas

"""Adaptive segmentation fusion: weigh the foundation model against the auxiliary network.

For a crop with a rectified mask, the best weight alpha is the one on the grid
{0, step, ..., alpha_max} whose fused mask has the highest Dice with the rectified crop.
The fused logit is ``alpha * base + (1 - alpha) * aux`` (alpha = 1: the foundation model
alone), and a crop is foreground where its sigmoid exceeds 0.5, i.e. where the fused
logit is > 0. The weight used for a new crop is the mean of the last K best alphas.
"""

from __future__ import annotations

import numpy as np


def alpha_grid(step: float, alpha_max: float) -> np.ndarray:
    """The candidate weights 0, step, 2*step, ..., up to alpha_max inclusive, float64 (A,)."""
    count = int(np.floor(alpha_max / step + 1e-9)) + 1
    return np.round(np.arange(count) * step, 10)


def fused_logits(base_logits: np.ndarray, aux_logits: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * base_logits + (1 - alpha) * aux_logits``, float32 of the inputs' shape."""
    return (alpha * base_logits + (1 - alpha) * aux_logits).astype(np.float32)


def best_alpha(
    base_logits: np.ndarray, aux_logits: np.ndarray, target: np.ndarray, step: float = 0.05, alpha_max: float = 1.0
) -> float:
    """The grid weight whose fused mask best matches ``target`` (Dice).

    Args:
        base_logits: float (h, w) foundation-model logits on the crop.
        aux_logits: float (h, w) auxiliary logits on the crop.
        target: bool (h, w) rectified mask on the crop.

    The grid is scanned upward from 0 and the first strict maximum is kept, so ties keep
    the smallest alpha; if every Dice is 0 the answer is 1 (trust the foundation model).
    Dice is 1 for an empty prediction of an empty target.
    """
    alphas = alpha_grid(step, alpha_max)
    masks = (alphas[:, None, None] * base_logits + (1 - alphas[:, None, None]) * aux_logits) > 0
    target = target.astype(bool)
    overlap = np.count_nonzero(masks & target, axis=(1, 2))
    total = np.count_nonzero(masks, axis=(1, 2)) + np.count_nonzero(target)
    dice = np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)
    if not dice.any():
        return 1.0
    return float(alphas[int(np.argmax(dice))])  # argmax returns the first maximum


class AlphaHistory:
    """The best alphas of past rectified crops, oldest first, and the weight they give.

    The weight for a new crop is the mean of the last ``k`` best alphas, or ``None``
    (foundation model alone) while fewer than ``k`` exist. The published code appended
    the current crop's own best alpha first and waited for k + 1 entries, averaging the k
    before it: the same weights, without looking at the current label.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.alphas: list[float] = []

    def append(self, alpha: float) -> None:
        self.alphas.append(float(alpha))

    def current(self) -> float | None:
        if len(self.alphas) < self.k:
            return None
        return float(np.mean(self.alphas[-self.k :]))

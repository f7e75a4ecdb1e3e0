"""Per-image metrics of a binary prediction against a binary truth, foreground only.

Inputs are (H, W) arrays of any dtype, nonzero = foreground, of the same shape.
Hausdorff distances are between the boundaries of the two masks (foreground pixels with a
background 4-neighbour or on the image border), measured with SciPy's Euclidean distance
transform, in pixels or in the units of ``spacing`` (row, column), e.g. mm. The directed
distances are taken both ways; HD is the larger maximum and HD95 the larger 95th
percentile (MONAI's definition).

Empty masks (Dice with ``smooth=0``):

=====================  ====  ====  ==========================
case                   Dice  IoU   HD, HD95
=====================  ====  ====  ==========================
both empty             1     1     0
one of the two empty   0     0     the image diagonal
both non-empty         -     -     capped at the image diagonal
=====================  ====  ====  ==========================

The image diagonal is hypot(H * row spacing, W * column spacing), the cap the AuxOL paper
uses. With ``smooth > 0`` Dice is (2|A∩B| + smooth) / (|A| + |B| + smooth) in every
case: ``smooth=1`` is the AuxOL paper's Dice, for tables comparable with the paper.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

from auxol.errors import DataError


def _binary_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred).astype(bool), np.asarray(truth).astype(bool)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise DataError(f"prediction of shape {pred.shape} and truth of shape {truth.shape}: expected two (H, W) masks of one size")
    return pred, truth


def dice(pred: np.ndarray, truth: np.ndarray, smooth: float = 0.0) -> float:
    """Dice coefficient in [0, 1]: (2|A∩B| + smooth) / (|A| + |B| + smooth); 1 when both are empty and smooth is 0."""
    pred, truth = _binary_pair(pred, truth)
    total = np.count_nonzero(pred) + np.count_nonzero(truth) + smooth
    if total == 0:
        return 1.0
    return float((2 * np.count_nonzero(pred & truth) + smooth) / total)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (Jaccard index) in [0, 1]: |A∩B| / |A∪B|; 1 when both are empty."""
    pred, truth = _binary_pair(pred, truth)
    union = np.count_nonzero(pred | truth)
    return float(np.count_nonzero(pred & truth) / union) if union else 1.0


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels of the bool (H, W) ``mask`` that a 3x3-cross erosion removes."""
    return mask & ~binary_erosion(mask)


def _directed_distances(source: np.ndarray, target: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Distance from each boundary pixel of ``source`` to the nearest boundary pixel of ``target``, 1-D float."""
    return distance_transform_edt(~_boundary(target), sampling=spacing)[_boundary(source)]


def hausdorff(
    pred: np.ndarray, truth: np.ndarray, percentile: float | None = None, spacing: Sequence[float] | None = None
) -> float:
    """Symmetric Hausdorff distance between the mask boundaries, capped at the image diagonal.

    ``percentile=None`` gives the maximum (HD), ``percentile=95`` the HD95. ``spacing`` is
    the (row, column) pixel size; None means 1, so the distance is in pixels.
    """
    pred, truth = _binary_pair(pred, truth)
    row_step, col_step = (1.0, 1.0) if spacing is None else spacing
    diagonal = float(np.hypot(pred.shape[0] * row_step, pred.shape[1] * col_step))
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return diagonal
    spacing = (row_step, col_step)
    reduce = np.max if percentile is None else (lambda values: np.percentile(values, percentile))
    distance = max(reduce(_directed_distances(pred, truth, spacing)), reduce(_directed_distances(truth, pred, spacing)))
    return min(float(distance), diagonal)


def score(pred: np.ndarray, truth: np.ndarray, smooth: float = 0.0, spacing: Sequence[float] | None = None) -> dict[str, float]:
    """All per-image metrics as floats: ``dice`` (with ``smooth``), ``iou``, ``hd`` and ``hd95``."""
    return {
        "dice": dice(pred, truth, smooth),
        "iou": iou(pred, truth),
        "hd": hausdorff(pred, truth, spacing=spacing),
        "hd95": hausdorff(pred, truth, percentile=95, spacing=spacing),
    }


ACCEPT_LEVELS = (0.90, 0.95)
"""Dice levels at which a shown mask counts as accepted without correction (effort metrics)."""


def changed_pixels(shown: np.ndarray, corrected: np.ndarray) -> tuple[int, float]:
    """The correction's effort: pixels that differ between the shown and the corrected mask.

    Returns (|shown XOR corrected| in pixels, that count divided by the corrected
    object's area |corrected|, or by 1 when it is empty). 0 and 0.0 mean the shown mask
    was accepted as it was; 1.0 means as many pixels changed as the object has.
    """
    shown, corrected = _binary_pair(shown, corrected)
    changed = int(np.count_nonzero(shown ^ corrected))
    return changed, changed / max(int(np.count_nonzero(corrected)), 1)


def correction_effort(shown: str, correction_dices: Iterable[float], changed_fractions: Iterable[float]) -> dict[str, float | None]:
    """The effort figures of a series of corrections of the masks ``shown`` (a key prefix: ``"base"``, ``"auxol"``).

    ``correction_dices``: each shown mask's Dice with its corrected mask, in [0, 1];
    ``changed_fractions``: each correction's share of the object changed (the second value
    of :func:`changed_pixels`). Returns ``<shown>_accept_90`` and ``<shown>_accept_95``: the
    fraction of the shown masks with Dice >= 0.90 / 0.95 (see :data:`ACCEPT_LEVELS`:
    accepted as they were), in [0, 1]; and ``<shown>_changed_fraction``: the mean changed
    share. A figure over an empty series is None.
    """
    dices, fractions = np.asarray(list(correction_dices), float), np.asarray(list(changed_fractions), float)
    effort: dict[str, float | None] = {
        f"{shown}_accept_{round(100 * level)}": float(np.mean(dices >= level)) if dices.size else None for level in ACCEPT_LEVELS
    }
    effort[f"{shown}_changed_fraction"] = float(np.mean(fractions)) if fractions.size else None
    return effort

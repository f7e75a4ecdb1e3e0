"""Per-volume metrics of a binary label volume against a binary truth: 3-D Dice and HD95 in mm.

Inputs are (slices, rows, columns) arrays, nonzero = foreground, of one shape, with the
voxel ``spacing`` (slice step, row step, column step) in mm. HD95 follows the 2-D rule of
:mod:`auxol.evaluate.metrics` in 3-D: the boundaries are the foreground voxels a
6-neighbour erosion removes, distances are taken both ways with SciPy's Euclidean
distance transform on the anisotropic grid, and HD95 is the larger of the two 95th
percentiles. Both empty: Dice 1, HD95 0; one empty: Dice 0, HD95 the volume's diagonal
(mm), also the cap of every HD95.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

from auxol.errors import DataError


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
    if pred.shape != truth.shape or pred.ndim != 3:
        raise DataError(f"prediction of shape {pred.shape} and truth of shape {truth.shape}: expected two 3-D volumes of one shape")
    return pred, truth


def dice_3d(pred: np.ndarray, truth: np.ndarray) -> float:
    """2 |P & T| / (|P| + |T|) over the whole volume, in [0, 1]; 1 when both are empty."""
    pred, truth = _pair(pred, truth)
    total = np.count_nonzero(pred) + np.count_nonzero(truth)
    return 1.0 if total == 0 else float(2 * np.count_nonzero(pred & truth) / total)


def hd95_mm(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance between the two surfaces, in mm, capped at the volume diagonal."""
    pred, truth = _pair(pred, truth)
    diagonal = float(np.linalg.norm(np.array(pred.shape) * np.asarray(spacing, float)))
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return diagonal
    surfaces = [mask & ~binary_erosion(mask) for mask in (pred, truth)]
    distances = [distance_transform_edt(~target, sampling=spacing)[source] for source, target in (surfaces, surfaces[::-1])]
    return min(float(max(np.percentile(d, 95) for d in distances)), diagonal)

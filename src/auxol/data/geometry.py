"""Grids in patient space: reorienting a voxel array without resampling, and comparing two grids.

An affine is a 4x4 float64 matrix mapping voxel indices (i, j, k, 1) of an array to RAS+
millimetres (x grows toward the patient's Right, y toward Anterior, z toward Superior),
nibabel's and NIfTI's convention. DICOM's patient frame is LPS+ (x toward Left, y toward Posterior);
:data:`LPS_TO_RAS` converts.

Every volume is worked on in one layout, :data:`AXIAL`: axis 0 = slices from inferior to
superior, axis 1 = image rows from anterior to posterior, axis 2 = image columns from the
patient's right to left. Slice ``k`` is then an axial image as radiologists view it
(anterior up, the patient's right on the image's left), the layout of a usual axial DICOM
series and the one medical SAM models were trained on. Reorienting is a transpose and
flips (nibabel's orientation tools), so voxel values are never interpolated; the affine
changes with the array and the voxels keep their place in patient space.
"""

from __future__ import annotations

import itertools

import numpy as np
from nibabel import orientations

AXIAL = ("S", "P", "L")
"""Axis codes (nibabel's: the direction each array axis grows toward) of the working layout."""

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def orientation_to(affine: np.ndarray, codes: tuple[str, str, str] = AXIAL) -> np.ndarray:
    """nibabel orientation (3, 2) that takes an array on ``affine`` to the layout ``codes``.

    Each array axis is matched to the patient axis nearest to its direction (an oblique
    grid goes to its nearest layout; its affine stays exact).
    """
    return orientations.ornt_transform(orientations.io_orientation(affine), orientations.axcodes2ornt(codes))


def reorient(array: np.ndarray, affine: np.ndarray, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``array`` (3-D) and its ``affine`` after the orientation ``transform``: the same voxels in another layout."""
    moved = orientations.apply_orientation(array, transform)
    return np.ascontiguousarray(moved), affine @ orientations.inv_ornt_aff(transform, array.shape)


def inverse(transform: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes ``transform``."""
    undo = np.zeros_like(transform)
    for axis, (target, flip) in enumerate(transform):
        undo[int(target)] = (axis, flip)
    return undo


def spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size along each array axis in mm (the lengths of the affine's columns)."""
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))


def corners(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Patient coordinates (8, 3) in mm of the centres of the 8 corner voxels of a grid."""
    indices = np.array(list(itertools.product(*[(0, n - 1) for n in shape[:3]])), float)
    return indices @ affine[:3, :3].T + affine[:3, 3]


def grid_distance(affine_a: np.ndarray, shape_a: tuple[int, ...], affine_b: np.ndarray, shape_b: tuple[int, ...]) -> float:
    """How far apart two grids of the same layout are: the largest distance (mm) between matching corner voxels.

    ``inf`` for grids of different shapes. Two grids are the same grid when this is well
    below a voxel (see :func:`same_grid`).
    """
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return float("inf")
    return float(np.max(np.linalg.norm(corners(affine_a, shape_a) - corners(affine_b, shape_b), axis=1)))


def same_grid(affine_a: np.ndarray, shape_a: tuple[int, ...], affine_b: np.ndarray, shape_b: tuple[int, ...]) -> bool:
    """Whether two grids hold the same voxels: same shape and corners within 0.1 of the smallest voxel side."""
    tolerance = 0.1 * min(spacing(affine_a))
    return grid_distance(affine_a, shape_a, affine_b, shape_b) <= tolerance

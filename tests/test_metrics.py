"""Tests of auxol.evaluate.metrics with exact values."""

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist

from auxol.errors import DataError
from auxol.evaluate import dice, hausdorff, iou, score
from auxol.evaluate.metrics import correction_effort


def square(top: int, left: int, side: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_dice_and_iou_of_overlapping_squares():
    a, b = square(10, 10, 20), square(10, 15, 20)  # overlap 20 x 15 = 300 of 400 each
    assert dice(a, b) == pytest.approx(600 / 800)
    assert iou(a, b) == pytest.approx(300 / 500)
    assert dice(a, b, smooth=1) == pytest.approx(601 / 801)


def test_hausdorff_of_a_square_shifted_by_3px():
    a, b = square(10, 10, 20), square(10, 13, 20)
    assert hausdorff(a, b) == pytest.approx(3.0)
    assert hausdorff(a, b, percentile=95) == pytest.approx(3.0)
    assert hausdorff(a, b, spacing=(0.5, 2.0)) == pytest.approx(6.0)


def test_hausdorff_of_nested_squares():
    outer, inner = square(10, 10, 30), square(15, 15, 20)  # 5 px between the boundaries
    assert hausdorff(outer, inner) == pytest.approx(5.0 * math.sqrt(2))  # outer corner to inner corner


def brute_force_hausdorff(a: np.ndarray, b: np.ndarray, percentile: float | None) -> float:
    """Reference: all pairwise distances between boundary pixels (4-neighbour or image border)."""

    def boundary_points(mask):
        padded = np.pad(mask, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        return np.argwhere(mask & ~inner)

    distances = cdist(boundary_points(a), boundary_points(b))
    reduce = np.max if percentile is None else (lambda d: np.percentile(d, percentile))
    return max(reduce(distances.min(axis=1)), reduce(distances.min(axis=0)))


def test_hausdorff_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(3):
        a, b = (gaussian_filter(rng.random((60, 70)), 4) > 0.5 for _ in range(2))
        for percentile in (None, 95):
            assert hausdorff(a, b, percentile) == pytest.approx(brute_force_hausdorff(a, b, percentile))


def test_empty_cases():
    empty, full = np.zeros((30, 40), bool), square(5, 5, 10, (30, 40))
    assert score(empty, empty) == {"dice": 1.0, "iou": 1.0, "hd": 0.0, "hd95": 0.0}
    for pred, truth in ((empty, full), (full, empty)):
        assert score(pred, truth) == {"dice": 0.0, "iou": 0.0, "hd": 50.0, "hd95": 50.0}
    assert dice(empty, full, smooth=1) == pytest.approx(1 / 101)


def test_hausdorff_is_capped_at_the_diagonal():
    a = np.zeros((3, 4), bool)
    a[0, 0] = True
    b = np.zeros((3, 4), bool)
    b[2, 3] = True
    assert hausdorff(a, b) == pytest.approx(math.hypot(2, 3))
    assert hausdorff(a, b, spacing=(1.0, 1.0)) <= 5.0


def test_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))


def test_volume_dice_and_hd95_in_mm_use_the_voxel_spacing():
    from auxol.evaluate.volume_metrics import dice_3d, hd95_mm

    truth = np.zeros((10, 20, 20), bool)
    truth[2:8, 5:15, 5:15] = True
    shifted = np.roll(truth, 1, axis=0)  # one slice up: 2.5 mm
    assert dice_3d(truth, truth) == 1.0 and dice_3d(shifted, truth) == pytest.approx(2 * 500 / 1200)
    assert hd95_mm(shifted, truth, (2.5, 0.5, 0.5)) == pytest.approx(2.5)
    assert hd95_mm(np.roll(truth, 2, axis=2), truth, (2.5, 0.5, 0.5)) == pytest.approx(1.0)
    empty = np.zeros_like(truth)
    assert dice_3d(empty, empty) == 1.0 and hd95_mm(empty, empty, (1, 1, 1)) == 0.0
    assert hd95_mm(empty, truth, (2.5, 0.5, 0.5)) == pytest.approx(np.linalg.norm([25, 10, 10]))


def test_correction_effort_counts_masks_accepted_at_each_level_and_the_mean_share_changed():
    effort = correction_effort("auxol", [0.97, 0.92, 0.90, 0.5], [0.02, 0.1, 0.12, 0.9])
    assert effort == {"auxol_accept_90": 0.75, "auxol_accept_95": 0.25, "auxol_changed_fraction": pytest.approx(0.285)}
    assert correction_effort("base", [], []) == {"base_accept_90": None, "base_accept_95": None, "base_changed_fraction": None}

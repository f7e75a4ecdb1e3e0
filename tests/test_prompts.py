"""Tests of the mask -> prompt rules and box geometry in auxol.prompts."""

import numpy as np
import pytest

from auxol.errors import PromptError
from auxol.prompts import components, prompts_from_mask, widen_box


def test_lesion_larger_than_half_the_image_keeps_its_box():
    mask = np.zeros((100, 100), bool)
    mask[5:95, 10:90] = True  # 72% of the image: the published rule took it for background
    assert [p.box for p in prompts_from_mask(mask)] == [(10.0, 5.0, 89.0, 94.0)]


def test_components_in_label_order_and_16px_rule():
    mask = np.zeros((100, 100), bool)
    mask[60:80, 5:25] = True  # 20x20, lower left
    mask[2:12, 50:60] = True  # 10x10 blob: dropped
    mask[10:30, 70:86] = True  # 16x20: exactly 16 wide, kept
    found = components(mask)
    assert [box for box, _ in found] == [(70.0, 10.0, 85.0, 29.0), (5.0, 60.0, 24.0, 79.0)]
    assert found[1][1].sum() == 400 and found[1][1].dtype == bool


def test_diagonal_pixels_are_one_component():
    mask = np.zeros((40, 40), bool)
    mask[0:20, 0:20] = True
    mask[20:40, 20:40] = True  # touches the first square at a corner only
    assert [box for box, _ in components(mask)] == [(0.0, 0.0, 39.0, 39.0)]


def test_whole_image_fallbacks():
    mask = np.zeros((50, 80), bool)
    mask[10:20, 10:20] = True
    mask[30:42, 50:62] = True
    assert prompts_from_mask(mask, "box")[0].box == (0.0, 0.0, 79.0, 49.0)
    # the centroid of both blobs (38.7, 26.9) is background: the nearest foreground pixel is used
    (point,) = prompts_from_mask(mask, "point")
    assert point.points == ((50.0, 30.0),) and point.labels == (1,)
    (centre,) = prompts_from_mask(np.zeros((50, 80), bool), "point")
    assert centre.points == ((39.5, 24.5),)


def test_point_at_centroid_and_ring_point_moved_onto_the_ring():
    mask = np.zeros((60, 60), bool)
    mask[10:31, 20:41] = True
    assert prompts_from_mask(mask, "point")[0].points == ((30.0, 20.0),)
    ring = np.zeros((60, 60), bool)
    ring[10:50, 10:50] = True
    ring[14:46, 14:50] = False  # a C shape open to the right; centroid falls in the hole
    (x, y), = prompts_from_mask(ring, "point")[0].points
    assert ring[int(y), int(x)]
    assert (x, y) == (13.0, 29.0) or (x, y) == (13.0, 30.0)


def test_bad_kind_and_shape():
    with pytest.raises(PromptError, match="'circle'"):
        prompts_from_mask(np.ones((20, 20), bool), "circle")
    with pytest.raises(PromptError, match="2-D"):
        components(np.ones((20, 20, 3), bool))


def test_widen_box():
    assert widen_box((40.0, 30.0, 59.0, 69.0), 0.1, 200, 200) == (38.0, 26.0, 61.0, 73.0)
    assert widen_box((0.0, 5.0, 9.0, 14.0), 1.0, 20, 15) == (0.0, 0.0, 14.0, 19.0)


def test_box_margin_widens_by_a_fraction_of_the_long_side_and_clips():
    mask = np.zeros((100, 200), bool)
    mask[40:60, 10:50] = True
    (tight,) = prompts_from_mask(mask, "box")
    (wide,) = prompts_from_mask(mask, "box", box_margin=0.02)
    assert tight.box == (10.0, 40.0, 49.0, 59.0)
    assert wide.box == (6.0, 36.0, 53.0, 63.0)  # 0.02 * 200 = 4 px per side
    (clipped,) = prompts_from_mask(mask, "box", box_margin=0.1)
    assert clipped.box == (0.0, 20.0, 69.0, 79.0)

"""Propagating a seed box through the slices of a volume: order, prompts from the neighbour, stopping."""

from __future__ import annotations

import numpy as np

from auxol.propagation import neighbour_prompts, propagate, segment_by_propagation
from auxol.prompts import Prompt, components
from volume_files import sphere


def test_the_walk_goes_up_from_the_seed_then_down_and_stops_where_the_structure_ends():
    ball = sphere((12, 64, 64), (6, 30, 34), 4.5)  # slices 2..10 hold it
    visited = []

    def perfect(index, prompts):
        visited.append((index, prompts))
        return ball[index]

    masks = segment_by_propagation(perfect, 12, 6, [Prompt.from_box((25, 21, 43, 39))], min_size=4)
    assert [index for index, _ in visited] == [6, 7, 8, 9, 10, 11, 5, 4, 3, 2, 1]  # 11 and 1 tried, found empty
    assert sorted(index for index, mask in masks.items() if mask.any()) == list(range(2, 11))
    # each slice is prompted with the box of its neighbour's mask
    (box,) = [p.box for p in visited[2][1]]
    (expected, _), = components(ball[7], min_size=4)
    assert box == expected


def test_a_gap_in_the_structure_ends_the_walk_in_that_direction():
    accepted = {}
    column = np.zeros((7, 32, 32), bool)
    column[:, 8:24, 8:24] = True
    column[1] = False  # the structure vanishes on slice 1
    order = []
    for index, prompts in propagate(7, 4, [Prompt.from_box((8, 8, 23, 23))], accepted):
        order.append(index)
        accepted[index] = column[index]
    assert order == [4, 5, 6, 3, 2, 1]  # 0 is never reached: slice 1 came back empty


def test_neighbour_prompts_are_one_box_per_component_widened_by_the_margin():
    mask = np.zeros((100, 100), bool)
    mask[10:30, 10:30] = mask[60:90, 50:80] = True
    mask[0:3, 95:98] = True  # too small to prompt
    boxes = [p.box for p in neighbour_prompts(mask, min_size=16, box_margin=0.02)]
    assert boxes == [(8.0, 8.0, 31.0, 31.0), (48.0, 58.0, 81.0, 91.0)]
    assert neighbour_prompts(np.zeros((10, 10), bool)) == []

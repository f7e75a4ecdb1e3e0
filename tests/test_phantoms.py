"""Synthetic phantoms: reproducible files, and a truth that is systematically bigger than the dark core."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from auxol.data import find_parts, list_pairs, load_pair
from auxol.data.phantoms import CORE_SCALE, generate_phantoms, phantom_stream
from auxol.errors import ConfigError


def _file_bytes(folder) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*.png"))}


def test_same_seed_writes_the_same_bytes(tmp_path):
    first = generate_phantoms(tmp_path / "a", n=3, seed=7, size=96)
    second = generate_phantoms(tmp_path / "b", n=3, seed=7, size=96)
    other = generate_phantoms(tmp_path / "c", n=3, seed=8, size=96)
    assert sorted(_file_bytes(first)) == [f"{kind}/phantom_{i:04d}.png" for kind in ("images", "masks") for i in range(3)]
    assert _file_bytes(first) == _file_bytes(second)
    assert _file_bytes(first)["images/phantom_0000.png"] != _file_bytes(other)["images/phantom_0000.png"]


def test_written_folder_is_a_dataset_part_of_the_streamed_arrays(tmp_path):
    folder = generate_phantoms(tmp_path / "data", n=2, seed=3, size=80)
    (part,) = find_parts(folder)
    pairs, warnings = list_pairs(part)
    assert part.name == "." and warnings == [] and len(pairs) == 2
    image, mask = load_pair(pairs[1])
    expected = phantom_stream(2, seed=3, size=80)[1]
    np.testing.assert_array_equal(image, expected.image)
    np.testing.assert_array_equal(mask, expected.mask)


def test_a_longer_stream_starts_with_the_shorter_one():
    short, long = phantom_stream(2, seed=5, size=64), phantom_stream(4, seed=5, size=64)
    for a, b in zip(short, long):
        np.testing.assert_array_equal(a.image, b.image)


def test_truth_is_the_dark_core_plus_a_fainter_rim():
    for phantom in phantom_stream(6, seed=0, size=128):
        mask, core = phantom.mask, phantom.core
        gray = phantom.image[:, :, 0].astype(float)
        rim = mask & ~core
        around = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~mask  # 4 px of tissue
        assert phantom.image.dtype == np.uint8 and phantom.image.shape == (128, 128, 3)
        assert not (core & ~mask).any()  # the core lies inside the truth
        # The core covers CORE_SCALE**2 of the truth's area (up to pixelation): a base model
        # outlining the core alone scores Dice 2r^2 / (1 + r^2), about 0.8.
        area_ratio = core.sum() / mask.sum()
        assert CORE_SCALE[0] ** 2 - 0.05 < area_ratio < CORE_SCALE[1] ** 2 + 0.05
        # Core much darker than the rim, rim darker than the tissue around it.
        assert gray[core].mean() < 0.5 * gray[rim].mean()
        assert gray[rim].mean() < 0.95 * gray[around].mean()


def test_unknown_kind_and_bad_sizes_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown phantom kind 'mri'"):
        phantom_stream(2, kind="mri")
    with pytest.raises(ConfigError, match="size >= 64"):
        generate_phantoms(tmp_path, n=2, size=32)


def test_a_shorter_stream_replaces_a_longer_one(tmp_path):
    generate_phantoms(tmp_path, n=3, seed=1, size=64)
    generate_phantoms(tmp_path, n=2, seed=1, size=64)
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == ["phantom_0000.png", "phantom_0001.png"]
    assert len(list((tmp_path / "masks").iterdir())) == 2

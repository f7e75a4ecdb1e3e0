"""Tests of auxol.data: image and mask reading, dataset folders and CSV lists."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from auxol.data import (
    Pair,
    find_parts,
    list_pairs,
    load_dataset,
    load_pair,
    read_csv_list,
    read_image,
    read_label_map,
    read_mask,
)
from auxol.errors import DataError


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def make_part(folder: Path, stems: list[str], size: tuple[int, int] = (40, 50)) -> None:
    height, width = size
    for stem in stems:
        save(folder / "images" / f"{stem}.png", np.full((height, width), 100, np.uint8))
        mask = np.zeros((height, width), np.uint8)
        mask[5:25, 5:25] = 255
        save(folder / "masks" / f"{stem}.png", mask)


# --- images ---------------------------------------------------------------------------


def test_gray_image_becomes_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    image = read_image(save(tmp_path / "g.png", gray))
    assert image.dtype == np.uint8 and image.shape == (3, 4, 3)
    assert np.array_equal(image[:, :, 0], gray) and np.array_equal(image[:, :, 2], gray)


def test_rgba_drops_alpha_and_keeps_channel_order(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    image = read_image(save(tmp_path / "a.png", rgba, "RGBA"))
    assert image.shape == (2, 3, 3)
    assert image[0, 0].tolist() == [10, 20, 30]


def test_gray_alpha_image(tmp_path):
    la = np.dstack([np.full((2, 2), 7, np.uint8), np.full((2, 2), 200, np.uint8)])
    assert read_image(save(tmp_path / "la.png", la, "LA"))[0, 0].tolist() == [7, 7, 7]


def test_16bit_gray_is_min_max_rescaled(tmp_path):
    values = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    image = read_image(save(tmp_path / "g16.png", values))
    assert image[:, :, 0].tolist() == [[0, 128], [255, 0]]


def test_16bit_rgb_tiff_is_min_max_rescaled(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[0, 0] = (4000, 0, 2000)  # R, G, B
    cv2.imwrite(str(tmp_path / "c16.tif"), rgb[:, :, ::-1])
    assert read_image(tmp_path / "c16.tif")[0, 0].tolist() == [255, 0, 128]


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    for name in ("bad.png", "missing.png"):
        with pytest.raises(DataError, match=name):
            read_image(tmp_path / name)
    with pytest.raises(DataError, match="bad.png: cannot read image"):
        read_mask(tmp_path / "bad.png")


@pytest.mark.parametrize("on", [1, 255])
def test_mask_binarisation_01_and_0255(tmp_path, on):
    array = np.array([[0, on], [on, 0]], np.uint8)
    assert read_mask(save(tmp_path / "m.png", array)).tolist() == [[False, True], [True, False]]


def test_mask_above_127_uses_threshold_127(tmp_path):
    array = np.array([[0, 2, 127, 128, 255]], np.uint8)  # e.g. JPEG ringing around a 0/255 mask
    assert read_mask(save(tmp_path / "m.png", array)).tolist() == [[False, False, False, True, True]]


def test_label_map_mask_is_foreground_wherever_labelled(tmp_path):
    array = np.array([[0, 1, 2, 3]], np.uint8)  # 'auxol slices' writes label values 0..K
    assert read_mask(save(tmp_path / "m.png", array)).tolist() == [[False, True, True, True]]


def test_rgb_mask_uses_first_channel_and_label_map_keeps_values(tmp_path):
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 255)
    assert read_mask(save(tmp_path / "m.png", rgb)).tolist() == [[True, False]]
    labels = np.array([[0, 1, 2, 7]], np.uint8)
    result = read_label_map(save(tmp_path / "l.png", labels))
    assert result.dtype == np.int64 and result.tolist() == [[0, 1, 2, 7]]


# --- folders --------------------------------------------------------------------------


def test_single_part_root(tmp_path):
    make_part(tmp_path, ["b", "a"])
    (parts,) = find_parts(tmp_path)
    assert parts.name == "."
    pairs, warnings = list_pairs(parts)
    assert [p.stem for p in pairs] == ["a", "b"] and warnings == []


def test_tree_of_parts_named_by_relative_path(tmp_path):
    make_part(tmp_path / "a" / "b", ["x"])
    make_part(tmp_path / "c", ["y"])
    (tmp_path / "empty").mkdir()
    assert [part.name for part in find_parts(tmp_path)] == ["a/b", "c"]
    listings = load_dataset(tmp_path)
    assert [(name, [p.stem for p in pairs], warnings) for name, pairs, warnings in listings] == [
        ("a/b", ["x"], []),
        ("c", ["y"], []),
    ]
    assert listings[0].pairs[0].part == "a/b"


def test_missing_folder_and_folder_without_parts(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such folder"):
        find_parts(tmp_path / "nowhere")
    with pytest.raises(DataError, match="expected images/ and masks/"):
        find_parts(tmp_path)


def test_unmatched_stems_and_odd_files_warn_by_file_name(tmp_path):
    make_part(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").unlink()
    save(tmp_path / "masks" / "c.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "images" / "notes.txt").write_text("ignored silently")
    (tmp_path / "images" / ".hidden.png").write_bytes(b"")
    (tmp_path / "images" / "scan.xyz").write_bytes(b"")
    pairs, warnings = list_pairs(find_parts(tmp_path)[0])
    assert [p.stem for p in pairs] == ["a"]
    assert len(warnings) == 3
    assert any("scan.xyz" in w for w in warnings)
    assert any("b.png" in w and "no mask" in w for w in warnings)
    assert any("c.png" in w and "no image" in w for w in warnings)


def test_load_pair_checks(tmp_path):
    make_part(tmp_path, ["ok"])
    pair = list_pairs(find_parts(tmp_path)[0])[0][0]
    image, mask = load_pair(pair)
    assert image.shape == (40, 50, 3) and mask.dtype == bool and mask.sum() == 400

    empty = save(tmp_path / "empty.png", np.zeros((40, 50), np.uint8))
    with pytest.raises(DataError, match="empty.png: mask has no foreground"):
        load_pair(Pair(".", "ok", pair.image_path, empty))
    assert not load_pair(Pair(".", "ok", pair.image_path, empty), require_foreground=False)[1].any()

    small = save(tmp_path / "small.png", np.full((40, 30), 255, np.uint8))
    with pytest.raises(DataError, match=r"small.png: mask is 30x40 but image .*ok.png is 50x40"):
        load_pair(Pair(".", "ok", pair.image_path, small))


# --- CSV lists ------------------------------------------------------------------------


def test_csv_list_with_header_and_leading_slash(tmp_path):
    make_part(tmp_path / "data", ["b", "a"])
    csv_path = tmp_path / "lists" / "test.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("image_path,mask_path\ndata/images/b.png,/data/masks/b.png\n\ndata/images/a.png, data/masks/a.png\n")
    pairs = read_csv_list(csv_path, root=tmp_path)
    assert [(p.part, p.stem) for p in pairs] == [("test", "b"), ("test", "a")]
    assert pairs[0].mask_path == tmp_path / "data" / "masks" / "b.png"


def test_csv_root_defaults_to_its_folder(tmp_path):
    make_part(tmp_path, ["a"])
    (tmp_path / "list.csv").write_text("images/a.png,masks/a.png\n")
    assert load_dataset(tmp_path / "list.csv")[0].pairs[0].image_path == tmp_path / "images" / "a.png"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("images/a.png,masks/a.png\nimages/a.png\n", r"list.csv:2: expected 'image_path,mask_path', got 'images/a.png'"),
        ("images/a.png,masks/a.png,extra\n", r"list.csv:1: expected"),
        ("images/a.png,masks/zz.png\n", r"list.csv:1: mask .*zz.png does not exist"),
        ("images/a.png,masks/a.png\nimages/a.png,masks/a.png\n", r"list.csv:2: image stem 'a' already listed on line 1"),
    ],
)
def test_bad_csv_lines(tmp_path, text, message):
    make_part(tmp_path, ["a"])
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_csv_list(tmp_path / "list.csv")

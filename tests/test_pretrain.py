"""Masked-image pre-training of the image encoder (``auxol pretrain``) on the tiny random SAM."""

from __future__ import annotations

import csv
import json

import torch

from auxol.finetune.mae import PretrainConfig, pretrain, random_patch_mask
from test_finetune_tiny import tiny_model, write_squares


def test_patch_mask_hides_the_ratio_of_patches_of_each_image():
    mask = random_patch_mask(3, 8, 0.75, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 8, 8) and mask.sum(dim=(1, 2)).tolist() == [48, 48, 48]


def test_pretraining_lowers_the_reconstruction_loss_and_writes_its_outputs(tmp_path):
    write_squares(tmp_path / "data", 4, size=64)
    model = tiny_model()
    before = {name: value.clone() for name, value in model.image_encoder.state_dict().items()}
    config = PretrainConfig(images=str(tmp_path / "data" / "images"), out=str(tmp_path / "ssl"), epochs=20, batch_size=4, lr=3e-3)
    checkpoint = pretrain(model, config)
    summary = json.loads((tmp_path / "ssl" / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["images"] == 4
    assert summary["last_loss"] < 0.5 * summary["first_loss"]
    assert len(list(csv.DictReader(open(tmp_path / "ssl" / "log.csv")))) == 20
    assert (tmp_path / "ssl" / "curve.png").stat().st_size > 0
    saved = torch.load(checkpoint)
    assert saved.keys() == model.state_dict().keys()  # SAM format: the whole model, no reconstruction head
    assert any(not torch.equal(saved[f"image_encoder.{name}"], value) for name, value in before.items())

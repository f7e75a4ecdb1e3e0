"""A tiny random SAM (64 px input, 32 channels) for fast fine-tuning tests, and tests of the training path on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

from auxol.finetune.config import FinetuneConfig
from auxol.finetune.distributed import Distributed
from auxol.finetune.merge import merged_state_dict, trainable_state
from auxol.finetune.config import MethodConfig
from auxol.finetune.peft_setup import prepare
from auxol.finetune.trainer import Trainer
from auxol.io import write_mask_png, write_image_png
from auxol.models.preprocess import Preprocessing
from auxol.models.promptable import PromptableModel
from rich.console import Console

TINY_INPUT = Preprocessing(input_size=64, keep_aspect=True, interpolation="area", normalization="minmax")


def tiny_model(seed: int = 0) -> PromptableModel:
    """A SAM with a 4-block ViT (dim 32, 16x16 patches of 4 px), 32-channel prompt encoder and decoder; random weights."""
    torch.manual_seed(seed)
    encoder = ImageEncoderViT(
        img_size=64, patch_size=4, embed_dim=32, depth=4, num_heads=2, mlp_ratio=2.0, out_chans=32,
        qkv_bias=True, use_rel_pos=False, window_size=0, global_attn_indexes=(),
    )
    prompt_encoder = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(64, 64), mask_in_chans=4)
    decoder = MaskDecoder(
        transformer_dim=32, transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
        num_multimask_outputs=3, iou_head_depth=2, iou_head_hidden_dim=32,
    )
    return PromptableModel("tiny", encoder, prompt_encoder, decoder, TINY_INPUT).eval()


def write_squares(folder: Path, count: int, size: int = 48, seed: int = 0) -> Path:
    """A dataset part of ``count`` noisy gray images with one bright square each, and their masks."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
        mask = np.zeros((size, size), bool)
        x, y, side = rng.integers(4, 20), rng.integers(4, 20), rng.integers(16, 24)
        mask[y : y + side, x : x + side] = True
        image[mask] += 150
        write_image_png(folder / "images" / f"case{index:02d}.png", np.repeat(image[..., None], 3, axis=2))
        write_mask_png(folder / "masks" / f"case{index:02d}.png", mask)
    return folder


def tiny_trainer(tmp_path: Path, out: Path, place: Distributed = Distributed(), **options) -> Trainer:
    data = tmp_path / "data"
    if not data.exists():
        write_squares(data, 8)
    config = FinetuneConfig(train=str(data), val=str(data), out=str(out), batch_size=2, warmup_steps=2, augment=False, **options)
    torch.manual_seed(config.seed)
    model = tiny_model()
    prepare(model, config.method_config())
    return Trainer(model, config, place, Console(quiet=True))


def test_training_lowers_the_loss(tmp_path):
    trainer = tiny_trainer(tmp_path, tmp_path / "out", method="vanilla", parts="encoder,decoder", max_steps=24, lr=3e-3)
    trainer.fit()
    losses = [row["loss"] for row in trainer.log]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert (tmp_path / "out" / "peft" / "weights.safetensors").is_file()
    assert trainer.log[-1]["val_dice"] != ""  # validated at the last step


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = tiny_trainer(tmp_path, tmp_path / "straight", max_steps=6, save_every=1)
    straight.fit()

    interrupted = tiny_trainer(tmp_path, tmp_path / "resumed", max_steps=6, save_every=1)
    original_step = Trainer.train_step

    def step_then_interrupt(self, items):
        if self.step == 3:
            raise KeyboardInterrupt
        return original_step(self, items)

    monkeypatch.setattr(Trainer, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = tiny_trainer(tmp_path, tmp_path / "resumed", max_steps=6, save_every=1)
    resumed.load_state()
    assert resumed.step == 3
    resumed.fit()
    expected, actual = trainable_state(straight.model), trainable_state(resumed.model)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)
    assert [row["step"] for row in resumed.log] == list(range(1, 7))


@pytest.mark.parametrize("method", ["vanilla", "lora"])
def test_merged_state_dict_reproduces_the_trained_model(method):
    model = tiny_model()
    prepare(model, MethodConfig(method, "encoder,decoder"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    fresh = tiny_model(seed=1)
    fresh.load_state_dict(merged_state_dict(model), strict=True)
    image = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    expected = model.embed(image).features
    torch.testing.assert_close(fresh.embed(image).features, expected, rtol=1e-4, atol=1e-4)
    assert model.state_dict().keys() != fresh.state_dict().keys() or method == "vanilla"


def test_final_lr_and_warm_up_follow_the_recipe():
    from auxol.finetune.trainer import lr_factor

    assert lr_factor(0, 200, 1000) == pytest.approx(1 / 200)
    assert lr_factor(100, 200, 1000) == pytest.approx(1 / 200 + (1 - 1 / 200) / 2)
    assert lr_factor(200, 200, 1000) == pytest.approx(1.0)
    assert lr_factor(600, 200, 1000) == pytest.approx(0.5**0.9)
    assert lr_factor(1000, 200, 1000) == 0.0


def test_automatic_mode_trains_one_map_per_class(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(4):
        labels = np.zeros((40, 40), np.uint8)
        labels[5:20, 5:20], labels[22:36, 20:38] = 1, 2
        write_image_png(tmp_path / "classes" / "images" / f"c{index}.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        write_image_png(tmp_path / "classes" / "masks" / f"c{index}.png", labels)
    config = FinetuneConfig(train=str(tmp_path / "classes"), val=str(tmp_path / "classes"), out=str(tmp_path / "out"),
                            prompt="none", classes=2, method="lora", parts="decoder", batch_size=2, max_steps=2, augment=False)
    model = tiny_model()
    prepare(model, config.method_config())
    trainer = Trainer(model, config, Distributed(), Console(quiet=True))
    outputs = trainer.segmenter([trainer.dataset[0]])
    assert outputs[0].shape == (2, 40, 40)
    trainer.fit()
    assert trainer.step == 2 and 0.0 <= trainer.best["val_dice"] <= 1.0

"""Masked-image self-supervised pre-training of a SAM-family image encoder on unlabelled images.

As in the study's finding 4, the image encoder is pre-trained further on unlabelled
medical images before fine-tuning. SAM's windowed ViT and TinyViT's convolutional stem
cannot drop tokens as MAE's plain ViT does, so masking follows SimMIM (Xie et al. 2022),
MAE's formulation for such encoders: random patches of the preprocessed input are set to
zero, the encoder sees the whole masked image, and a light decoder (1x1 convolutions
and a pixel shuffle) reconstructs every pixel from the encoder's (256, 64, 64)
features; the loss is the mean squared error over the masked patches only. One patch is
the input area behind one feature cell (S / 64 px: 16 for SAM's 1024 input, 4 for
LiteMedSAM's 256).

The result is a full SAM-format state dict (the model with its new encoder), which
``auxol finetune --checkpoint`` and every other ``--checkpoint`` accept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from auxol.data import IMAGE_SUFFIXES, read_image
from auxol.errors import DataError
from auxol.finetune.report import plot_curve
from auxol.io import atomic_open, write_csv, write_json
from auxol.models import PromptableModel
from auxol.progress import progress


class ReconstructionHead(nn.Module):
    """Encoder features (B, C, h, w) -> reconstructed input (B, 3, h * patch, w * patch)."""

    def __init__(self, channels: int, patch: int, hidden: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 3 * patch * patch, 1), nn.PixelShuffle(patch)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def random_patch_mask(batch: int, grid: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Bool (batch, grid, grid): True on round(ratio * grid**2) patches per image chosen at random."""
    count = round(ratio * grid * grid)
    scores = torch.rand(batch, grid * grid, generator=generator)
    chosen = scores.argsort(dim=1)[:, :count]
    mask = torch.zeros(batch, grid * grid, dtype=torch.bool)
    mask.scatter_(1, chosen, True)
    return mask.view(batch, grid, grid)


class MaskedImageModel(nn.Module):
    """An image encoder and a :class:`ReconstructionHead`; ``forward`` returns the masked-patch MSE."""

    def __init__(self, image_encoder: nn.Module, input_size: int, grid: int = 64, channels: int = 256) -> None:
        super().__init__()
        self.encoder = image_encoder
        self.patch = input_size // grid
        self.head = ReconstructionHead(channels, self.patch)

    def forward(self, inputs: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """``inputs`` (B, 3, S, S) preprocessed; ``patch_mask`` bool (B, S/patch, S/patch); returns a scalar loss."""
        pixel_mask = patch_mask.repeat_interleave(self.patch, 1).repeat_interleave(self.patch, 2)[:, None].to(inputs.device)
        reconstruction = self.head(self.encoder(inputs * ~pixel_mask))
        error = (reconstruction - inputs) ** 2 * pixel_mask
        return error.sum() / (pixel_mask.sum() * 3).clamp(min=1)


@dataclass(frozen=True)
class PretrainConfig:
    """What ``auxol pretrain`` was asked to do; written to ``OUT/config.json``."""

    images: str
    out: str
    model: str = "litemedsam"
    checkpoint: str | None = None
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 4
    lr: float = 1.5e-4
    weight_decay: float = 0.05
    mask_ratio: float = 0.75
    seed: int = 0


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; DataError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not found:
        raise DataError(f"{folder}: no images ({' '.join(IMAGE_SUFFIXES)})")
    return found


def pretrain(model: PromptableModel, config: PretrainConfig, console: Console | None = None) -> Path:
    """Pre-train ``model.image_encoder`` in place on the images of ``config.images``; returns the written checkpoint.

    Writes ``OUT/pretrained.pth`` (SAM-format state dict of the whole model), ``OUT/log.csv``
    (step, loss), ``OUT/curve.png``, ``OUT/summary.json`` (steps, images, seconds, mean
    loss of the first and of the last 10% of steps) and ``OUT/config.json``.
    """
    console = console or Console()
    out = Path(config.out)
    torch.manual_seed(config.seed)
    paths = list_images(config.images)
    grid = model.prompt_encoder.image_embedding_size[0]
    learner = MaskedImageModel(model.image_encoder, model.input_size, grid, model.prompt_encoder.embed_dim).to(model.device)
    learner.train()
    learner.requires_grad_(True)
    optimizer = torch.optim.AdamW(learner.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = -(-len(paths) // config.batch_size)
    total = min(config.max_steps or 10**12, config.epochs * steps_per_epoch)
    write_json(out / "config.json", config.__dict__)
    log, step, started = [], 0, time.perf_counter()
    with progress(console) as bar:
        task = bar.add_task("pretrain", total=total, status="")
        while step < total:
            order = np.random.default_rng([config.seed, step // steps_per_epoch]).permutation(len(paths))
            for start in range(0, len(order), config.batch_size):
                inputs = torch.stack([model.preprocess(read_image(paths[i])) for i in order[start : start + config.batch_size]])
                loss = learner(inputs, random_patch_mask(len(inputs), grid, config.mask_ratio, generator))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                log.append({"step": step, "loss": loss.item()})
                bar.update(task, completed=step, status=f"loss {log[-1]['loss']:.4f}")
                if step >= total:
                    break
    model.requires_grad_(False)
    with atomic_open(out / "pretrained.pth", "wb") as handle:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, handle)
    write_csv(out / "log.csv", log)
    plot_curve(log, out / "curve.png", "masked-patch MSE")
    tenth = max(1, len(log) // 10)
    write_json(out / "summary.json", {
        "steps": step, "images": len(paths), "seconds": time.perf_counter() - started,
        "first_loss": float(np.mean([row["loss"] for row in log[:tenth]])),
        "last_loss": float(np.mean([row["loss"] for row in log[-tenth:]])),
    })
    return out / "pretrained.pth"

"""``auxol finetune``, ``pretrain``, ``split`` and ``slices``: fine-tune SAM-family models as the SAM fine-tuning study recommends."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, get_args

import typer

from auxol.data import load_dataset
from auxol.errors import ConfigError
from auxol.commands.options import (
    BoxMarginOption, CheckpointOption, DeviceOption, ModelOption, choices, given_options,
)
from auxol.finetune.config import FINETUNE_KEYS, METHODS, PARTS, EmptyPolicy, FinetuneConfig, PromptMode, resolve_config
from auxol.io import write_csv
from auxol.models import DEFAULT_MODEL


MethodName = choices("MethodName", METHODS)
PartsName = choices("PartsName", PARTS)
TrainPrompt = choices("TrainPrompt", get_args(PromptMode))
EmptyPolicyName = choices("EmptyPolicyName", get_args(EmptyPolicy))


def _names(text: str, option: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ConfigError(f"{option}: expected comma-separated names, got {text!r}")
    return names


def _blocks(text: str | list | None) -> tuple[int, ...] | None:
    """``--blocks``: 'default' (first two, last two), 'all', or comma-separated indices such as 0,1,10,11."""
    if text is None or text == "default":
        return None
    if isinstance(text, list):
        return tuple(int(v) for v in text)
    if text == "all":
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--blocks: expected 'default', 'all' or indices like 0,1,10,11, got {text!r}") from None


def _value(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def finetune(
    ctx: typer.Context,
    train: Annotated[Path | None, typer.Option(help="Training data: dataset folder or CSV list (image_path,mask_path).")] = None,
    val: Annotated[Path | None, typer.Option(help="Validation data: dataset folder or CSV list.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    test: Annotated[Path | None, typer.Option(help="Data of the final evaluation (default: --val).")] = None,
    model: ModelOption = FinetuneConfig.model,
    checkpoint: CheckpointOption = None,
    method: Annotated[MethodName, typer.Option(help="What trains: vanilla weights, LoRA or adapters.")] = FinetuneConfig.method,
    parts: Annotated[PartsName, typer.Option(help="Adapt the decoder only, or the encoder and the decoder.")] = FinetuneConfig.parts,
    prompt: Annotated[TrainPrompt, typer.Option(help="Training prompts: none (automatic), box or point.")] = FinetuneConfig.prompt,
    classes: Annotated[int, typer.Option(help="Foreground classes (mask values 1..N); N > 1 needs --prompt none.")] = FinetuneConfig.classes,
    shots: Annotated[int | None, typer.Option(help="Train on K pairs drawn with --seed (few-shot).")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = FinetuneConfig.epochs,
    max_steps: Annotated[int | None, typer.Option(help="Most optimiser steps (also the poly-decay horizon).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step and process.")] = FinetuneConfig.batch_size,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = FinetuneConfig.lr,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = FinetuneConfig.weight_decay,
    beta1: Annotated[float, typer.Option(help="AdamW beta1.")] = FinetuneConfig.beta1,
    beta2: Annotated[float, typer.Option(help="AdamW beta2.")] = FinetuneConfig.beta2,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps from lr/200.")] = FinetuneConfig.warmup_steps,
    poly_power: Annotated[float, typer.Option(help="Power of the poly decay after warm-up.")] = FinetuneConfig.poly_power,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = FinetuneConfig.val_every,
    patience: Annotated[int, typer.Option(help="Stop after N epochs without a new best validation Dice.")] = FinetuneConfig.patience,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Light augmentation (colour, equalise, rotate, zoom).")] = FinetuneConfig.augment,
    empty: Annotated[EmptyPolicyName, typer.Option(help="Training pairs whose mask is empty: skip or keep.")] = FinetuneConfig.empty,
    min_size: Annotated[int, typer.Option(help="Components with a box narrower or shorter than this (px) get no prompt.")] = FinetuneConfig.min_size,
    box_margin: BoxMarginOption = FinetuneConfig.box_margin,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = FinetuneConfig.lora_rank,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha (update scaled by alpha/rank).")] = FinetuneConfig.lora_alpha,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = FinetuneConfig.lora_dropout,
    blocks: Annotated[str, typer.Option(help="Encoder blocks to adapt: default (first two, last two), all, or 0,1,10,11.")] = "default",
    encoder_targets: Annotated[str, typer.Option(help="LoRA slices of the encoder qkv, among q,k,v.")] = ",".join(FinetuneConfig.encoder_targets),
    decoder_targets: Annotated[str, typer.Option(help="LoRA projections of the decoder attentions.")] = ",".join(FinetuneConfig.decoder_targets),
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order, augmentation and prompts.")] = FinetuneConfig.seed,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = FinetuneConfig.workers,
    save_every: Annotated[int, typer.Option(help="Write the resumable state every N steps.")] = FinetuneConfig.save_every,
    device: DeviceOption = None,
    distributed: Annotated[bool | None, typer.Option("--distributed/--no-distributed", help="Require (or refuse) a torchrun launch; default: as launched.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/state.pt.")] = False,
    config: Annotated[Path | None, typer.Option(help="JSON file of options; command-line options override it.")] = None,
) -> None:
    """Fine-tune a SAM-family model (vanilla, LoRA or adapters) and write its checkpoints, log and summary to OUT."""
    from auxol.finetune.trainer import run_finetune

    values = resolve_config(config, given_options(ctx, FINETUNE_KEYS))
    for name in ("train", "val", "out"):
        if values.get(name) is None:
            raise ConfigError(f"--{name} is required (on the command line or in --config)")
    values.update(
        blocks=_blocks(values["blocks"]),
        encoder_targets=_names(values["encoder_targets"], "--encoder-targets") if isinstance(values["encoder_targets"], str) else tuple(values["encoder_targets"]),
        decoder_targets=_names(values["decoder_targets"], "--decoder-targets") if isinstance(values["decoder_targets"], str) else tuple(values["decoder_targets"]),
        **{name: None if values.get(name) is None else str(values[name]) for name in ("train", "val", "out", "test", "checkpoint")},
    )
    summary = run_finetune(FinetuneConfig(**values))
    if summary is not None:
        final = summary.final_evaluation
        typer.echo(f"best validation Dice {summary.best['val_dice']:.4f} at step {summary.best['step']}; "
                   f"final Dice {final['dice']:.4f} on {final['n']} images of {final['data']}; wrote {values['out']}")


def split(
    data: Annotated[Path, typer.Argument(help="A dataset folder or CSV list.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train.csv and test.csv.")],
    first: Annotated[int, typer.Option(help="The first N pairs (in dataset order: part, then sorted name) go to train.csv.")],
) -> None:
    """Split DATA deterministically into OUT/train.csv (its first N pairs) and OUT/test.csv (the rest), with absolute paths."""
    pairs = [pair for listing in load_dataset(data) for pair in listing.pairs]
    if not 0 < first < len(pairs):
        raise ConfigError(f"--first must be between 1 and {len(pairs) - 1} for the {len(pairs)} pairs of {data}, got {first}")
    for name, chosen in (("train", pairs[:first]), ("test", pairs[first:])):
        rows = [{"image_path": p.image_path.resolve(), "mask_path": p.mask_path.resolve()} for p in chosen]
        write_csv(out / f"{name}.csv", rows)
    typer.echo(f"wrote {out}/train.csv ({first} pairs) and {out}/test.csv ({len(pairs) - first} pairs)")


def pretrain(
    images: Annotated[Path, typer.Option(help="Folder of unlabelled images (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    epochs: Annotated[int, typer.Option(help="Passes over the images.")] = 10,
    max_steps: Annotated[int | None, typer.Option(help="Most optimiser steps.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 4,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1.5e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.05,
    mask_ratio: Annotated[float, typer.Option(help="Fraction of input patches masked.")] = 0.75,
    seed: Annotated[int, typer.Option(help="Seed of the order and the masks.")] = 0,
    device: DeviceOption = None,
) -> None:
    """Masked-image pre-training of the image encoder on unlabelled images; writes OUT/pretrained.pth for --checkpoint."""
    from auxol.finetune.mae import PretrainConfig, pretrain as run_pretrain
    from auxol.loading import load_model

    if not 0 < mask_ratio < 1:
        raise ConfigError(f"--mask-ratio must be between 0 and 1, got {mask_ratio}")
    name = _value(model)
    config = PretrainConfig(str(images), str(out), name, None if checkpoint is None else str(checkpoint),
                            epochs, max_steps, batch_size, lr, weight_decay, mask_ratio, seed)
    path = run_pretrain(load_model(name, checkpoint, device), config)
    typer.echo(f"wrote {path}; fine-tune from it with 'auxol finetune --model {name} --checkpoint {path} ...'")

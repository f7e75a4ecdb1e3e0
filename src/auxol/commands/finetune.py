"""``auxol finetune``, ``pretrain``, ``split`` and ``slices``: fine-tune SAM-family models as the SAM fine-tuning study recommends."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from auxol.data import load_dataset
from auxol.errors import ConfigError
from auxol.commands.options import (
    BoxMarginOption, CheckpointOption, DeviceOption, ModelOption,
)
from auxol.io import write_csv
from auxol.models import DEFAULT_MODEL
from auxol.prompts import DEFAULT_BOX_MARGIN


# The choices below mirror auxol.finetune's METHODS, PARTS, PromptMode and EmptyPolicy, spelled
# out because importing auxol.finetune (peft, the trainer) would add ~6 s to every CLI start;
# the library checks each value again (FinetuneConfig: method, parts; auxol.finetune.data: prompt, empty).


class MethodName(str, Enum):
    vanilla = "vanilla"
    lora = "lora"
    adapter = "adapter"


class PartsName(str, Enum):
    decoder = "decoder"
    encoder_decoder = "encoder,decoder"


class TrainPrompt(str, Enum):
    none = "none"
    box = "box"
    point = "point"


class EmptyPolicyName(str, Enum):
    skip = "skip"
    keep = "keep"


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
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    method: Annotated[MethodName, typer.Option(help="What trains: vanilla weights, LoRA or adapters.")] = MethodName.lora,
    parts: Annotated[PartsName, typer.Option(help="Adapt the decoder only, or the encoder and the decoder.")] = PartsName.encoder_decoder,
    prompt: Annotated[TrainPrompt, typer.Option(help="Training prompts: none (automatic), box or point.")] = TrainPrompt.box,
    classes: Annotated[int, typer.Option(help="Foreground classes (mask values 1..N); N > 1 needs --prompt none.")] = 1,
    shots: Annotated[int | None, typer.Option(help="Train on K pairs drawn with --seed (few-shot).")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = 200,
    max_steps: Annotated[int | None, typer.Option(help="Most optimiser steps (also the poly-decay horizon).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step and process.")] = 4,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.1,
    beta1: Annotated[float, typer.Option(help="AdamW beta1.")] = 0.9,
    beta2: Annotated[float, typer.Option(help="AdamW beta2.")] = 0.999,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps from lr/200.")] = 200,
    poly_power: Annotated[float, typer.Option(help="Power of the poly decay after warm-up.")] = 0.9,
    val_every: Annotated[int, typer.Option(help="Validate every N epochs.")] = 2,
    patience: Annotated[int, typer.Option(help="Stop after N epochs without a new best validation Dice.")] = 20,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Light augmentation (colour, equalise, rotate, zoom).")] = True,
    empty: Annotated[EmptyPolicyName, typer.Option(help="Training pairs whose mask is empty: skip or keep.")] = EmptyPolicyName.skip,
    min_size: Annotated[int, typer.Option(help="Components with a box narrower or shorter than this (px) get no prompt.")] = 16,
    box_margin: BoxMarginOption = DEFAULT_BOX_MARGIN,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 4,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha (update scaled by alpha/rank).")] = 4.0,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.0,
    blocks: Annotated[str, typer.Option(help="Encoder blocks to adapt: default (first two, last two), all, or 0,1,10,11.")] = "default",
    encoder_targets: Annotated[str, typer.Option(help="LoRA slices of the encoder qkv, among q,k,v.")] = "q,v",
    decoder_targets: Annotated[str, typer.Option(help="LoRA projections of the decoder attentions.")] = "q_proj,v_proj",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order, augmentation and prompts.")] = 0,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 0,
    save_every: Annotated[int, typer.Option(help="Write the resumable state every N steps.")] = 50,
    device: DeviceOption = None,
    distributed: Annotated[bool | None, typer.Option("--distributed/--no-distributed", help="Require (or refuse) a torchrun launch; default: as launched.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/state.pt.")] = False,
    config: Annotated[Path | None, typer.Option(help="JSON file of options; command-line options override it.")] = None,
) -> None:
    """Fine-tune a SAM-family model (vanilla, LoRA or adapters) and write its checkpoints, log and summary to OUT."""
    from auxol.finetune.config import FinetuneConfig, read_config_file
    from auxol.finetune.trainer import run_finetune

    given = {name: value for name, value in ctx.params.items() if ctx.get_parameter_source(name).name == "COMMANDLINE"}
    defaults = {name: value for name, value in ctx.params.items() if name not in given}
    values = {**defaults, **(read_config_file(config) if config else {}), **given}
    values.pop("config")
    for name in ("train", "val", "out"):
        if values[name] is None:
            raise ConfigError(f"--{name} is required (on the command line or in --config)")
    values = {name: _value(value) for name, value in values.items()}
    values.update(
        blocks=_blocks(values["blocks"]),
        encoder_targets=_names(values["encoder_targets"], "--encoder-targets") if isinstance(values["encoder_targets"], str) else tuple(values["encoder_targets"]),
        decoder_targets=_names(values["decoder_targets"], "--decoder-targets") if isinstance(values["decoder_targets"], str) else tuple(values["decoder_targets"]),
        **{name: None if values[name] is None else str(values[name]) for name in ("train", "val", "out", "test", "checkpoint")},
    )
    summary = run_finetune(FinetuneConfig(**{field.name: values[field.name] for field in fields(FinetuneConfig)}))
    if summary is not None:
        final = summary["final_evaluation"]
        typer.echo(f"best validation Dice {summary['best']['val_dice']:.4f} at step {summary['best']['step']}; "
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
    from auxol.models import load_model

    if not 0 < mask_ratio < 1:
        raise ConfigError(f"--mask-ratio must be between 0 and 1, got {mask_ratio}")
    name = _value(model)
    config = PretrainConfig(str(images), str(out), name, None if checkpoint is None else str(checkpoint),
                            epochs, max_steps, batch_size, lr, weight_decay, mask_ratio, seed)
    path = run_pretrain(load_model(name, checkpoint, device), config)
    typer.echo(f"wrote {path}; fine-tune from it with 'auxol finetune --model {name} --checkpoint {path} ...'")

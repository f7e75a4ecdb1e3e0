"""The resolved configuration of one fine-tuning run, with the study's recipe as defaults.

Every field is a command-line option of ``auxol finetune`` (underscores become dashes)
and a key of ``--config FILE.json``; options given on the command line override the
file. The run writes the resolved configuration to ``OUT/config.json``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from auxol.errors import ConfigError
from auxol.finetune.lora import LoraSettings
from auxol.finetune.peft_setup import MethodConfig
from auxol.io import read_options_file
from auxol.prompts import DEFAULT_BOX_MARGIN


@dataclass(frozen=True)
class FinetuneConfig:
    """What to train, on what, and how.

    Data: ``train``/``val``/``test`` are dataset folders or CSV lists; the final
    evaluation uses ``test``, or ``val`` when no test set is given. ``shots``: train on
    that many pairs drawn with ``seed`` (few-shot); None = all.

    Recipe (the study's): Dice + cross-entropy; AdamW(lr, weight_decay, (beta1, beta2));
    linear warm-up over ``warmup_steps`` from lr/200 to lr, then poly decay with
    ``poly_power`` to 0 at the last step; ``batch_size`` items per process and step;
    validation every ``val_every`` epochs; stop after ``patience`` epochs without a new
    best validation Dice. ``max_steps`` caps the steps (and sets the poly horizon).

    Validation and the final evaluation derive prompts as ``auxol evaluate`` does
    (``box_margin``, ``min_size``); training boxes are widened per side by a random 0-10 %
    of the box (the study's rule).
    """

    train: str
    val: str
    out: str
    test: str | None = None
    model: str = "litemedsam"
    checkpoint: str | None = None
    method: str = MethodConfig.method
    parts: str = MethodConfig.parts
    prompt: str = "box"
    classes: int = 1
    shots: int | None = None
    epochs: int = 200
    max_steps: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 200
    poly_power: float = 0.9
    val_every: int = 2
    patience: int = 20
    augment: bool = True
    empty: str = "skip"
    min_size: int = 16
    box_margin: float = DEFAULT_BOX_MARGIN
    lora_rank: int = LoraSettings.rank
    lora_alpha: float = LoraSettings.alpha
    lora_dropout: float = LoraSettings.dropout
    blocks: tuple[int, ...] | None = LoraSettings.encoder_blocks
    encoder_targets: tuple[str, ...] = LoraSettings.encoder_targets
    decoder_targets: tuple[str, ...] = LoraSettings.decoder_targets
    seed: int = 0
    workers: int = 0
    save_every: int = 50
    device: str | None = None
    distributed: bool | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "val_every": self.val_every, "classes": self.classes,
                    "lora_rank": self.lora_rank, "save_every": self.save_every}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.patience < 1:
            raise ConfigError("--lr must be > 0, --warmup-steps >= 0 and --patience >= 1")
        self.method_config()  # validates method and parts

    def method_config(self) -> MethodConfig:
        lora = LoraSettings(self.lora_rank, self.lora_alpha, self.lora_dropout, self.blocks, tuple(self.encoder_targets), tuple(self.decoder_targets))
        return MethodConfig(self.method, self.parts, lora)

    def to_dict(self) -> dict:
        return asdict(self)


def read_config_file(path: str | os.PathLike) -> dict:
    """The options in the JSON object at ``path``, checked against :class:`FinetuneConfig`'s fields."""
    return read_options_file(path, (field.name for field in fields(FinetuneConfig)))

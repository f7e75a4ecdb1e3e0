"""The resolved configuration of one fine-tuning run, with the study's recipe as defaults.

Every field of :class:`FinetuneConfig` is a command-line option of ``auxol finetune``
(underscores become dashes) and a key of ``--config FILE.json``; options resolve as
:func:`resolve_config` says (defaults, then the file, then the options given). The run
writes the resolved configuration to ``OUT/config.json``.

This module imports neither ``peft`` nor the trainer, so the command line reads its
choices and defaults here at no cost: :class:`LoraSettings` and :class:`MethodConfig`
(one cell of the study's grid) live here, and :mod:`auxol.finetune.lora` and
:mod:`auxol.finetune.peft_setup` apply them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from auxol.errors import ConfigError
from auxol.io import read_options_file
from auxol.models import DEFAULT_MODEL
from auxol.options import resolve
from auxol.prompts import DEFAULT_BOX_MARGIN

PromptMode = Literal["none", "box", "point"]
"""Training prompts: none (automatic segmentation), boxes or points derived from the masks."""
EmptyPolicy = Literal["skip", "keep"]
"""What happens to a training pair (or a slice) whose mask is empty: left out, or kept."""


@dataclass(frozen=True)
class LoraSettings:
    """Where and how LoRA adapts a model.

    Attributes:
        rank: rank r of the A (r x in) and B (out x r) matrices.
        alpha: the update is scaled by alpha / rank.
        dropout: dropout probability on the LoRA input.
        encoder_blocks: indices of the encoder attention blocks (see
            :mod:`auxol.finetune.blocks`); None = first two and last two, [] = all.
        encoder_targets: slices of the fused qkv projection to adapt, among q, k, v.
        decoder_targets: projections of every mask-decoder attention to adapt, among
            q_proj, k_proj, v_proj, out_proj.
    """

    rank: int = 4
    alpha: float = 4.0
    dropout: float = 0.0
    encoder_blocks: tuple[int, ...] | None = None
    encoder_targets: tuple[str, ...] = ("q", "v")
    decoder_targets: tuple[str, ...] = ("q_proj", "v_proj")


Method = Literal["vanilla", "lora", "adapter"]
"""What trains: the model's own weights (vanilla), LoRA, or adapters."""
METHODS: tuple[str, ...] = get_args(Method)
Parts = Literal["decoder", "encoder,decoder"]
"""What is adapted: the mask decoder only, or the image encoder and the mask decoder."""
PARTS: tuple[str, ...] = get_args(Parts)


@dataclass(frozen=True)
class MethodConfig:
    """One cell of the grid.

    Attributes:
        method: vanilla, lora or adapter.
        parts: "decoder" or "encoder,decoder".
        lora: LoRA placement and size (method lora); its ``encoder_blocks`` also choose
            the adapted blocks of method adapter.
    """

    method: Method = "lora"
    parts: Parts = "encoder,decoder"
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.parts not in PARTS:
            raise ConfigError(f"--parts must be 'decoder' or 'encoder,decoder', got {self.parts!r}")

    @property
    def encoder(self) -> bool:
        """Whether the image encoder is adapted (and so runs with grad)."""
        return self.parts == "encoder,decoder"


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
    model: str = DEFAULT_MODEL
    checkpoint: str | None = None
    method: Method = MethodConfig.method
    parts: Parts = MethodConfig.parts
    prompt: PromptMode = "box"
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
    empty: EmptyPolicy = "skip"
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


FINETUNE_KEYS = frozenset(option.name for option in fields(FinetuneConfig))
"""The option names of :class:`FinetuneConfig`: the keys a ``--config`` file may hold."""


def read_config_file(path: str | os.PathLike) -> dict:
    """The options in the JSON object at ``path``, checked against :class:`FinetuneConfig`'s fields."""
    return read_options_file(path, FINETUNE_KEYS)


def resolve_config(config_file: str | os.PathLike | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a run as a dict: :class:`FinetuneConfig`'s defaults, then ``config_file``'s keys, then ``given``.

    The values are as the user wrote them (e.g. ``encoder_targets`` may still be the
    string ``"q,v"``); the command turns them into the field types.
    """
    defaults = {option.name: option.default for option in fields(FinetuneConfig) if option.default is not dataclasses.MISSING}
    return resolve(defaults, config_file, given, FINETUNE_KEYS)

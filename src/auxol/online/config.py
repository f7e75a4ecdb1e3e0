"""AuxOL configuration: one dataclass and its named presets.

``paper`` is the published configuration (see ``docs/auxol-method.md``); ``cpu`` is the
product default, chosen by measuring cost and Dice gain on a CPU (LiteMedSAM, DDTI
thyroid ultrasound, tight box prompts; figures in the ``PRESETS`` comments).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from auxol.errors import ConfigError

BatchNormStatistics = Literal["queue", "running"]
"""BatchNorm statistics the auxiliary network predicts with: the online batch's, or the running averages."""


@dataclass(frozen=True)
class AuxOLConfig:
    """Every option of the AuxOL learner; the defaults are the published ones (``paper``).

    Attributes:
        width: channels of the auxiliary U-Net's first level (levels w-2w-4w-8w-8w).
        queue_length: N, the crops (with their rectified masks) kept in the online batch.
        crop_size: side in pixels of the square auxiliary input.
        four_channel: append the foundation model's binary mask as a 4th input channel.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        steps_per_image: optimiser steps per crop of each learned image.
        train_on_unrectified: for an image without a rectified mask, still take the
            optimiser steps on the existing online batch (published behaviour).
        predict_batchnorm: BatchNorm statistics of the auxiliary forward in
            :meth:`AuxOL.predict`. ``"queue"``: batch statistics of the online batch plus
            the crop, as the published code computes the new crop's output in the
            training forward; ``"running"``: the running averages (eval mode), a
            forward of the crops alone.
        bn_momentum: momentum of the BatchNorm running averages (PyTorch convention).
        alpha_step: spacing of the fusion-weight grid {0, step, ..., alpha_max}.
        alpha_max: upper end of the fusion-weight grid.
        alpha_history: K, the number of past best alphas averaged into the one used.
        crop_margin: widen each side of a box prompt's crop by this fraction of the
            box's width (left, right) or height (top, bottom); 0 = the prompt box.
        keep_base_outside_crop: outside the crop boxes the final mask keeps the
            foundation model's mask; off = empty there (the published "box cut").
        bf16: run the auxiliary network under bfloat16 autocast.
        channels_last: keep the auxiliary network's activations in channels-last layout.
        seed: seeds Python, NumPy and PyTorch when the learner is created.
        deterministic: ``torch.use_deterministic_algorithms`` (warn only) when created.
    """

    width: int = 64
    queue_length: int = 32
    crop_size: int = 128
    four_channel: bool = True
    lr: float = 5e-4
    weight_decay: float = 5e-4
    steps_per_image: int = 1
    train_on_unrectified: bool = True
    predict_batchnorm: BatchNormStatistics = "queue"
    bn_momentum: float = 0.1
    alpha_step: float = 0.05
    alpha_max: float = 1.0
    alpha_history: int = 5
    crop_margin: float = 0.0
    keep_base_outside_crop: bool = False
    bf16: bool = False
    channels_last: bool = False
    seed: int = 1234
    deterministic: bool = True

    def __post_init__(self) -> None:
        positive = {"width": self.width, "queue_length": self.queue_length, "steps_per_image": self.steps_per_image,
                    "alpha_history": self.alpha_history, "lr": self.lr, "alpha_step": self.alpha_step}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"AuxOL option {name}: must be > 0, got {value}")
        if self.crop_size < 16 or self.crop_size % 16:
            raise ConfigError(f"AuxOL option crop_size: must be a multiple of 16 (four poolings), got {self.crop_size}")
        if not 0 < self.alpha_max <= 1:
            raise ConfigError(f"AuxOL option alpha_max: must be in (0, 1], got {self.alpha_max}")
        if self.predict_batchnorm not in ("queue", "running"):
            raise ConfigError(
                f"AuxOL option predict_batchnorm: must be 'queue' or 'running', got {self.predict_batchnorm!r}"
            )
        if self.crop_margin < 0 or self.weight_decay < 0 or not 0 <= self.bn_momentum <= 1:
            raise ConfigError("AuxOL options crop_margin, weight_decay: must be >= 0; bn_momentum: in [0, 1]")

    @classmethod
    def preset(cls, name: str) -> AuxOLConfig:
        """The named preset (see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown AuxOL preset {name!r}; choose from {', '.join(PRESETS)}")
        return PRESETS[name]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuxOLConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown AuxOL option(s): {', '.join(unknown)}")
        return cls(**data)


PRESETS: dict[str, AuxOLConfig] = {
    # The published configuration: 64-wide U-Net, 32 crops of 128 px, fp32.
    "paper": AuxOLConfig(),
    # Product default on a CPU (measurements in the auxol.online docstring): a 16-wide
    # U-Net on 64 px crops 20% wider than the box, an online batch of 8, three steps
    # per crop, bf16.
    "cpu": AuxOLConfig(
        width=16,
        queue_length=8,
        crop_size=64,
        steps_per_image=3,
        crop_margin=0.2,
        keep_base_outside_crop=True,
        bf16=True,
        channels_last=True,
    ),
}
DEFAULT_PRESET = "cpu"

AUXOL_KEYS = frozenset(field.name for field in dataclasses.fields(AuxOLConfig))
"""The option names of :class:`AuxOLConfig`: the AuxOL keys a ``--config`` file may hold."""

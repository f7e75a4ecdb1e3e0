"""Command-line options shared by several sub-commands."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from auxol.errors import ConfigError
from auxol.models import MODELS


class PromptKind(str, Enum):
    box = "box"
    point = "point"


ModelName = Enum("ModelName", {name: name for name in MODELS}, type=str)

ModelOption = Annotated[ModelName, typer.Option("--model", "-m", help="Foundation model.")]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(help="SAM-format weights (official file, or merged.pth of 'auxol finetune'), or an 'auxol finetune' output folder (adapter models); default: embedded or fetched."),
]
DeviceOption = Annotated[str | None, typer.Option(help="torch device, e.g. cpu or cuda:0 (default: cuda if available).")]
BoxMarginOption = Annotated[
    float,
    typer.Option(help="Widen boxes derived from masks by this fraction of the image's long side (0 = tight, as in the AuxOL paper)."),
]
PromptOption = Annotated[PromptKind, typer.Option(help="Prompt derived from each mask: its box, or its centroid point.")]
SliceAxisOption = Annotated[int, typer.Option("--axis", help="Volumes: array axis to slice along (0: axial for usual axial scans).", min=0, max=2)]
WindowOption = Annotated[
    str | None, typer.Option(help="Volumes: intensity window LOW,HIGH (e.g. -160,240 for CT); default: 0.5-99.5th percentiles."),
]


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``--window LOW,HIGH`` as floats (None stays None); ConfigError for anything else."""
    if text is None:
        return None
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError:
        raise ConfigError(f"--window: expected LOW,HIGH, got {text!r}") from None
    if high <= low:
        raise ConfigError(f"--window: HIGH must exceed LOW, got {text!r}")
    return low, high

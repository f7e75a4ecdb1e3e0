"""Command-line options shared by several sub-commands."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from auxol.models import MODELS


class PromptKind(str, Enum):
    box = "box"
    point = "point"


ModelName = Enum("ModelName", {name: name for name in MODELS}, type=str)

ModelOption = Annotated[ModelName, typer.Option("--model", "-m", help="Foundation model.")]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(help="SAM-format weights (official file, or merged.pth of 'auxol finetune'); default: embedded or fetched."),
]
DeviceOption = Annotated[str | None, typer.Option(help="torch device, e.g. cpu or cuda:0 (default: cuda if available).")]
BoxMarginOption = Annotated[
    float,
    typer.Option(help="Widen boxes derived from masks by this fraction of the image's long side (0 = tight, as in the AuxOL paper)."),
]
PromptOption = Annotated[PromptKind, typer.Option(help="Prompt derived from each mask: its box, or its centroid point.")]

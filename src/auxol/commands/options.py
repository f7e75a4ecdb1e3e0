"""Command-line options shared by several sub-commands."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from auxol import prompts
from auxol.errors import ConfigError
from auxol.models import MODELS
from auxol.models.runtime import RUNTIMES


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A str Enum of ``values`` (member names = values) for a Typer option, so the CLI offers the library's own choices."""
    return Enum(name, {value: value for value in values}, type=str)


def given_options(ctx: typer.Context, names: Iterable[str]) -> dict[str, Any]:
    """The options among ``names`` that the user typed on the command line, with their values.

    These are the last layer of :func:`auxol.options.resolve`: an option left at its
    default does not override the preset or the config file.
    """
    typed = {name for name in names if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}
    return {name: ctx.params[name] for name in typed}  # the source compared by name: typer vendors its own click


PromptKind = choices("PromptKind", get_args(prompts.PromptKind))
ModelName = choices("ModelName", MODELS)
RuntimeName = choices("RuntimeName", RUNTIMES)

ModelOption = Annotated[ModelName, typer.Option("--model", "-m", help="Foundation model.")]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(help="SAM-format weights (official file, or merged.pth of 'auxol finetune'), or an 'auxol finetune' output folder (adapter models); default: embedded or fetched."),
]
RuntimeOption = Annotated[
    RuntimeName,
    typer.Option(help="What runs the frozen model: auto (OpenVINO on a CPU, PyTorch on a GPU), openvino, onnx (ONNX Runtime) or torch."),
]
DeviceOption = Annotated[str | None, typer.Option(help="torch device, e.g. cpu or cuda:0 (default: cuda if available).")]
BoxMarginOption = Annotated[
    float,
    typer.Option(help="Widen boxes derived from masks by this fraction of the image's long side (0 = tight, as in the AuxOL paper)."),
]
PromptOption = Annotated[PromptKind, typer.Option(help="Prompt derived from each mask: its box, or its centroid point.")]
SliceAxisOption = Annotated[int, typer.Option("--axis", help="Volumes: slice direction, 0 axial, 1 coronal, 2 sagittal (whatever the file layout).", min=0, max=2)]
WindowOption = Annotated[
    str | None,
    typer.Option(help="Volumes: intensity window LOW,HIGH; default: -160,240 (soft tissue) for CT, else the 0.5-99.5th percentiles."),
]
LabelOption = Annotated[
    str | None,
    typer.Option("--label", help="Volumes: the structure of the label map to segment, by id or name (e.g. 5 or liver); default: all labels merged."),
]
LabelNamesOption = Annotated[
    Path | None,
    typer.Option("--label-names", help="Volumes: JSON map of label ids to names ({\"5\": \"liver\"}); default: a labels.json beside the data."),
]


def resolve_structure(label: str | None, label_names: Path | None, *folders: Path) -> int | None:
    """The label id ``--label`` names (None: all labels), with names from ``--label-names`` or a labels.json in ``folders``."""
    from auxol.data.volumes import find_label_names, read_label_names, resolve_label

    if label is None:
        return None
    names_file = label_names or find_label_names(*folders)
    names = read_label_names(names_file) if names_file else None
    return resolve_label(label, names, None if names_file is None else str(names_file))


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``--window LOW,HIGH`` as floats (None stays None); ConfigError for anything else."""
    from auxol.data.volumes import parse_window as parse

    return parse(text, "--window")

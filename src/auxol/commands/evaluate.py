"""``auxol evaluate``: segment a dataset with prompts from its masks and score the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auxol.commands.options import (
    BoxMarginOption, CheckpointOption, DeviceOption, LabelNamesOption, LabelOption, ModelOption, PromptOption, RuntimeOption, SliceAxisOption,
    WindowOption, parse_window, resolve_structure,
)
from auxol.data.volumes import find_volume_pairs, holds_volumes, write_slices
from auxol.errors import ConfigError
from auxol.evaluate.evaluation import EvaluationConfig, evaluate as run_evaluation
from auxol.loading import load_model
from auxol.models import DEFAULT_MODEL, default_checkpoint
from auxol.progress import warn


def evaluate(
    data: Annotated[Path, typer.Argument(help="A part (images/ + masks/), a tree of parts, or a CSV list.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    prompt: PromptOption = EvaluationConfig.prompt,
    box_margin: BoxMarginOption = EvaluationConfig.box_margin,
    min_size: Annotated[int, typer.Option(help="Drop mask components whose box is narrower or shorter (px).")] = EvaluationConfig.min_size,
    axis: SliceAxisOption = 0,
    window: WindowOption = None,
    label: LabelOption = None,
    label_names: LabelNamesOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Segment every image of DATA with prompts derived from its mask; write masks, CSV, summary and overlays.

    DATA may also hold volumes: images/ and masks/ with NIfTI files or DICOM series folders
    of matching names (labels aligned to the images by their geometry). They are cut into
    OUT/slices (axial slices holding the structure, as 'auxol slices' does) and scored per
    slice and per volume (3-D Dice in OUT/volumes.csv).
    """
    name = getattr(model, "value", model)
    window_range = parse_window(window)
    if data.is_dir() and holds_volumes(data):
        structure = resolve_structure(label, label_names, data, data / "masks")
        typer.echo(f"{data}: volumes; slicing along axis {axis} into {out / 'slices'}")
        notes: list[str] = []
        pairs = find_volume_pairs(data / "images", data / "masks")
        write_slices(pairs, out / "slices", axis, window_range, label=structure, warnings=notes)
        for note in notes:
            warn(note)
        data = out / "slices"
    elif label is not None:
        raise ConfigError(f"{data}: --label picks a structure of label volumes; this data holds 2-D masks")
    net = load_model(name, checkpoint, device, getattr(runtime, "value", runtime))
    config = EvaluationConfig(
        data=str(data), out=str(out), model=name, checkpoint=str(checkpoint or default_checkpoint(name)),
        prompt=getattr(prompt, "value", prompt), box_margin=box_margin, min_size=min_size, runtime=net.runtime,
    )
    run_evaluation(net, config)
    typer.echo(f"wrote {out}/predictions, results.csv, summary.json, config.json, overlays/")

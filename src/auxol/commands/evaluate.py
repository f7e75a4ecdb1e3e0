"""``auxol evaluate``: segment a dataset with prompts from its masks and score the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auxol.commands.options import (
    BoxMarginOption, CheckpointOption, DeviceOption, ModelOption, PromptOption, SliceAxisOption, WindowOption, parse_window,
)
from auxol.data.volumes import find_volume_pairs, holds_volumes, write_slices
from auxol.evaluate.evaluation import EvaluationConfig, evaluate as run_evaluation
from auxol.loading import load_model
from auxol.models import DEFAULT_MODEL, default_checkpoint


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
    device: DeviceOption = None,
) -> None:
    """Segment every image of DATA with prompts derived from its mask; write masks, CSV, summary and overlays.

    DATA may also hold volumes: images/ and masks/ with NIfTI files or DICOM series folders
    of matching names. They are cut into OUT/slices (labelled slices only, as 'auxol slices'
    does) and scored per slice and per volume (3-D Dice in OUT/volumes.csv).
    """
    name = getattr(model, "value", model)
    window_range = parse_window(window)
    if data.is_dir() and holds_volumes(data):
        typer.echo(f"{data}: volumes; slicing along axis {axis} into {out / 'slices'}")
        write_slices(find_volume_pairs(data / "images", data / "masks"), out / "slices", axis, window_range)
        data = out / "slices"
    net = load_model(name, checkpoint, device)
    config = EvaluationConfig(
        data=str(data), out=str(out), model=name, checkpoint=str(checkpoint or default_checkpoint(name)),
        prompt=getattr(prompt, "value", prompt), box_margin=box_margin, min_size=min_size,
    )
    run_evaluation(net, config)
    typer.echo(f"wrote {out}/predictions, results.csv, summary.json, config.json, overlays/")

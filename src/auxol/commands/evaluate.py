"""``auxol evaluate``: segment a dataset with prompts from its masks and score the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auxol.commands.options import BoxMarginOption, CheckpointOption, DeviceOption, ModelOption, PromptOption
from auxol.evaluate.evaluation import EvaluationConfig, evaluate as run_evaluation
from auxol.models import DEFAULT_MODEL, default_checkpoint, load_model
from auxol.prompts import DEFAULT_BOX_MARGIN


def evaluate(
    data: Annotated[Path, typer.Argument(help="A part (images/ + masks/), a tree of parts, or a CSV list.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    prompt: PromptOption = "box",
    box_margin: BoxMarginOption = DEFAULT_BOX_MARGIN,
    min_size: Annotated[int, typer.Option(help="Drop mask components whose box is narrower or shorter (px).")] = 16,
    device: DeviceOption = None,
) -> None:
    """Segment every image of DATA with prompts derived from its mask; write masks, CSV, summary and overlays."""
    name = getattr(model, "value", model)
    net = load_model(name, checkpoint, device)
    config = EvaluationConfig(
        data=str(data), out=str(out), model=name, checkpoint=str(checkpoint or default_checkpoint(name)),
        prompt=getattr(prompt, "value", prompt), box_margin=box_margin, min_size=min_size,
    )
    run_evaluation(net, config)
    typer.echo(f"wrote {out}/predictions, results.csv, summary.json, config.json, overlays/")

"""``auxol predict``: segment images with prompts given on the command line or in a JSON file.

Each ``--box`` is one object; all ``--point`` options together are one object (several
clicks on it, label 1 foreground or 0 background). A prompts file maps an image's file
name (or stem) to a list of prompts::

    {"case1.png": [{"box": [10, 20, 80, 90]}, {"points": [[40, 50]], "labels": [1]}]}

The mask written for an image is the union of its prompts' masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auxol.commands.options import CheckpointOption, DeviceOption, ModelOption, RuntimeOption
from auxol.data import read_image
from auxol.errors import ConfigError, PromptError
from auxol.evaluate.outputs import PREDICTION_COLOUR, overlay
from auxol.io import read_json_object, write_image_png, write_mask_png
from auxol.loading import load_model
from auxol.models import DEFAULT_MODEL
from auxol.progress import progress
from auxol.prompts import Prompt


def _numbers(text: str, option: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise PromptError(f"{option} {text!r}: expected {' or '.join(str(c) for c in counts)} comma-separated numbers")
    return values


def parse_prompts(boxes: list[str], points: list[str]) -> list[Prompt]:
    """``--box x1,y1,x2,y2`` options (one prompt each) and ``--point x,y[,label]`` options (one prompt together)."""
    prompts = [Prompt.from_box(tuple(_numbers(text, "--box", (4,)))) for text in boxes]
    if points:
        parsed = [_numbers(text, "--point", (2, 3)) for text in points]
        prompts.append(
            Prompt(points=tuple((p[0], p[1]) for p in parsed), labels=tuple(int(p[2]) if len(p) == 3 else 1 for p in parsed))
        )
    return prompts


def read_prompts_file(path: Path) -> dict[str, list[Prompt]]:
    """Read a prompts JSON file: image file name or stem -> list of prompts."""
    data = read_json_object(path, "image names and their lists of prompts")
    try:
        return {name: [Prompt.from_dict(item) for item in items] for name, items in data.items()}
    except (TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: malformed prompt ({error})") from None


def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for <stem>.png masks.")],
    box: Annotated[list[str], typer.Option("--box", help="x1,y1,x2,y2 in pixels; repeat for more objects.")] = [],
    point: Annotated[list[str], typer.Option("--point", help="x,y[,label] in pixels; repeat for more clicks.")] = [],
    prompts: Annotated[Path | None, typer.Option("--prompts", help="JSON file of prompts per image.")] = None,
    overlays: Annotated[bool, typer.Option("--overlay/--no-overlay", help="Also write <stem>_overlay.png.")] = False,
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Segment IMAGES with the given box or point prompts and write 0/255 mask PNGs."""
    given = parse_prompts(box, point)
    per_image = read_prompts_file(prompts) if prompts else {}
    if not given and not per_image:
        raise ConfigError("give prompts with --box, --point or --prompts FILE.json")
    net = load_model(getattr(model, "value", model), checkpoint, device, getattr(runtime, "value", runtime))
    with progress() as bar:
        task = bar.add_task("predict", total=len(images), status="")
        for path in images:
            image_prompts = per_image.get(path.name, per_image.get(path.stem, given))
            if not image_prompts:
                raise ConfigError(f"{prompts}: no prompts for {path.name}")
            image = read_image(path)
            for prompt in image_prompts:
                prompt.check_inside(*image.shape[:2], source=str(path))
            mask = (net.segment_many(net.embed(image), image_prompts) > 0).any(axis=0)
            write_mask_png(out / f"{path.stem}.png", mask)
            if overlays:
                write_image_png(out / f"{path.stem}_overlay.png", overlay(image, [(mask, PREDICTION_COLOUR)]))
            bar.update(task, advance=1, status=path.name)
    typer.echo(f"wrote {len(images)} masks to {out}")

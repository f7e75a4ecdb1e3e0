"""``auxol predict``: segment images with prompts given on the command line or in a JSON file.

Each ``--box`` is one object; all ``--point`` options together are one object (several
clicks on it, label 1 foreground or 0 background). A prompts file maps an image's file
name (or stem) to a list of prompts::

    {"case1.png": [{"box": [10, 20, 80, 90]}, {"points": [[40, 50]], "labels": [1]}]}

The mask written for an image is the union of its prompts' masks.

Volumes (a NIfTI file or a DICOM series folder) are segmented by propagation:
``--box-slice K x1,y1,x2,y2`` boxes the structure on axial slice K (coordinates in the
axial slices as ``auxol slices`` writes them: rows from anterior to posterior, columns
from the patient's right to left), and every next slice is prompted with the box of the
mask on its neighbour, up and down, until the mask vanishes
(:mod:`auxol.propagation`). ``--box-slice`` may be repeated (several objects, or several
seeds of one): each box is propagated on its own and the masks are united. In a prompts file a volume's entry lists
``{"slice": K, "box": [x1, y1, x2, y2]}`` items, each propagated, the masks united. ``--session`` adds an AuxOL learner (an
``auxol serve`` session folder, or a ``learner.pt`` of ``auxol stream``), which
predicts without learning. Written: ``OUT/<name>.nii.gz`` (uint8 0/1 in the input
file's own grid and affine) and, for a DICOM series, ``OUT/<name>.seg.dcm`` (a DICOM
SEG referencing the series).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import numpy as np
import typer
from typer.core import TyperCommand

from auxol.commands.options import (
    BoxMarginOption, CheckpointOption, DeviceOption, ModelOption, RuntimeOption, WindowOption, parse_window,
)
from auxol.data import read_image
from auxol.data.volumes import Volume, default_window, is_volume, read_volume, slice_rgb, to_uint8, volume_stem, write_nifti
from auxol.errors import ConfigError, DataError, PromptError
from auxol.evaluate.outputs import PREDICTION_COLOUR, overlay
from auxol.io import read_json_object, write_image_png, write_mask_png
from auxol.loading import load_model
from auxol.models import DEFAULT_MODEL, PromptableModel
from auxol.online import AuxOL
from auxol.progress import progress
from auxol.propagation import IntensityGate, segment_by_propagation
from auxol.prompts import Prompt

SlicePrompt = tuple[int, Prompt]
"""A box on one slice of a volume: (slice index, prompt)."""


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


def parse_slice_boxes(values: list[str]) -> list[SlicePrompt]:
    """Each ``--box-slice K x1,y1,x2,y2`` (its two values joined by a space, see :class:`PredictCommand`) as (K, box prompt)."""
    seeds = []
    for value in values:
        index_text, _, box_text = value.partition(" ")
        if not box_text:
            raise PromptError(f"--box-slice {value}: expected two values, K x1,y1,x2,y2")
        if not index_text.isdigit():
            raise PromptError(f"--box-slice {value}: K must be a slice index (0, 1, ...)")
        seeds.append((int(index_text), Prompt.from_box(tuple(_numbers(box_text, "--box-slice", (4,))))))
    return seeds


class PredictCommand(TyperCommand):
    """``auxol predict``, whose ``--box-slice K x1,y1,x2,y2`` takes two values and may be repeated.

    Typer cannot declare a repeatable option of two values, so each ``--box-slice`` joins
    the two values that follow it into one ("K x1,y1,x2,y2") before the usual parsing.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        joined, rest = [], list(args)
        while rest:
            arg = rest.pop(0)
            joined.append(arg)
            if arg == "--box-slice" and len(rest) >= 2 and not rest[0].startswith("-"):
                joined.append(f"{rest.pop(0)} {rest.pop(0)}")
        return super().parse_args(ctx, joined)


def read_prompts_file(path: Path) -> dict[str, list[Prompt | SlicePrompt]]:
    """Read a prompts JSON file: image (or volume) file name or stem -> list of prompts (volumes: with their "slice")."""
    data = read_json_object(path, "image names and their lists of prompts")
    try:
        return {
            name: [(int(item["slice"]), Prompt.from_dict(item)) if "slice" in item else Prompt.from_dict(item) for item in items]
            for name, items in data.items()
        }
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        raise ConfigError(f"{path}: malformed prompt ({error})") from None


def load_learner(session: Path, model: PromptableModel, model_name: str) -> AuxOL:
    """The AuxOL learner of an ``auxol serve`` session folder (its session.pt) or of a saved learner file."""
    if session.is_dir():
        config = session / "config.json"
        saved = read_json_object(config, "session settings").get("model") if config.is_file() else None
        if saved is not None and saved != model_name:
            raise ConfigError(f"{session}: the session learned with --model {saved}, not {model_name}; pass --model {saved}")
        session = session / "session.pt"
    return AuxOL.load(session, model)


def predict_volume(
    volume: Volume, seeds: list[SlicePrompt], model: PromptableModel, learner: AuxOL | None,
    window: tuple[float, float] | None, box_margin: float, advance=lambda: None,
) -> np.ndarray:
    """bool (slices, rows, columns) mask: the union of each seed box propagated through ``volume``.

    Each slice is embedded once per seed that reaches it; with ``learner`` the masks are
    AuxOL's (no learning), else the foundation model's. The walk ends where a mask no
    longer holds the seed's tissue (:class:`auxol.propagation.IntensityGate`).
    """
    pixels = to_uint8(volume.array, window if window is not None else default_window(volume))
    slices, height, width = pixels.shape
    mask = np.zeros(pixels.shape, bool)
    for seed, prompt in seeds:
        if not 0 <= seed < slices:
            raise PromptError(f"{volume.source}: slice {seed} outside 0..{slices - 1}")
        prompt.check_inside(height, width, source=f"{volume.source} slice {seed}")
        gate: IntensityGate | None = None

        def segment(index: int, prompts: list[Prompt]) -> np.ndarray:
            nonlocal gate
            image = slice_rgb(pixels, index)
            embedding = model.embed(image)
            advance()
            if learner is not None:
                found = learner.predict(image, prompts, embedding=embedding).mask
            else:
                found = (model.segment_many(embedding, prompts) > 0).any(axis=0)
            if gate is None:
                gate = IntensityGate(pixels[index], found)
            return found if gate.accepts(pixels[index], found) else np.zeros_like(found)

        for index, slice_mask in segment_by_propagation(segment, slices, seed, [prompt], box_margin=box_margin).items():
            mask[index] |= slice_mask
    return mask


def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files, NIfTI volumes or DICOM series folders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for <stem>.png masks (volumes: <name>.nii.gz).")],
    box: Annotated[list[str], typer.Option("--box", help="x1,y1,x2,y2 in pixels; repeat for more objects.")] = [],
    point: Annotated[list[str], typer.Option("--point", help="x,y[,label] in pixels; repeat for more clicks.")] = [],
    box_slice: Annotated[
        list[str],
        typer.Option(
            "--box-slice", metavar="K x1,y1,x2,y2",
            help="Volumes: a box on axial slice K, propagated through the volume; repeat for more objects or seeds (masks united).",
        ),
    ] = [],
    prompts: Annotated[Path | None, typer.Option("--prompts", help="JSON file of prompts per image.")] = None,
    overlays: Annotated[bool, typer.Option("--overlay/--no-overlay", help="Also write <stem>_overlay.png.")] = False,
    session: Annotated[Path | None, typer.Option("--session", help="Volumes: AuxOL learner, an 'auxol serve' session folder or a learner.pt.")] = None,
    structure: Annotated[str, typer.Option("--structure", help="Volumes: segment label of the DICOM SEG.")] = "structure",
    window: WindowOption = None,
    box_margin: BoxMarginOption = 0.02,
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Segment IMAGES with the given box or point prompts and write 0/255 mask PNGs; volumes by propagation."""
    given = parse_prompts(box, point)
    seeds = parse_slice_boxes(box_slice)
    per_image = read_prompts_file(prompts) if prompts else {}
    if not given and not seeds and not per_image:
        raise ConfigError("give prompts with --box, --point, --box-slice or --prompts FILE.json")
    volumes = [path for path in images if is_volume(path)]
    if session is not None and len(volumes) < len(images):
        raise ConfigError("--session applies to volumes only; give NIfTI files or DICOM series folders")
    model_name = getattr(model, "value", model)
    net = load_model(model_name, checkpoint, device, getattr(runtime, "value", runtime))
    learner = load_learner(session, net, model_name) if session is not None else None
    window_range = parse_window(window)
    with progress() as bar:
        task = bar.add_task("predict", total=len(images), status="")
        for path in images:
            if path in volumes:
                name = volume_stem(path)
                volume_seeds = per_image.get(path.name, per_image.get(name, seeds))
                if not volume_seeds or not all(isinstance(item, tuple) for item in volume_seeds):
                    raise ConfigError(f"{path}: a volume needs --box-slice K x1,y1,x2,y2 (or slice boxes in --prompts)")
                volume = read_volume(path)
                bar.update(task, total=bar.tasks[0].total + volume.array.shape[0] * len(volume_seeds) - 1, status=path.name)
                mask = predict_volume(volume, volume_seeds, net, learner, window_range, box_margin, lambda: bar.advance(task))
                _write_volume(out, name, mask, volume, structure)
                continue
            image_prompts = per_image.get(path.name, per_image.get(path.stem, given))
            if not image_prompts or not all(isinstance(item, Prompt) for item in image_prompts):
                raise ConfigError(f"{prompts or path}: no prompts for {path.name}")
            image = read_image(path)
            for prompt in image_prompts:
                prompt.check_inside(*image.shape[:2], source=str(path))
            mask = (net.segment_many(net.embed(image), image_prompts) > 0).any(axis=0)
            write_mask_png(out / f"{path.stem}.png", mask)
            if overlays:
                write_image_png(out / f"{path.stem}_overlay.png", overlay(image, [(mask, PREDICTION_COLOUR)]))
            bar.update(task, advance=1, status=path.name)
    typer.echo(f"wrote {len(images)} masks to {out}")


def _write_volume(out: Path, name: str, mask: np.ndarray, volume: Volume, structure: str) -> None:
    """OUT/<name>.nii.gz, and OUT/<name>.seg.dcm for a DICOM series; DataError (nothing written) for an empty mask."""
    if not mask.any():
        raise DataError(f"{volume.source}: the propagated mask is empty; check the slice index and the box")
    write_nifti(out / f"{name}.nii.gz", mask, volume)
    if volume.dicom_files:
        from auxol.data.dicom_seg import write_dicom_seg

        write_dicom_seg(out / f"{name}.seg.dcm", mask, volume, structure)
    typer.echo(f"{volume.source}: {int(mask.any(axis=(1, 2)).sum())} slices segmented, {int(mask.sum())} voxels")

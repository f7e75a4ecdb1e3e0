"""Zero-shot (or fine-tuned) evaluation of a promptable model on a dataset.

Every image is segmented with prompts derived from its own mask (the rules of
:func:`auxol.prompts.prompts_from_mask`, boxes widened by ``box_margin``); the prediction is the union of the masks of
all prompts. Outputs, in ``out``:

- ``predictions/<part>/<stem>.png``: 0/255 masks at the image size;
- ``results.csv``: one row per image; ``summary.json``: per part and overall means, and
  ``runtime`` (what ran the frozen model: ``torch``, ``openvino``, ``onnx``);
- ``config.json``: the resolved configuration (``runtime`` too); ``overlays/<part>/<stem>.png``: truth
  (green) and prediction (red) outlines for the worst and best images of each part;
- ``volumes.csv`` (volume data only): 3-D Dice per volume, for images named as
  :func:`auxol.data.volumes.slice_name` names slices (``auxol slices`` output, or volumes
  that ``auxol evaluate`` sliced itself); its mean is ``summary.json``'s ``volumes``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from auxol.data import load_dataset, load_pair, read_mask, valid_pairs
from auxol.data.volumes import parse_slice_name, per_volume_dice
from auxol.errors import DataError
from auxol.evaluate.metrics import score
from auxol.evaluate.outputs import PREDICTION_COLOUR, TRUTH_COLOUR, mask_path, overlay
from auxol.io import write_csv, write_image_png, write_json, write_mask_png
from auxol.models import PromptableModel
from auxol.progress import progress, warn
from auxol.prompts import DEFAULT_BOX_MARGIN, prompts_from_mask

METRICS = ("dice", "iou", "hd", "hd95")


@dataclass(frozen=True)
class EvaluationConfig:
    """What ``auxol evaluate`` was asked to do; written to ``config.json``."""

    data: str
    out: str
    model: str
    checkpoint: str
    prompt: str = "box"
    box_margin: float = DEFAULT_BOX_MARGIN
    min_size: int = 16
    overlays_per_part: int = 4
    runtime: str = "torch"  # what ran the frozen model (PromptableModel.runtime)


def segment_with_prompts(
    model: PromptableModel, image: np.ndarray, mask: np.ndarray, prompt: str, box_margin: float, min_size: int
) -> tuple[np.ndarray, float, float]:
    """Segment ``image`` with prompts derived from ``mask`` (see :func:`auxol.prompts.prompts_from_mask`).

    Returns:
        (prediction bool (H, W), seconds embedding the image, seconds decoding all prompts).
    """
    start = time.perf_counter()
    embedding = model.embed(image)
    embedded = time.perf_counter()
    logits = model.segment_many(embedding, prompts_from_mask(mask, prompt, min_size, box_margin))
    return (logits > 0).any(axis=0), embedded - start, time.perf_counter() - embedded


def mean_scores(rows: list[dict], keys: tuple[str, ...] = METRICS) -> dict:
    """``{"n": len(rows), key: mean of row[key]}`` for each of ``keys`` (NaN means for no rows)."""
    return {"n": len(rows), **{key: float(np.mean([row[key] for row in rows])) for key in keys}}


def _means(rows: list[dict]) -> dict:
    """Metric and seconds means of a part; only ``n`` for a part whose pairs were all skipped."""
    return mean_scores(rows, (*METRICS, "seconds")) if rows else {"n": 0}


def evaluate(model: PromptableModel, config: EvaluationConfig, console: Console | None = None) -> dict:
    """Run the evaluation described by ``config`` and write its outputs; returns the summary.

    Raises:
        DataError: no valid image/mask pair in the whole dataset.
    """
    console = console or Console()
    out = Path(config.out)
    listings = load_dataset(config.data)
    write_json(out / "config.json", asdict(config))
    rows: list[dict] = []
    skipped: dict[str, list[str]] = {}
    with progress(console) as bar:
        task = bar.add_task("evaluate", total=sum(len(item.pairs) for item in listings), status="")
        for listing in listings:
            part_skipped = skipped.setdefault(listing.name, [])
            for pair, image, truth in valid_pairs(listing, part_skipped):
                pred, embed_s, decode_s = segment_with_prompts(
                    model, image, truth, config.prompt, config.box_margin, config.min_size
                )
                write_mask_png(mask_path(out / "predictions", listing.name, pair.stem), pred)
                row = {"part": listing.name, "image": pair.stem, **score(pred, truth)}
                row.update(embed_seconds=embed_s, decode_seconds=decode_s, seconds=embed_s + decode_s)
                rows.append(row)
                bar.update(task, advance=1, status=f"mean Dice {np.mean([r['dice'] for r in rows]):.4f}")
            bar.update(task, completed=len(rows) + sum(len(s) for s in skipped.values()))
            for reason in part_skipped:
                warn(f"skipped {reason}")
    if not rows:
        raise DataError(f"{config.data}: no valid image/mask pair to evaluate")
    write_csv(out / "results.csv", rows)
    summary = {
        "parts": {
            name: {**_means([r for r in rows if r["part"] == name]), "skipped": len(reasons)}
            for name, reasons in skipped.items()
        },
        "overall": {**_means(rows), "skipped": sum(len(s) for s in skipped.values())},
        "skipped": [reason for reasons in skipped.values() for reason in reasons],
        "runtime": config.runtime,
    }
    volumes = _volume_scores(out, listings, rows)
    if volumes:
        write_csv(out / "volumes.csv", volumes)
        summary["volumes"] = mean_scores(volumes, ("dice",))
    write_json(out / "summary.json", summary)
    _write_overlays(out, listings, rows, config.overlays_per_part)
    console.print(summary_table(summary))
    return summary


def _volume_scores(out: Path, listings: list, rows: list[dict]) -> list[dict]:
    """One row (part, volume, slices, dice) per volume whose slices were scored; [] if no image is a volume slice."""
    pairs = {(item.name, pair.stem): pair for item in listings for pair in item.pairs}
    scored = [row for row in rows if parse_slice_name(row["image"]) is not None]
    volumes = []
    for name in sorted({row["part"] for row in scored}):
        in_part = [row["image"] for row in scored if row["part"] == name]
        slices = (
            (stem, read_mask(mask_path(out / "predictions", name, stem)), read_mask(pairs[(name, stem)].mask_path))
            for stem in in_part
        )
        counts = Counter(parse_slice_name(stem)[0] for stem in in_part)
        volumes += [
            {"part": name, "volume": volume, "slices": counts[volume], "dice": dice}
            for volume, dice in per_volume_dice(slices).items()
        ]
    return volumes


def _write_overlays(out: Path, listings: list, rows: list[dict], per_part: int) -> None:
    """Outline truth and prediction on the worst ``per_part - 1`` images and the best one of each part."""
    pairs = {(item.name, pair.stem): pair for item in listings for pair in item.pairs}
    for name in {row["part"] for row in rows}:
        ranked = sorted((r for r in rows if r["part"] == name), key=lambda r: r["dice"])
        chosen = ranked[: per_part - 1] + ranked[-1:] if len(ranked) >= per_part else ranked
        for row in chosen:
            image, truth = load_pair(pairs[(name, row["image"])])
            pred = read_mask(mask_path(out / "predictions", name, row["image"]))
            picture = overlay(image, [(truth, TRUTH_COLOUR), (pred, PREDICTION_COLOUR)])
            write_image_png(mask_path(out / "overlays", name, row["image"]), picture)


def summary_table(summary: dict) -> Table:
    """A rich table of n, Dice, IoU, HD95 and seconds per image for each part and overall."""
    table = Table(title="auxol evaluate")
    for column in ("part", "n", "skipped", "Dice", "IoU", "HD95 (px)", "s/img"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, part in [*summary["parts"].items(), ("overall", summary["overall"])]:
        if part["n"] == 0:
            table.add_row(name, "0", str(part["skipped"]), "-", "-", "-", "-")
            continue
        table.add_row(
            name, str(part["n"]), str(part["skipped"]), f"{part['dice']:.4f}", f"{part['iou']:.4f}",
            f"{part['hd95']:.2f}", f"{part['seconds']:.2f}",
        )
    if "volumes" in summary:
        volumes = summary["volumes"]
        table.caption = f"3-D Dice over {volumes['n']} volumes: {volumes['dice']:.4f} (volumes.csv)"
    return table

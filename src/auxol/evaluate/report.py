"""Reports of a stream run, built from its records (the rows of ``results.csv``).

Written into the run's folder ``out``:

- ``results.csv``: one row per image, the fields of
  :class:`auxol.evaluate.stream.ImageRecord`;
- ``alphas.csv``: one row per rectified crop: part, image, index (the image's position
  in its part's stream), crop, best_alpha, used_alpha (empty while the foundation model
  was used alone);
- ``summary.json``: per part and ``overall`` (all images pooled): n, skipped, mean
  Dice and HD95 of base, box-cut base and AuxOL, the paper's smooth-1 Dice, gain
  (AuxOL minus base Dice), fraction rectified and mean seconds; plus the skip reasons;
- ``plots/<part>/`` (part ``"."``: ``plots/``): ``running_dice.png``, ``gain.png``,
  ``alpha.png``, and panels (image, base, auxiliary, fused, truth) of the most improved
  and most degraded images, ``improved_<rank>_<stem>.png`` and ``degraded_<rank>_<stem>.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich import box
from rich.table import Table

from auxol.data import Pair, load_pair, read_image, read_mask
from auxol.evaluate.outputs import PREDICTION_COLOUR, TRUTH_COLOUR, mask_path, overlay
from auxol.io import atomic_open, write_csv, write_json

MEAN_FIELDS = (
    "base_dice", "base_hd95", "boxcut_dice", "auxol_dice", "auxol_hd95", "base_dice_smooth1", "auxol_dice_smooth1",
    "base_seconds", "predict_seconds", "learn_seconds",
)
ALPHA_COLUMNS = ["part", "image", "index", "crop", "best_alpha", "used_alpha"]
PANELS_PER_END = 3
"""Panels drawn per part for the most improved images, and as many for the most degraded."""


def summarize(rows: list[dict[str, Any]], skipped: Mapping[str, list[str]]) -> dict[str, Any]:
    """Per-part and overall means of ``rows`` (see the module docstring); ``skipped`` maps each part to its skip reasons."""

    def means(selected: list[dict[str, Any]], skipped_count: int) -> dict[str, Any]:
        summary: dict[str, Any] = {"n": len(selected), "skipped": skipped_count}
        if selected:
            summary.update({key: float(np.mean([row[key] for row in selected])) for key in MEAN_FIELDS})
            summary["gain"] = summary["auxol_dice"] - summary["base_dice"]
            summary["fraction_rectified"] = float(np.mean([row["rectified"] for row in selected]))
        return summary

    return {
        "parts": {part: means([r for r in rows if r["part"] == part], len(reasons)) for part, reasons in skipped.items()},
        "overall": means(rows, sum(len(reasons) for reasons in skipped.values())),
        "skipped": [reason for reasons in skipped.values() for reason in reasons],
    }


def write_results(
    out: Path, rows: list[dict[str, Any]], alpha_rows: list[dict[str, Any]], skipped: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Write ``results.csv``, ``alphas.csv`` and ``summary.json`` into ``out``; return the summary."""
    write_csv(out / "results.csv", rows)
    write_csv(out / "alphas.csv", alpha_rows, fieldnames=ALPHA_COLUMNS)
    summary = summarize(rows, skipped)
    write_json(out / "summary.json", summary)
    return summary


def summary_table(summary: dict[str, Any], title: str = "auxol stream") -> Table:
    """A rich table per part and overall: n, skipped, Dice of base and AuxOL, gain, HD95s, fraction rectified.

    Narrow enough for an 80-column console (a log file) without cutting figures; the
    box-cut base Dice is in ``summary.json``.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, caption="rect.: fraction of images rectified")
    columns = ("part", "n", "skip", "base Dice", "AuxOL Dice", "gain", "base HD95", "AuxOL HD95", "rect.")
    for column in columns:
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, part in [*summary["parts"].items(), ("overall", summary["overall"])]:
        if part["n"] == 0:
            table.add_row(name, "0", str(part["skipped"]), *["-"] * (len(columns) - 3))
            continue
        table.add_row(
            name, str(part["n"]), str(part["skipped"]),
            f"{part['base_dice']:.4f}", f"{part['auxol_dice']:.4f}", f"{part['gain']:+.4f}",
            f"{part['base_hd95']:.2f}", f"{part['auxol_hd95']:.2f}", f"{part['fraction_rectified']:.0%}",
        )
    return table


def _save(figure: Figure, path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def _running_dice_figure(rows: list[dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    steps = np.arange(1, len(rows) + 1)
    for key, label in (("base_dice", "base"), ("boxcut_dice", "box-cut base"), ("auxol_dice", "AuxOL")):
        axes.plot(steps, np.cumsum([row[key] for row in rows]) / steps, label=label)
    axes.set(xlabel="images seen", ylabel="running mean Dice", title="Running mean Dice along the stream")
    axes.legend()
    return figure


def _gain_figure(rows: list[dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    gains = np.array([row["auxol_dice"] - row["base_dice"] for row in rows])
    axes.bar(np.arange(len(rows)), gains, color=np.where(gains >= 0, "tab:green", "tab:red"))
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set(xlabel="image index", ylabel="AuxOL Dice - base Dice", title="Per-image Dice gain")
    return figure


def _alpha_figure(rows: list[dict[str, Any]], alpha_rows: list[dict[str, Any]]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    used = [np.nan if row["alpha"] is None else row["alpha"] for row in rows]
    axes.plot([row["index"] for row in rows], used, label="alpha used")
    axes.scatter([a["index"] for a in alpha_rows], [a["best_alpha"] for a in alpha_rows], s=12, color="tab:orange", label="best alpha of a rectified crop")
    axes.set(xlabel="image index", ylabel="weight of the foundation model", ylim=(-0.05, 1.05), title="Fusion weight alpha")
    axes.legend()
    return figure


def _zoom_box(masks: list[np.ndarray], margin: float = 0.25) -> tuple[slice, slice]:
    """Rows and columns of the union of ``masks``' foreground, widened by ``margin`` of its size (whole image if empty)."""
    union = np.logical_or.reduce(masks)
    if not union.any():
        return slice(None), slice(None)
    ys, xs = np.nonzero(union)
    dy, dx = int(margin * (np.ptp(ys) + 1)), int(margin * (np.ptp(xs) + 1))
    return slice(max(0, ys.min() - dy), ys.max() + dy + 1), slice(max(0, xs.min() - dx), xs.max() + dx + 1)


def _panel_figure(image: np.ndarray, base: np.ndarray, aux: np.ndarray, fused: np.ndarray, truth: np.ndarray, row: dict[str, Any]) -> Figure:
    """Image, base, auxiliary probability, fused (AuxOL) and truth, zoomed on the object; outlines: truth green, prediction red."""
    rows_slice, cols_slice = _zoom_box([base, fused, truth])
    zoom = (rows_slice, cols_slice)
    figure = Figure(figsize=(12.5, 3), layout="constrained")
    panels = (  # (title, picture, imshow options)
        ("image", image[zoom], {}),
        (f"base (Dice {row['base_dice']:.3f})", overlay(image, [(truth, TRUTH_COLOUR), (base, PREDICTION_COLOUR)])[zoom], {}),
        ("auxiliary probability", aux[zoom], {"cmap": "magma", "vmin": 0, "vmax": 1}),
        (f"AuxOL (Dice {row['auxol_dice']:.3f})", overlay(image, [(truth, TRUTH_COLOUR), (fused, PREDICTION_COLOUR)])[zoom], {}),
        ("truth", truth[zoom], {"cmap": "gray", "vmin": 0, "vmax": 1}),
    )
    for index, (title, picture, options) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        axes.imshow(picture, **options)
        axes.set_title(title, fontsize=9)
        axes.set_axis_off()
    alpha = "base alone" if row["alpha"] is None else f"alpha {row['alpha']:.2f}"
    figure.suptitle(f"{row['image']} (image {row['index']}, {alpha}, {'rectified' if row['rectified'] else 'not rectified'})")
    return figure


def _write_panels(out: Path, part: str, rows: list[dict[str, Any]], pairs: Mapping[tuple[str, str], Pair]) -> None:
    ranked = sorted(rows, key=lambda row: row["auxol_dice"] - row["base_dice"], reverse=True)
    count = min(PANELS_PER_END, len(ranked) // 2)
    chosen = [("improved", rank, row) for rank, row in enumerate(ranked[:count], start=1)]
    chosen += [("degraded", rank, row) for rank, row in enumerate(ranked[::-1][:count], start=1)]
    folder = mask_path(out / "plots", part, "any").parent
    for stale in [*folder.glob("improved_*.png"), *folder.glob("degraded_*.png")]:  # panels of an earlier run
        stale.unlink()
    for kind, rank, row in chosen:
        stem = row["image"]
        image, truth = load_pair(pairs[(part, stem)])
        base = read_mask(mask_path(out / "base", part, stem))
        fused = read_mask(mask_path(out / "auxol", part, stem))
        aux = read_image(mask_path(out / "aux", part, stem))[:, :, 0] / 255.0
        _save(_panel_figure(image, base, aux, fused, truth, row), mask_path(out / "plots", part, f"{kind}_{rank}_{stem}"))


def write_plots(
    out: Path, rows: list[dict[str, Any]], alpha_rows: list[dict[str, Any]], pairs: Mapping[tuple[str, str], Pair]
) -> None:
    """Draw the figures of every part into ``out/plots`` (see the module docstring).

    ``pairs`` maps (part, stem) to the dataset pair, for the image and truth of the panels;
    the masks are read back from ``out/base``, ``out/auxol`` and ``out/aux``.
    """
    for part in dict.fromkeys(row["part"] for row in rows):
        part_rows = [row for row in rows if row["part"] == part]
        part_alphas = [row for row in alpha_rows if row["part"] == part]
        _save(_running_dice_figure(part_rows), mask_path(out / "plots", part, "running_dice"))
        _save(_gain_figure(part_rows), mask_path(out / "plots", part, "gain"))
        _save(_alpha_figure(part_rows, part_alphas), mask_path(out / "plots", part, "alpha"))
        _write_panels(out, part, part_rows, pairs)

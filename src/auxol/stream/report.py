"""Reports of a stream run, built from its records (the rows of ``results.csv``).

Written into the run's folder ``out``:

- ``results.csv``: one row per image, the fields of
  :class:`auxol.stream.loop.ImageRecord`;
- ``alphas.csv``: one row per rectified crop: part, image, index (the image's position
  in its part's stream), crop, best_alpha, used_alpha (empty while the foundation model
  was used alone);
- ``summary.json``: per part and ``overall`` (all images pooled): n, skipped, mean
  Dice and HD95 of base, box-cut base and AuxOL, the paper's smooth-1 Dice, gain
  (AuxOL minus base Dice), fraction rectified, mean seconds, and the effort figures
  ``base_accept_90``, ``auxol_accept_90``, ``base_accept_95``, ``auxol_accept_95``
  (fraction of images whose shown mask has Dice >= 0.90 / 0.95 with the corrected mask:
  accepted as is), ``base_changed_fraction``, ``auxol_changed_fraction`` (mean over
  images of |shown XOR corrected| / |corrected|) and ``base_changed_px``,
  ``auxol_changed_px`` (the same in pixels); plus the skip reasons and ``runtime`` (what
  ran the frozen model: ``torch``, ``openvino`` or ``onnx``);
- ``plots/<part>/`` (part ``"."``: ``plots/``): ``running_dice.png``, ``gain.png``,
  ``alpha.png``, ``effort.png`` (images accepted as is so far, and the share of each
  object the correction changes, base vs AuxOL, along the stream), and panels (image, base, auxiliary, fused, truth) of the most improved
  and most degraded images, ``improved_<rank>_<stem>.png`` and ``degraded_<rank>_<stem>.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich import box
from rich.table import Table

from auxol.data import Pair, load_pair, read_image, read_mask
from auxol.evaluate.metrics import ACCEPT_LEVELS, correction_effort
from auxol.evaluate.outputs import PREDICTION_COLOUR, TRUTH_COLOUR, mask_path, overlay
from auxol.io import atomic_open, write_csv, write_json
from auxol.stream.loop import ImageRecord

MEAN_FIELDS = (
    "base_dice", "base_hd95", "boxcut_dice", "fm_dice", "auxol_dice", "auxol_hd95", "base_dice_smooth1", "auxol_dice_smooth1",
    "base_changed_px", "auxol_changed_px",
    "base_seconds", "predict_seconds", "learn_seconds",
)
PANELS_PER_END = 3
"""Panels drawn per part for the most improved images, and as many for the most degraded."""


@dataclass(frozen=True)
class AlphaRow:
    """One rectified crop of the stream: a row of ``alphas.csv`` (see the module docstring)."""

    part: str
    image: str
    index: int
    crop: int
    best_alpha: float
    used_alpha: float | None


ALPHA_COLUMNS = [column.name for column in fields(AlphaRow)]


@dataclass(frozen=True)
class PartSummary:
    """Means over the images of one part, or of all parts pooled (``overall``); the means are None when ``n`` is 0.

    Attributes:
        n: images streamed; skipped: pairs left out (unreadable, empty mask, ...).
        base_dice ... learn_seconds: means of the :class:`~auxol.stream.loop.ImageRecord`
            fields of the same names (Dice in [0, 1], HD95 in pixels, seconds).
        gain: AuxOL minus base mean Dice.
        fraction_rectified: fraction of the images the clinician rectified, in [0, 1].
        base_accept_90 ... auxol_accept_95: fraction of the images whose shown mask (base
            or AuxOL) has Dice >= 0.90 (0.95) with the corrected mask, in [0, 1].
    """

    n: int
    skipped: int
    base_dice: float | None = None
    base_hd95: float | None = None
    boxcut_dice: float | None = None
    fm_dice: float | None = None
    auxol_dice: float | None = None
    auxol_hd95: float | None = None
    base_dice_smooth1: float | None = None
    auxol_dice_smooth1: float | None = None
    base_changed_fraction: float | None = None
    auxol_changed_fraction: float | None = None
    base_changed_px: float | None = None
    auxol_changed_px: float | None = None
    base_seconds: float | None = None
    predict_seconds: float | None = None
    learn_seconds: float | None = None
    gain: float | None = None
    fraction_rectified: float | None = None
    base_accept_90: float | None = None
    auxol_accept_90: float | None = None
    base_accept_95: float | None = None
    auxol_accept_95: float | None = None

    @classmethod
    def of(cls, records: list[ImageRecord], skipped: int) -> PartSummary:
        """The summary of ``records``, with ``skipped`` pairs left out."""
        if not records:
            return cls(0, skipped)
        means = {key: float(np.mean([getattr(record, key) for record in records])) for key in MEAN_FIELDS}
        effort = {
            key: value
            for shown in ("base", "auxol")
            for key, value in correction_effort(
                shown, [getattr(r, f"{shown}_correction_dice") for r in records], [getattr(r, f"{shown}_changed_fraction") for r in records]
            ).items()
        }
        return cls(
            len(records), skipped, **means, **effort, gain=means["auxol_dice"] - means["base_dice"],
            fraction_rectified=float(np.mean([record.rectified for record in records])),
        )

    def to_dict(self) -> dict[str, Any]:
        """As ``summary.json`` holds it: only ``n`` and ``skipped`` for a part without images."""
        return asdict(self) if self.n else {"n": self.n, "skipped": self.skipped}


@dataclass(frozen=True)
class StreamSummary:
    """What ``summary.json`` holds: per part, ``overall`` (all images pooled), the skip reasons, and the runtime.

    ``runtime``: what ran the frozen model (``torch``, ``openvino``, ``onnx``), as in ``config.json``.
    """

    parts: dict[str, PartSummary]
    overall: PartSummary
    skipped: list[str]
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        parts = {name: part.to_dict() for name, part in self.parts.items()}
        return {"parts": parts, "overall": self.overall.to_dict(), "skipped": self.skipped, "runtime": self.runtime}


def summarize(records: list[ImageRecord], skipped: Mapping[str, list[str]], runtime: str) -> StreamSummary:
    """Per-part and overall means of ``records`` (see the module docstring); ``skipped`` maps each part to its skip reasons."""
    return StreamSummary(
        parts={part: PartSummary.of([r for r in records if r.part == part], len(reasons)) for part, reasons in skipped.items()},
        overall=PartSummary.of(records, sum(len(reasons) for reasons in skipped.values())),
        skipped=[reason for reasons in skipped.values() for reason in reasons],
        runtime=runtime,
    )


def write_results(
    out: Path, records: list[ImageRecord], alpha_rows: list[AlphaRow], skipped: Mapping[str, list[str]], runtime: str
) -> StreamSummary:
    """Write ``results.csv``, ``alphas.csv`` and ``summary.json`` into ``out``; return the summary (``runtime``: see :class:`StreamSummary`)."""
    write_csv(out / "results.csv", [asdict(record) for record in records])
    write_csv(out / "alphas.csv", [asdict(row) for row in alpha_rows], fieldnames=ALPHA_COLUMNS)
    summary = summarize(records, skipped, runtime)
    write_json(out / "summary.json", summary.to_dict())
    return summary


def summary_table(summary: StreamSummary, title: str = "auxol stream") -> Table:
    """A rich table per part and overall: n, skipped, Dice of base and AuxOL, gain, HD95s, fraction rectified.

    Narrow enough for an 80-column console (a log file) without cutting figures; the
    box-cut base Dice is in ``summary.json``.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, caption="rect.: fraction of images rectified")
    columns = ("part", "n", "skip", "base Dice", "AuxOL Dice", "gain", "base HD95", "AuxOL HD95", "rect.")
    for column in columns:
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, part in [*summary.parts.items(), ("overall", summary.overall)]:
        if part.n == 0:
            table.add_row(name, "0", str(part.skipped), *["-"] * (len(columns) - 3))
            continue
        table.add_row(
            name, str(part.n), str(part.skipped),
            f"{part.base_dice:.4f}", f"{part.auxol_dice:.4f}", f"{part.gain:+.4f}",
            f"{part.base_hd95:.2f}", f"{part.auxol_hd95:.2f}", f"{part.fraction_rectified:.0%}",
        )
    return table


def save_figure(figure: Figure, path: Path) -> None:
    """Write ``figure`` to ``path`` as a PNG at 100 dpi, atomically."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)


def _running_dice_figure(rows: list[ImageRecord]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    steps = np.arange(1, len(rows) + 1)
    for key, label in (("base_dice", "base"), ("boxcut_dice", "box-cut base"), ("auxol_dice", "AuxOL")):
        axes.plot(steps, np.cumsum([getattr(row, key) for row in rows]) / steps, label=label)
    axes.set(xlabel="images seen", ylabel="running mean Dice", title="Running mean Dice along the stream")
    axes.legend()
    return figure


def _gain_figure(rows: list[ImageRecord]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    gains = np.array([row.auxol_dice - row.base_dice for row in rows])
    axes.bar(np.arange(len(rows)), gains, color=np.where(gains >= 0, "tab:green", "tab:red"))
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set(xlabel="image index", ylabel="AuxOL Dice - base Dice", title="Per-image Dice gain")
    return figure


def _alpha_figure(rows: list[ImageRecord], alpha_rows: list[AlphaRow]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    used = [np.nan if row.alpha is None else row.alpha for row in rows]
    axes.plot([row.index for row in rows], used, label="alpha used")
    axes.scatter([a.index for a in alpha_rows], [a.best_alpha for a in alpha_rows], s=12, color="tab:orange", label="best alpha of a rectified crop")
    axes.set(xlabel="image index", ylabel="weight of the foundation model", ylim=(-0.05, 1.05), title="Fusion weight alpha")
    axes.legend()
    return figure


def _effort_figure(rows: list[ImageRecord]) -> Figure:
    """Top: running fraction of images accepted as shown (Dice >= 0.90 with the correction); bottom: share of each object changed."""
    figure = Figure(figsize=(7, 6), layout="constrained")
    accepted, changed = figure.add_subplot(2, 1, 1), figure.add_subplot(2, 1, 2)
    steps = np.arange(1, len(rows) + 1)
    level = ACCEPT_LEVELS[0]
    for shown, label in (("base", "base"), ("auxol", "AuxOL")):
        hits = np.array([getattr(row, f"{shown}_correction_dice") >= level for row in rows])
        accepted.plot(steps, np.cumsum(hits) / steps, label=label)
        changed.plot([row.index for row in rows], [getattr(row, f"{shown}_changed_fraction") for row in rows], ".-", label=label, linewidth=0.8)
    accepted.set(xlabel="images seen", ylabel=f"accepted so far (Dice >= {level:.2f})", ylim=(-0.02, 1.02),
                 title="Images a clinician could accept as shown")
    changed.set(xlabel="image index", ylabel="|shown XOR corrected| / |corrected|", title="Share of the object the correction changes")
    accepted.legend()
    changed.legend()
    return figure


def _zoom_box(masks: list[np.ndarray], margin: float = 0.25) -> tuple[slice, slice]:
    """Rows and columns of the union of ``masks``' foreground, widened by ``margin`` of its size (whole image if empty)."""
    union = np.logical_or.reduce(masks)
    if not union.any():
        return slice(None), slice(None)
    ys, xs = np.nonzero(union)
    dy, dx = int(margin * (np.ptp(ys) + 1)), int(margin * (np.ptp(xs) + 1))
    return slice(max(0, ys.min() - dy), ys.max() + dy + 1), slice(max(0, xs.min() - dx), xs.max() + dx + 1)


def _panel_figure(image: np.ndarray, base: np.ndarray, aux: np.ndarray, fused: np.ndarray, truth: np.ndarray, row: ImageRecord) -> Figure:
    """Image, base, auxiliary probability, fused (AuxOL) and truth, zoomed on the object; outlines: truth green, prediction red."""
    rows_slice, cols_slice = _zoom_box([base, fused, truth])
    zoom = (rows_slice, cols_slice)
    figure = Figure(figsize=(12.5, 3), layout="constrained")
    panels = (  # (title, picture, imshow options)
        ("image", image[zoom], {}),
        (f"base (Dice {row.base_dice:.3f})", overlay(image, [(truth, TRUTH_COLOUR), (base, PREDICTION_COLOUR)])[zoom], {}),
        ("auxiliary probability", aux[zoom], {"cmap": "magma", "vmin": 0, "vmax": 1}),
        (f"AuxOL (Dice {row.auxol_dice:.3f})", overlay(image, [(truth, TRUTH_COLOUR), (fused, PREDICTION_COLOUR)])[zoom], {}),
        ("truth", truth[zoom], {"cmap": "gray", "vmin": 0, "vmax": 1}),
    )
    for index, (title, picture, options) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        axes.imshow(picture, **options)
        axes.set_title(title, fontsize=9)
        axes.set_axis_off()
    alpha = "base alone" if row.alpha is None else f"alpha {row.alpha:.2f}"
    figure.suptitle(f"{row.image} (image {row.index}, {alpha}, {'rectified' if row.rectified else 'not rectified'})")
    return figure


def _write_panels(out: Path, part: str, rows: list[ImageRecord], pairs: Mapping[tuple[str, str], Pair]) -> None:
    ranked = sorted(rows, key=lambda row: row.auxol_dice - row.base_dice, reverse=True)
    count = min(PANELS_PER_END, len(ranked) // 2)
    chosen = [("improved", rank, row) for rank, row in enumerate(ranked[:count], start=1)]
    chosen += [("degraded", rank, row) for rank, row in enumerate(ranked[::-1][:count], start=1)]
    folder = mask_path(out / "plots", part, "any").parent
    for stale in [*folder.glob("improved_*.png"), *folder.glob("degraded_*.png")]:  # panels of an earlier run
        stale.unlink()
    for kind, rank, row in chosen:
        stem = row.image
        image, truth = load_pair(pairs[(part, stem)])
        base = read_mask(mask_path(out / "base", part, stem))
        fused = read_mask(mask_path(out / "auxol", part, stem))
        aux = read_image(mask_path(out / "aux", part, stem))[:, :, 0] / 255.0
        save_figure(_panel_figure(image, base, aux, fused, truth, row), mask_path(out / "plots", part, f"{kind}_{rank}_{stem}"))


def write_plots(
    out: Path, records: list[ImageRecord], alpha_rows: list[AlphaRow], pairs: Mapping[tuple[str, str], Pair]
) -> None:
    """Draw the figures of every part into ``out/plots`` (see the module docstring).

    ``pairs`` maps (part, stem) to the dataset pair, for the image and truth of the panels;
    the masks are read back from ``out/base``, ``out/auxol`` and ``out/aux``.
    """
    for part in dict.fromkeys(record.part for record in records):
        part_rows = [record for record in records if record.part == part]
        part_alphas = [row for row in alpha_rows if row.part == part]
        save_figure(_running_dice_figure(part_rows), mask_path(out / "plots", part, "running_dice"))
        save_figure(_gain_figure(part_rows), mask_path(out / "plots", part, "gain"))
        save_figure(_alpha_figure(part_rows, part_alphas), mask_path(out / "plots", part, "alpha"))
        save_figure(_effort_figure(part_rows), mask_path(out / "plots", part, "effort"))
        _write_panels(out, part, part_rows, pairs)

"""The prequential stream on volumes: each volume a stream of its slices, from a seed slice outward.

For every volume of a part (sorted by name; one AuxOL learner per part, carried from one
volume to the next), the slices are met in the order of :func:`auxol.propagation.propagate`:
the seed slice (the one with the largest area of the structure), then up to the last
slice, then down from the seed to the first. Per slice, exactly as the 2-D stream does
per image (:func:`auxol.stream.loop.stream_part`): prompts; the foundation model
segments (each slice embedded once); AuxOL predicts with what earlier slices taught it;
both are scored against the truth; then the simulated clinician may rectify the slice
(``--interval``, ``--dice-threshold``, annotation noise: the 2-D rules, counted along the
part's stream of slices) and only then does the learner learn from it.

Prompts (``VolumeStreamSettings.prompt``):

- ``box``: each slice's boxes from its own truth (slices without a component of the
  structure of at least ``min_size`` px are not visited and count as empty predictions);
- ``propagate``: the seed's boxes from its truth, every next slice's boxes from the mask
  the clinician accepted on its neighbour (the rectified one where it was rectified,
  AuxOL's shown one otherwise), stopping in a direction where that mask holds no
  component. The base model is given the same prompts, so the two differ only in the
  segmentation.

Outputs in ``out`` (``<part>`` as in the 2-D stream; part "." writes directly under the
folders): ``base/<part>/<name>.nii.gz`` and ``auxol/<part>/<name>.nii.gz`` (uint8 0/1 in
the grid and affine of the input image file), ``results.csv`` (one row per visited
slice), ``volumes.csv`` (one row per volume), ``summary.json``, ``config.json``,
``plots/<part>/<name>.png`` (base and AuxOL Dice along the slice index, rectified slices
shaded), and the part's checkpoint (:class:`~auxol.stream.runner.PartCheckpoint`) in
``session/<part>/``: ``learner.pt`` (at the end: the part's learner, for ``auxol predict
--session``), ``stream.json`` (the records so far, the volumes finished) and, while a
volume is under way, ``volume-<n>.npz`` (its masks so far, :class:`VolumeProgress`; ``n``:
slices learned). The checkpoint is saved every ``save_every`` slices and after each
volume, so ``resume=True`` continues an interrupted run, between volumes or inside one,
and gives the outputs of an uninterrupted run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from auxol.data import find_parts
from auxol.data.volumes import (
    Volume, default_window, find_volume_pairs, holds_volumes, read_labels, read_volume, select_structure, slice_rgb,
    to_uint8, volume_stem, write_nifti,
)
from auxol.errors import ConfigError, DataError
from auxol.evaluate.metrics import dice, hausdorff
from auxol.progress import progress, warn
from auxol.stream.clinician import StreamOptions, is_rectified, rectified_mask
from auxol.stream.report import save_figure
from auxol.stream.runner import PartCheckpoint, Runner
from auxol.stream.settings import StreamSettings
from auxol.evaluate.volume_metrics import dice_3d, hd95_mm
from auxol.evaluate.outputs import mask_path
from auxol.io import atomic_open, write_csv, write_json
from auxol.models import PromptableModel
from auxol.online import AuxOL
from auxol.propagation import neighbour_prompts, propagate
from auxol.prompts import Prompt

VolumePrompt = Literal["box", "propagate"]
"""Prompts of a volume stream: each slice's truth boxes, or propagation from the seed slice."""

ACCEPT_DICE = 0.9
"""A shown slice mask with Dice below this needs a person's correction (``*_needing_correction`` counts)."""


@dataclass(frozen=True)
class VolumeStreamSettings(StreamSettings):
    """A stream run's settings (:class:`~auxol.stream.settings.StreamSettings`) plus what volumes add; written to ``config.json``.

    ``prompt``: ``"box"`` or ``"propagate"`` (the module notes); ``stream``: the 2-D
    stream's clinician options, applied per slice; ``label``: the structure's id in the
    label maps (None: all labels merged); ``label_name``: the name it was picked by;
    ``window``: the intensity window (None: :func:`auxol.data.volumes.default_window`).
    """

    prompt: VolumePrompt = "propagate"
    label: int | None = None
    label_name: str | None = None
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.prompt not in get_args(VolumePrompt):
            raise ConfigError(f"--prompt must be box or propagate for volumes, got {self.prompt!r}")


@dataclass
class SliceRecord:
    """One visited slice: a row of ``results.csv``. Dice in [0, 1], HD95 in mm, times in seconds."""

    part: str
    volume: str
    slice: int
    order: int
    prompts: int
    truth_pixels: int
    rectified: bool
    base_dice: float
    auxol_dice: float
    base_hd95_mm: float
    auxol_hd95_mm: float
    alpha: float | None
    embed_seconds: float
    decode_seconds: float
    predict_seconds: float
    learn_seconds: float


def volume_parts(data: str | Path) -> list[tuple[str, Path]]:
    """(part name, part folder) of every part of ``data`` whose images/ hold volumes; [] if none does."""
    return [(part.name, part.root) for part in find_parts(data) if holds_volumes(part.root)]


def seed_slice(truth: np.ndarray) -> int:
    """The slice of bool (slices, rows, columns) ``truth`` with the largest area of the structure (the first of ties)."""
    return int(np.argmax(truth.sum(axis=(1, 2))))


def visit_order(truth: np.ndarray, prompt: VolumePrompt, options: StreamOptions, accepted: dict[int, np.ndarray]):
    """Yield (slice index, its prompts) in stream order: propagation from the seed, or per-slice truth boxes.

    ``truth`` is bool (slices, rows, columns); ``accepted`` receives each visited slice's
    accepted mask from the caller (propagation reads it).
    """
    seed = seed_slice(truth)
    if prompt == "propagate":
        seed_prompts = neighbour_prompts(truth[seed], options.min_size, options.box_margin)
        yield from propagate(truth.shape[0], seed, seed_prompts, accepted, options.min_size, options.box_margin)
        return
    for index in (*range(seed, truth.shape[0]), *range(seed - 1, -1, -1)):
        prompts = neighbour_prompts(truth[index], options.min_size, options.box_margin)
        if prompts:
            yield index, prompts


@dataclass
class VolumeProgress:
    """A volume streamed so far: bool (slices, rows, columns) ``base`` and ``shown`` masks, and the accepted mask of each visited slice."""

    base: np.ndarray
    shown: np.ndarray
    accepted: dict[int, np.ndarray]

    def write(self, path: Path) -> None:
        """Save to ``path`` (``.npz``, atomically; the accepted masks in visiting order)."""
        with atomic_open(path, "wb") as handle:
            np.savez_compressed(
                handle, base=self.base, shown=self.shown, visited=np.array(list(self.accepted), dtype=np.int64),
                accepted=np.array(list(self.accepted.values()), dtype=bool).reshape(-1, *self.base.shape[1:]),
            )

    @classmethod
    def read(cls, path: Path) -> VolumeProgress:
        try:
            with np.load(path) as saved:
                return cls(saved["base"], saved["shown"], dict(zip(saved["visited"].tolist(), saved["accepted"])))
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{path}: cannot read the volume's saved progress ({error}); run again without --resume") from None


class VolumeStreamRunner(Runner):
    """Streams the slices of every volume of every volume part of ``settings.data`` (see the module docstring)."""

    settings: VolumeStreamSettings

    def __init__(self, model: PromptableModel, settings: VolumeStreamSettings, out: str | Path, console: Console | None = None) -> None:
        super().__init__(model, settings, out, console)
        self.slices: list[SliceRecord] = []
        self.volumes: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Stream every volume; returns the summary.

        ``resume``: continue from each part's checkpoint in ``out/session/`` (the outputs
        are those of an uninterrupted run). Raises DataError when no volume could be
        streamed, ConfigError when ``resume`` meets other settings than ``out/config.json``.
        """
        parts = volume_parts(self.settings.data)
        if not parts:
            raise DataError(f"{self.settings.data}: no volumes (images/ with NIfTI files or DICOM series folders)")
        self.start(resume)
        listed = [(name, find_volume_pairs(root / "images", root / "masks")) for name, root in parts]
        with progress(self.console) as bar:
            task = bar.add_task("stream", total=None, status="")
            for name, pairs in listed:
                self._run_part(name, pairs, resume, lambda status: bar.update(task, status=status), lambda: bar.advance(task))
        for reason in self.skipped:
            warn(reason)
        if not self.volumes:
            raise DataError(f"{self.settings.data}: no volume could be streamed ({self.skipped[0] if self.skipped else 'none found'})")
        summary = self._write_results()
        for volume in self.volumes:
            records = [r for r in self.slices if (r.part, r.volume) == (volume["part"], volume["volume"])]
            save_figure(_volume_dice_figure(volume, records), mask_path(self.out / "plots", volume["part"], volume["volume"]))
        return summary

    def _run_part(
        self, part: str, pairs: list[tuple[Path, Path]], resume: bool, show: Callable[[str], None], advance: Callable[[], None]
    ) -> None:
        """Stream the volumes of one part with one learner, from its checkpoint when ``resume`` finds one."""
        checkpoint = PartCheckpoint(self.out, part)
        state = checkpoint.read_state() if resume and checkpoint.exists() else None
        rng = np.random.default_rng(self.settings.auxol.seed)
        first_skip = len(self.skipped)
        if state is None:
            checkpoint.remove()
            for stale in checkpoint.folder.glob("volume-*.npz"):
                stale.unlink()
            learner, done, ongoing = AuxOL(self.model, self.settings.auxol), 0, None
        else:
            self.slices += [SliceRecord(**record) for record in state["records"]]
            self.volumes += state["volumes"]
            self.skipped += state["skipped"]
            rng.bit_generator.state = state["rng"]
            if state["done"]:
                return
            learner, done = checkpoint.load_learner(self.model, state), state["volumes_done"]
            ongoing = VolumeProgress.read(checkpoint.folder / f"volume-{state['next']}.npz") if state["in_volume"] else None

        def save(volumes_done: int, in_volume: VolumeProgress | None = None, finished: bool = False) -> None:
            """Checkpoint the part: ``volumes_done`` volumes finished, and ``in_volume``, the next one's progress, if any."""
            if not learner.images_seen:
                return  # nothing learned yet: a resume starts the part again
            if in_volume is not None:
                in_volume.write(checkpoint.folder / f"volume-{learner.images_seen}.npz")
            checkpoint.save(learner, rng, [r for r in self.slices if r.part == part], finished, {
                "volumes_done": volumes_done, "in_volume": in_volume is not None,
                "volumes": [v for v in self.volumes if v["part"] == part], "skipped": self.skipped[first_skip:],
            })
            for stale in checkpoint.folder.glob("volume-*.npz"):  # only the one the state names is kept
                if in_volume is None or stale.name != f"volume-{learner.images_seen}.npz":
                    stale.unlink()

        for number, (image_path, label_path) in enumerate(pairs[done:], start=done):
            show(f"{part}/{volume_stem(image_path)}")

            def after_slice(in_volume: VolumeProgress) -> None:
                if learner.images_seen % self.settings.save_every == 0:
                    save(number, in_volume)

            if self._stream_volume(part, image_path, label_path, learner, rng, ongoing, after_slice, advance):
                self._write_results()  # finished volumes stay reported if a later one is interrupted
            ongoing = None
            save(number + 1)
        save(len(pairs), finished=True)

    def _load(self, image_path: Path, label_path: Path) -> tuple[Volume, np.ndarray] | None:
        """The image volume and the bool truth of the structure, or None (reason in ``skipped``)."""
        try:
            volume = read_volume(image_path)
            labels = read_labels(label_path, volume)
        except DataError as error:
            self.skipped.append(f"skipped {error}")
            return None
        truth = select_structure(labels, self.settings.label)
        if not truth.any():
            what = "the structure" if self.settings.label is None else f"label {self.settings.label} ({self.settings.label_name or 'by id'})"
            self.skipped.append(f"skipped {label_path}: {what} is absent from this volume")
            return None
        return volume, truth

    def _stream_volume(
        self, part: str, image_path: Path, label_path: Path, learner: AuxOL, rng: np.random.Generator,
        ongoing: VolumeProgress | None, after_slice: Callable[[VolumeProgress], None], advance: Callable[[], None],
    ) -> bool:
        """Stream one volume's slices (after those of ``ongoing``, a resumed volume) and write its label volumes.

        ``after_slice`` is called with the volume's progress after each slice. False when the volume was skipped.
        """
        loaded = self._load(image_path, label_path)
        if loaded is None:
            return False
        volume, truth = loaded
        name, options = volume_stem(image_path), self.settings.stream
        window = self.settings.window if self.settings.window is not None else default_window(volume)
        pixels = to_uint8(volume.array, window)
        spacing = volume.spacing[1:]
        now = ongoing or VolumeProgress(np.zeros(truth.shape, bool), np.zeros(truth.shape, bool), {})
        began = time.perf_counter()
        visits = visit_order(truth, self.settings.prompt, options, now.accepted)
        for order, (index, prompts) in enumerate(itertools.islice(visits, len(now.accepted), None), start=len(now.accepted)):
            record, now.accepted[index] = self._stream_slice(
                part, name, index, order, pixels, truth[index], prompts, learner, rng, spacing, now.base, now.shown
            )
            self.slices.append(record)
            advance()
            after_slice(now)
        seconds = time.perf_counter() - began
        records = [r for r in self.slices if (r.part, r.volume) == (part, name)]
        self._write_volumes(part, name, volume, now.base, now.shown)
        self.volumes.append({
            "part": part, "volume": name, "slices": truth.shape[0], "slices_with_structure": int(truth.any(axis=(1, 2)).sum()),
            "slices_visited": len(records), "slices_rectified": sum(r.rectified for r in records),
            "base_needing_correction": sum(r.base_dice < ACCEPT_DICE for r in records),
            "auxol_needing_correction": sum(r.auxol_dice < ACCEPT_DICE for r in records),
            "base_dice_3d": dice_3d(now.base, truth), "auxol_dice_3d": dice_3d(now.shown, truth),
            "base_hd95_mm": hd95_mm(now.base, truth, volume.spacing), "auxol_hd95_mm": hd95_mm(now.shown, truth, volume.spacing),
            "seconds": seconds, "seconds_per_slice": seconds / max(len(records), 1),
        })
        return True

    def _stream_slice(
        self, part: str, name: str, index: int, order: int, pixels: np.ndarray, truth: np.ndarray, prompts: list[Prompt],
        learner: AuxOL, rng: np.random.Generator, spacing: tuple[float, float], base: np.ndarray, shown: np.ndarray,
    ) -> tuple[SliceRecord, np.ndarray]:
        """Segment, score and (maybe) rectify one slice; returns its record and the mask the clinician accepted."""
        image = slice_rgb(pixels, index)
        started = time.perf_counter()
        embedding = self.model.embed(image)
        embedded = time.perf_counter()
        base_logits = self.model.segment_many(embedding, prompts)
        decoded = time.perf_counter()
        prediction = learner.predict(image, prompts, embedding=embedding, base_logits=base_logits)
        predicted = time.perf_counter()
        base[index], shown[index] = prediction.base_mask, prediction.mask
        base_dice = dice(prediction.base_mask, truth)
        options = self.settings.stream
        rectified = is_rectified(learner.images_seen, base_dice, options)  # images_seen: the part's stream index
        correction = rectified_mask(truth, options, rng) if rectified else None
        learning = time.perf_counter()
        learner.learn(prediction, correction)
        learner.flush()
        record = SliceRecord(
            part=part, volume=name, slice=index, order=order, prompts=len(prompts), truth_pixels=int(truth.sum()),
            rectified=rectified, base_dice=base_dice, auxol_dice=dice(prediction.mask, truth),
            base_hd95_mm=hausdorff(prediction.base_mask, truth, 95, spacing), auxol_hd95_mm=hausdorff(prediction.mask, truth, 95, spacing),
            alpha=prediction.alpha, embed_seconds=embedded - started, decode_seconds=decoded - embedded,
            predict_seconds=predicted - decoded, learn_seconds=time.perf_counter() - learning,
        )
        return record, correction if rectified else prediction.mask

    def _write_volumes(self, part: str, name: str, volume: Volume, base: np.ndarray, shown: np.ndarray) -> None:
        for folder, mask in (("base", base), ("auxol", shown)):
            root = self.out / folder if part == "." else self.out / folder / part
            write_nifti(root / f"{name}.nii.gz", mask, volume)

    def _write_results(self) -> dict[str, Any]:
        write_csv(self.out / "results.csv", [asdict(record) for record in self.slices])
        write_csv(self.out / "volumes.csv", self.volumes)
        summary = {
            "parts": {part: _summarize([v for v in self.volumes if v["part"] == part], [s for s in self.slices if s.part == part])
                      for part in dict.fromkeys(v["part"] for v in self.volumes)},
            "overall": _summarize(self.volumes, self.slices),
            "accept_dice": ACCEPT_DICE,
            "skipped": self.skipped,
            "runtime": self.model.runtime,
        }
        write_json(self.out / "summary.json", summary)
        return summary


def _summarize(volumes: list[dict[str, Any]], slices: list[SliceRecord]) -> dict[str, Any]:
    """Means over volumes (3-D Dice, HD95 mm), slice counts, per-slice means and per-slice cost in seconds."""
    def mean(values) -> float:
        values = list(values)
        return float(np.mean(values)) if values else float("nan")

    return {
        "volumes": len(volumes),
        "slices_visited": len(slices),
        "slices_rectified": sum(s.rectified for s in slices),
        "base_needing_correction": sum(v["base_needing_correction"] for v in volumes),
        "auxol_needing_correction": sum(v["auxol_needing_correction"] for v in volumes),
        **{key: mean(v[key] for v in volumes) for key in ("base_dice_3d", "auxol_dice_3d", "base_hd95_mm", "auxol_hd95_mm")},
        "gain_3d": mean(v["auxol_dice_3d"] - v["base_dice_3d"] for v in volumes),
        "base_dice_slices": mean(s.base_dice for s in slices),
        "auxol_dice_slices": mean(s.auxol_dice for s in slices),
        "seconds_per_slice": {
            "embed": mean(s.embed_seconds for s in slices), "decode": mean(s.decode_seconds for s in slices),
            "auxol_predict": mean(s.predict_seconds for s in slices), "learn": mean(s.learn_seconds for s in slices),
            "total": mean(s.embed_seconds + s.decode_seconds + s.predict_seconds + s.learn_seconds for s in slices),
        },
    }


def _volume_dice_figure(volume: dict[str, Any], records: list[SliceRecord]) -> Figure:
    """Base and AuxOL Dice of each visited slice of ``volume`` (a ``volumes.csv`` row) along the slice index.

    Rectified slices are shaded, the seed slice is a dashed line, ``ACCEPT_DICE`` a dotted one.
    """
    figure = Figure(figsize=(8, 4.3), layout="constrained")
    axes = figure.add_subplot()
    rows = sorted(records, key=lambda record: record.slice)
    index = [row.slice for row in rows]
    rectified = [row.slice for row in rows if row.rectified]
    axes.bar(rectified, 1.04, bottom=-0.02, width=0.8, color="tab:orange", alpha=0.2, label="rectified slice")
    axes.plot(index, [row.base_dice for row in rows], "o-", linewidth=3, markersize=7, alpha=0.6,
              label=f"base (3-D Dice {volume['base_dice_3d']:.3f})")
    axes.plot(index, [row.auxol_dice for row in rows], "s--", linewidth=1.2, markersize=4, label=f"AuxOL (3-D Dice {volume['auxol_dice_3d']:.3f})")
    seed = min(records, key=lambda record: record.order).slice
    axes.axvline(seed, color="gray", linestyle="--", linewidth=1, label=f"seed slice {seed}")
    axes.axhline(ACCEPT_DICE, color="black", linestyle=":", linewidth=0.8, label=f"Dice {ACCEPT_DICE}")
    axes.set(
        xlabel="slice index", ylabel="Dice with the truth", xlim=(-0.5, volume["slices"] - 0.5), ylim=(-0.02, 1.02),
        title=f"{volume['volume']}: Dice per slice ({len(rectified)} of {len(rows)} visited slices rectified)",
    )
    figure.legend(loc="outside lower center", fontsize=8, ncols=5)
    return figure


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table per part and overall: volumes, slices, 3-D Dice base -> AuxOL, HD95 mm, slices needing correction."""
    table = Table(title="auxol stream (volumes)")
    for column in ("part", "vol", "slices", "rectified", "3D Dice base", "AuxOL", "HD95 mm base", "AuxOL", f"Dice<{ACCEPT_DICE} base", "AuxOL", "s/slice"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, part in [*summary["parts"].items(), ("overall", summary["overall"])]:
        table.add_row(
            name, str(part["volumes"]), str(part["slices_visited"]), str(part["slices_rectified"]),
            f"{part['base_dice_3d']:.4f}", f"{part['auxol_dice_3d']:.4f}", f"{part['base_hd95_mm']:.1f}", f"{part['auxol_hd95_mm']:.1f}",
            str(part["base_needing_correction"]), str(part["auxol_needing_correction"]), f"{part['seconds_per_slice']['total']:.2f}",
        )
    return table

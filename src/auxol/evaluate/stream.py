"""The prequential stream: replay a dataset as a clinician in the loop would meet it.

For each image, in order: prompts come from the true mask; the foundation model segments
the image; the AuxOL learner predicts with what earlier images taught it; base and AuxOL
are scored against the truth; then, if the simulated clinician rectifies this image, the
learner learns from the (optionally degraded) truth. Image t's mask reaches the learner
only after image t was predicted and scored.

:func:`stream_part` is the loop itself, with no files; :func:`run_stream` runs it over
every part of a dataset (a fresh learner per part) and writes, in ``out``:

- ``base/<part>/<stem>.png``, ``auxol/<part>/<stem>.png``: 0/255 masks at the image size,
  and ``aux/<part>/<stem>.png``: the auxiliary network's probability inside its crops
  (0..255), for the figures; part ``"."`` writes directly under ``base/``, ``auxol/``, ``aux/``;
- ``results.csv``, ``alphas.csv``, ``summary.json``, ``config.json`` and ``plots/``
  (see :mod:`auxol.evaluate.report`);
- ``session/<part>/learner.pt`` and ``session/<part>/stream.json`` (part ``"."``:
  ``session/learner.pt``, ``session/stream.json``): the learner and the stream's own
  state, saved with the results every ``save_every`` images, so ``resume=True`` continues
  an interrupted run and gives the outputs an uninterrupted run gives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from auxol.data import Listing, load_dataset
from auxol.data.noise import NoiseKind, degrade_mask
from auxol.errors import ConfigError, DataError
from auxol.evaluate import report
from auxol.evaluate.metrics import dice, score
from auxol.evaluate.outputs import mask_path, progress, valid_pairs
from auxol.io import write_image_png, write_json, write_mask_png
from auxol.models import PromptableModel
from auxol.online import AuxOL, AuxOLConfig, Prediction
from auxol.prompts import Prompt, PromptKind, components, prompts_from_mask, shift_box


@dataclass(frozen=True)
class StreamOptions:
    """How the simulated clinician prompts and rectifies.

    Attributes:
        prompt: prompts derived from each true mask: ``"box"`` or ``"point"``.
        min_size: mask components narrower or shorter than this (px) give no prompt.
        box_margin: widen each box by this fraction of the image's long side before any
            shift (0 = tight boxes, the AuxOL paper's rule; ``auxol evaluate`` uses 0.02).
        prompt_noise: "lrud" box shift, as a fraction of the box size (box prompts
            only; 0 = tight boxes).
        interval: only every ``interval``-th image (0, k, 2k, ...) is rectified.
        dice_threshold: only images whose base-model Dice is <= this are rectified.
        annotation_noise: degrade each rectified mask by ``"dilate"``, ``"erode"`` or
            ``"either"`` (drawn per component), or ``None`` for exact masks.
        noise_ratio: side of the square noise kernel as a fraction of the smaller side
            of the component's bounding box (the paper's crop for a box prompt).
    """

    prompt: PromptKind = "box"
    min_size: int = 16
    box_margin: float = 0.0
    prompt_noise: float = 0.0
    interval: int = 1
    dice_threshold: float = 1.0
    annotation_noise: NoiseKind | None = None
    noise_ratio: float = 0.05

    def __post_init__(self) -> None:
        if self.prompt not in ("box", "point"):
            raise ConfigError(f"--prompt must be 'box' or 'point', got {self.prompt!r}")
        if self.interval < 1:
            raise ConfigError(f"--interval must be >= 1, got {self.interval}")
        if not 0 <= self.box_margin < 1:
            raise ConfigError(f"--box-margin must be in [0, 1), got {self.box_margin}")
        if not 0 <= self.prompt_noise < 1:
            raise ConfigError(f"--prompt-noise must be in [0, 1), got {self.prompt_noise}")
        if self.prompt_noise and self.prompt != "box":
            raise ConfigError("--prompt-noise shifts boxes; it needs --prompt box")
        if self.annotation_noise not in (None, "dilate", "erode", "either"):
            raise ConfigError(f"--annotation-noise must be dilate, erode or either, got {self.annotation_noise!r}")
        if not 0 <= self.noise_ratio < 1:
            raise ConfigError(f"--noise-ratio must be in [0, 1), got {self.noise_ratio}")


@dataclass(frozen=True)
class StreamSettings:
    """Everything a run depends on; written to ``config.json`` and checked on resume."""

    data: str
    model: str
    checkpoint: str | None
    preset: str
    auxol: AuxOLConfig
    stream: StreamOptions = field(default_factory=StreamOptions)
    save_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "auxol": self.auxol.to_dict()}


@dataclass
class ImageRecord:
    """One image of the stream: a row of ``results.csv``.

    Dice values are in [0, 1] (``*_smooth1``: the paper's Dice with smooth 1), HD95 in
    pixels capped at the image diagonal, times in seconds. ``alpha`` is the fusion weight
    of the foundation model, ``None`` while AuxOL used the foundation model alone.
    ``base_seconds`` is the image encoder plus the decoding of all prompts,
    ``predict_seconds`` AuxOL's work on top of it, ``learn_seconds`` the learning step.
    """

    part: str
    image: str
    index: int
    prompts: int
    rectified: bool
    base_dice: float
    base_hd95: float
    boxcut_dice: float
    auxol_dice: float
    auxol_hd95: float
    base_dice_smooth1: float
    auxol_dice_smooth1: float
    alpha: float | None
    base_seconds: float
    predict_seconds: float
    learn_seconds: float


@dataclass
class StreamStep:
    """What :func:`stream_part` yields per image: its record and what figures need."""

    record: ImageRecord
    prediction: Prediction
    image: np.ndarray
    truth: np.ndarray


def stream_prompts(truth: np.ndarray, options: StreamOptions, rng: np.random.Generator) -> list[Prompt]:
    """The prompts a clinician gives for bool (H, W) ``truth``, box-shifted by ``options.prompt_noise`` with ``rng``."""
    prompts = prompts_from_mask(truth, options.prompt, options.min_size, options.box_margin)
    if not options.prompt_noise:
        return prompts
    height, width = truth.shape
    return [Prompt.from_box(shift_box(p.box, options.prompt_noise, rng, height, width)) for p in prompts]


def is_rectified(index: int, base_dice: float, options: StreamOptions) -> bool:
    """Whether the clinician rectifies image ``index`` (0-based) whose base-model Dice is ``base_dice``."""
    return index % options.interval == 0 and base_dice <= options.dice_threshold


def rectified_mask(truth: np.ndarray, options: StreamOptions, rng: np.random.Generator) -> np.ndarray:
    """The mask the clinician hands back: bool (H, W) ``truth``, each component degraded by the annotation noise.

    Each 8-connected component is dilated or eroded on its own with a kernel of side
    ``noise_ratio * min(its box height, its box width)``; the results are united.
    """
    if options.annotation_noise is None:
        return truth
    degraded = np.zeros_like(truth, dtype=bool)
    for (x1, y1, x2, y2), region in components(truth, min_size=1):
        reference = int(min(x2 - x1, y2 - y1)) + 1
        degraded |= degrade_mask(region, options.annotation_noise, options.noise_ratio, rng, reference)
    return degraded


def stream_part(
    model: PromptableModel,
    learner: AuxOL,
    images: Iterable[tuple[str, np.ndarray, np.ndarray]],
    options: StreamOptions,
    rng: np.random.Generator,
    part: str = ".",
    start: int = 0,
) -> Iterator[StreamStep]:
    """Run the prequential loop over ``images``: (stem, uint8 (H, W, 3) image, bool (H, W) truth).

    ``rng`` draws the prompt and annotation noise; ``start`` is the stream index of the
    first image (when resuming). ``model`` needs only ``embed`` and ``segment_many``.
    """
    for index, (stem, image, truth) in enumerate(images, start=start):
        prompts = stream_prompts(truth, options, rng)
        began = time.perf_counter()
        base_logits = model.segment_many(model.embed(image), prompts)
        based = time.perf_counter()
        prediction = learner.predict(image, prompts, base_logits=base_logits)
        predicted = time.perf_counter()

        base, auxol = score(prediction.base_mask, truth), score(prediction.mask, truth)
        rectified = is_rectified(index, base["dice"], options)
        learned = time.perf_counter()
        learner.learn(prediction, rectified_mask(truth, options, rng) if rectified else None)
        learner.flush()
        record = ImageRecord(
            part=part,
            image=stem,
            index=index,
            prompts=len(prompts),
            rectified=rectified,
            base_dice=base["dice"],
            base_hd95=base["hd95"],
            boxcut_dice=dice(prediction.boxcut_mask, truth),
            auxol_dice=auxol["dice"],
            auxol_hd95=auxol["hd95"],
            base_dice_smooth1=dice(prediction.base_mask, truth, smooth=1.0),
            auxol_dice_smooth1=dice(prediction.mask, truth, smooth=1.0),
            alpha=prediction.alpha,
            base_seconds=based - began,
            predict_seconds=predicted - based,
            learn_seconds=time.perf_counter() - learned,
        )
        yield StreamStep(record, prediction, image, truth)


def aux_probability(prediction: Prediction, height: int, width: int) -> np.ndarray:
    """The auxiliary network's probability pasted into its crops: float32 (H, W) in [0, 1], 0 outside the crops."""
    full = np.zeros((height, width), dtype=np.float32)
    for crop in prediction.crops:
        x1, y1, x2, y2 = crop.box
        probability = torch.sigmoid(torch.from_numpy(crop.aux_logits)).numpy()
        full[y1 : y2 + 1, x1 : x2 + 1] = np.maximum(full[y1 : y2 + 1, x1 : x2 + 1], probability)
    return full


class PartSession:
    """The saved progress of one part: the learner (``learner.pt``) and the stream's state (``stream.json``).

    ``stream.json`` holds ``next``, the index of the next image, ``done``, the noise
    generator's state, and the part's records and alpha log so far.
    """

    def __init__(self, out: Path, part: str) -> None:
        folder = out / "session" if part == "." else out / "session" / part
        self.learner_path = folder / "learner.pt"
        self.state_path = folder / "stream.json"

    def exists(self) -> bool:
        return self.state_path.is_file()

    def remove(self) -> None:
        """Delete the files of an earlier run, so a later ``--resume`` cannot pick them up."""
        self.state_path.unlink(missing_ok=True)
        self.learner_path.unlink(missing_ok=True)

    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DataError(f"{self.state_path}: cannot read stream state ({error})") from None

    def load_learner(self, model: PromptableModel, state: dict[str, Any]) -> AuxOL:
        learner = AuxOL.load(self.learner_path, model)
        if learner.images_seen != state["next"]:
            raise DataError(
                f"{self.learner_path}: learner has seen {learner.images_seen} images but {self.state_path} "
                f"expects {state['next']}; run again without --resume"
            )
        return learner

    def save(self, learner: AuxOL, rng: np.random.Generator, records: list[ImageRecord], done: bool) -> None:
        """Save the learner, then the stream state (the state names what the learner has seen)."""
        learner.save(self.learner_path)
        write_json(
            self.state_path,
            {
                "next": learner.images_seen,
                "done": done,
                "rng": rng.bit_generator.state,
                "records": [asdict(record) for record in records],
                "alpha_log": learner.alpha_log,
            },
        )


@dataclass
class PartResult:
    """The records, alpha log and skip reasons of one part."""

    records: list[ImageRecord] = field(default_factory=list)
    alpha_log: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _check_resume_settings(out: Path, settings: StreamSettings) -> None:
    saved_path = out / "config.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    current = json.loads(json.dumps(settings.to_dict()))
    changed = sorted(key for key in current.keys() | saved.keys() if current.get(key) != saved.get(key))
    if changed:
        raise ConfigError(f"--resume: options differ from {saved_path} ({', '.join(changed)}); use the same options or a new --out")


class StreamRunner:
    """Runs :func:`stream_part` over every part of a dataset and keeps ``out`` up to date (see the module docstring)."""

    def __init__(self, model: PromptableModel, settings: StreamSettings, out: str | Path, console: Console | None = None) -> None:
        self.model = model
        self.settings = settings
        self.out = Path(out)
        self.console = console or Console()
        self.results: dict[str, PartResult] = {}

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Stream every part; returns the summary (see :func:`auxol.evaluate.report.summarize`).

        Raises:
            DataError: no valid image/mask pair in the whole dataset.
            ConfigError: ``resume`` with options other than those in ``out/config.json``.
        """
        listings = load_dataset(self.settings.data)
        if resume:
            _check_resume_settings(self.out, self.settings)
        write_json(self.out / "config.json", self.settings.to_dict())
        with progress(self.console) as bar:
            task = bar.add_task("stream", total=sum(len(listing.pairs) for listing in listings), status="")
            listed = 0
            for listing in listings:
                self._run_part(listing, resume, lambda: bar.update(task, advance=1, status=self._status()))
                listed += len(listing.pairs)
                bar.update(task, completed=listed)  # counts the pairs skipped or streamed before a resume
        if not any(result.records for result in self.results.values()):
            raise DataError(f"{self.settings.data}: no valid image/mask pair to stream")
        summary = self._write_results()
        report.write_plots(self.out, self._rows(), self._alpha_rows(), {
            (listing.name, pair.stem): pair for listing in listings for pair in listing.pairs
        })
        return summary

    def _run_part(self, listing: Listing, resume: bool, advance: Callable[[], None]) -> None:
        session = PartSession(self.out, listing.name)
        result = self.results[listing.name] = PartResult()
        state = session.read_state() if resume and session.exists() else None
        rng = np.random.default_rng(self.settings.auxol.seed)
        if state is None:
            session.remove()
            learner = AuxOL(self.model, self.settings.auxol)
        else:
            result.records = [ImageRecord(**record) for record in state["records"]]
            result.alpha_log = state["alpha_log"]
            rng.bit_generator.state = state["rng"]
            learner = None if state["done"] else session.load_learner(self.model, state)
        pairs = valid_pairs(listing, result.skipped)
        if learner is not None:
            todo = ((pair.stem, image, truth) for index, (pair, image, truth) in enumerate(pairs) if index >= len(result.records))
            for step in stream_part(self.model, learner, todo, self.settings.stream, rng, listing.name, len(result.records)):
                self._write_masks(step)
                result.records.append(step.record)
                result.alpha_log = learner.alpha_log
                advance()
                if len(result.records) % self.settings.save_every == 0:
                    session.save(learner, rng, result.records, done=False)
                    self._write_results()
            session.save(learner, rng, result.records, done=True)
        else:
            for _ in pairs:  # only collects the skip reasons of a part finished before the resume
                pass
        for reason in result.skipped:
            self.console.print(f"[yellow]skipped:[/yellow] {reason}", highlight=False, soft_wrap=True)

    def _write_masks(self, step: StreamStep) -> None:
        part, stem = step.record.part, step.record.image
        write_mask_png(mask_path(self.out / "base", part, stem), step.prediction.base_mask)
        write_mask_png(mask_path(self.out / "auxol", part, stem), step.prediction.mask)
        probability = aux_probability(step.prediction, *step.truth.shape)
        write_image_png(mask_path(self.out / "aux", part, stem), np.round(255 * probability))

    def _rows(self) -> list[dict[str, Any]]:
        return [asdict(record) for result in self.results.values() for record in result.records]

    def _alpha_rows(self) -> list[dict[str, Any]]:
        """The learners' alpha logs with the part and image name of each entry."""
        rows = []
        for part, result in self.results.items():
            for entry in result.alpha_log:
                index = entry["image"]
                rows.append({"part": part, "image": result.records[index].image, "index": index, "crop": entry["crop"],
                             "best_alpha": entry["best_alpha"], "used_alpha": entry["used_alpha"]})
        return rows

    def _write_results(self) -> dict[str, Any]:
        skipped = {part: result.skipped for part, result in self.results.items()}
        return report.write_results(self.out, self._rows(), self._alpha_rows(), skipped)

    def _status(self) -> str:
        records = [record for result in self.results.values() for record in result.records]
        gain = np.mean([r.auxol_dice - r.base_dice for r in records]) if records else 0.0
        return f"mean Dice gain {gain:+.4f}"

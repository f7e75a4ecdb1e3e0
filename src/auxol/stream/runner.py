"""The stream runner: every part of a dataset through the prequential loop, with its outputs kept up to date.

:func:`~auxol.stream.loop.stream_part` is the loop itself, with no files;
:class:`StreamRunner` runs it over every part of a dataset (a fresh learner per part)
and writes, in ``out``:

- ``base/<part>/<stem>.png``, ``auxol/<part>/<stem>.png``: 0/255 masks at the image size,
  and ``aux/<part>/<stem>.png``: the auxiliary network's probability inside its crops
  (0..255), for the figures; part ``"."`` writes directly under ``base/``, ``auxol/``, ``aux/``;
- ``results.csv``, ``alphas.csv``, ``summary.json``, ``config.json`` and ``plots/``
  (see :mod:`auxol.stream.report`);
- ``session/<part>/learner.pt`` and ``session/<part>/stream.json`` (part ``"."``:
  ``session/learner.pt``, ``session/stream.json``): the learner and the stream's own
  state (:class:`PartCheckpoint`), saved with the results every ``save_every`` images, so
  ``resume=True`` continues an interrupted run and gives the outputs an uninterrupted run gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from auxol.data import Listing, load_dataset, valid_pairs
from auxol.errors import ConfigError, DataError
from auxol.evaluate.outputs import mask_path
from auxol.io import write_image_png, write_json, write_mask_png
from auxol.models import PromptableModel
from auxol.online import AlphaEntry, AuxOL
from auxol.progress import progress
from auxol.stream import report
from auxol.stream.report import AlphaRow, StreamSummary
from auxol.stream.loop import ImageRecord, StreamStep, aux_probability, stream_part
from auxol.stream.settings import StreamSettings


class PartCheckpoint:
    """The saved progress of one part, to resume from: the learner (``learner.pt``) and the stream's state (``stream.json``).

    ``stream.json`` holds ``next``, the index of the next image, ``done``, the noise
    generator's state, and the part's records and alpha log so far.
    """

    def __init__(self, out: Path, part: str) -> None:
        self.folder = out / "session" if part == "." else out / "session" / part
        self.learner_path = self.folder / "learner.pt"
        self.state_path = self.folder / "stream.json"

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

    def save(self, learner: AuxOL, rng: np.random.Generator, records: list, done: bool, extra: Mapping[str, Any] | None = None) -> None:
        """Save the learner, then the stream state (the state names what the learner has seen).

        ``records``: the part's records so far (dataclasses: the 2-D stream's
        :class:`ImageRecord`, the volume stream's slice records); ``extra``: more keys
        for ``stream.json`` (the volume stream's own progress).
        """
        learner.save(self.learner_path)
        write_json(
            self.state_path,
            {
                "next": learner.images_seen,
                "done": done,
                "rng": rng.bit_generator.state,
                "records": [asdict(record) for record in records],
                "alpha_log": [asdict(entry) for entry in learner.alpha_log],
                **(extra or {}),
            },
        )


@dataclass
class PartResult:
    """The records, alpha log and skip reasons of one part."""

    records: list[ImageRecord] = field(default_factory=list)
    alpha_log: list[AlphaEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _check_resume_config(out: Path, config: dict[str, Any]) -> None:
    saved_path = out / "config.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    current = json.loads(json.dumps(config))
    changed = sorted(key for key in current.keys() | saved.keys() if current.get(key) != saved.get(key))
    if changed:
        raise ConfigError(f"--resume: options differ from {saved_path} ({', '.join(changed)}); use the same options or a new --out")


class Runner:
    """What every stream runner (images here, volumes in :mod:`auxol.stream.volumes`) holds, and how its run starts."""

    def __init__(self, model: PromptableModel, settings: StreamSettings, out: str | Path, console: Console | None = None) -> None:
        self.model = model
        self.settings = settings
        self.out = Path(out)
        self.console = console or Console()

    def config(self) -> dict[str, Any]:
        """What ``config.json`` holds: the settings, and ``runtime``: what ran the frozen model (``torch``, ``openvino``, ``onnx``)."""
        return {**self.settings.to_dict(), "runtime": self.model.runtime}

    def start(self, resume: bool) -> None:
        """Write ``out/config.json``; when ``resume``, first check that it holds the current config (else ConfigError)."""
        config = self.config()
        if resume:
            _check_resume_config(self.out, config)
        write_json(self.out / "config.json", config)


class StreamRunner(Runner):
    """Runs :func:`stream_part` over every part of a dataset and keeps ``out`` up to date (see the module docstring)."""

    def __init__(self, model: PromptableModel, settings: StreamSettings, out: str | Path, console: Console | None = None) -> None:
        super().__init__(model, settings, out, console)
        self.results: dict[str, PartResult] = {}

    def run(self, resume: bool = False) -> StreamSummary:
        """Stream every part; returns the summary (see :func:`auxol.stream.report.summarize`).

        Raises:
            DataError: no valid image/mask pair in the whole dataset.
            ConfigError: ``resume`` with options other than those in ``out/config.json``.
        """
        listings = load_dataset(self.settings.data)
        self.start(resume)
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
        report.write_plots(self.out, self._records(), self._alpha_rows(), {
            (listing.name, pair.stem): pair for listing in listings for pair in listing.pairs
        })
        return summary

    def _run_part(self, listing: Listing, resume: bool, advance: Callable[[], None]) -> None:
        checkpoint = PartCheckpoint(self.out, listing.name)
        result = self.results[listing.name] = PartResult()
        state = checkpoint.read_state() if resume and checkpoint.exists() else None
        rng = np.random.default_rng(self.settings.auxol.seed)
        if state is None:
            checkpoint.remove()
            learner = AuxOL(self.model, self.settings.auxol)
        else:
            result.records = [ImageRecord(**record) for record in state["records"]]
            result.alpha_log = [AlphaEntry(**entry) for entry in state["alpha_log"]]
            rng.bit_generator.state = state["rng"]
            learner = None if state["done"] else checkpoint.load_learner(self.model, state)
        pairs = valid_pairs(listing, result.skipped)
        if learner is not None:
            todo = ((pair.stem, image, truth) for index, (pair, image, truth) in enumerate(pairs) if index >= len(result.records))
            for step in stream_part(self.model, learner, todo, self.settings.stream, rng, listing.name, len(result.records)):
                self._write_masks(step)
                result.records.append(step.record)
                result.alpha_log = learner.alpha_log
                advance()
                if len(result.records) % self.settings.save_every == 0:
                    checkpoint.save(learner, rng, result.records, done=False)
                    self._write_results()
            checkpoint.save(learner, rng, result.records, done=True)
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

    def _records(self) -> list[ImageRecord]:
        return [record for result in self.results.values() for record in result.records]

    def _alpha_rows(self) -> list[AlphaRow]:
        """The learners' alpha logs with the part and image name of each entry."""
        return [
            AlphaRow(part, result.records[entry.image].image, entry.image, entry.crop, entry.best_alpha, entry.used_alpha)
            for part, result in self.results.items()
            for entry in result.alpha_log
        ]

    def _write_results(self) -> StreamSummary:
        skipped = {part: result.skipped for part, result in self.results.items()}
        return report.write_results(self.out, self._records(), self._alpha_rows(), skipped, self.model.runtime)

    def _status(self) -> str:
        records = self._records()
        gain = np.mean([r.auxol_dice - r.base_dice for r in records]) if records else 0.0
        return f"mean Dice gain {gain:+.4f}"

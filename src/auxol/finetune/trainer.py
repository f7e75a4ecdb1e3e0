"""The fine-tuning loop: schedule, validation, early stop, atomic checkpoints, resume, DDP.

Outputs in ``OUT`` (written by rank 0 only, each file atomically):

- ``config.json``: the resolved :class:`~auxol.finetune.config.FinetuneConfig`;
- ``log.csv`` (step, epoch, loss, lr, val_dice; val_dice only on validation steps) and
  ``curve.png`` (loss and validation Dice against the step);
- ``state.pt``: the last good training state (trainable tensors, optimiser, scheduler,
  step, epoch, best score, log, RNG), written every ``save_every`` steps and at each
  epoch's end; ``--resume`` continues from it;
- ``peft/``: the best checkpoint's trainable tensors (see :mod:`auxol.finetune.merge`);
- ``merged.pth``: the best checkpoint as a SAM-format state dict (vanilla, LoRA);
- ``summary.json``: parameter counts, best validation Dice with its epoch and step, and
  the final evaluation of the best checkpoint on ``test`` (or ``val``).

Batch-norm statistics (TinyViT) stay frozen in every cell: the encoder's BatchNorm
layers run in eval mode, so the trainable tensors alone describe the fine-tuned model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from rich.console import Console
from torch.nn.parallel import DistributedDataParallel

from auxol.errors import ConfigError
from auxol.finetune.config import FinetuneConfig
from auxol.finetune.data import FinetuneDataset, list_examples
from auxol.finetune.distributed import Distributed, broadcast, device_for, init_distributed
from auxol.evaluate.evaluation import mean_scores
from auxol.finetune.evaluation import evaluate_model, load_evaluation_set
from auxol.finetune.forward import PromptedSegmenter
from auxol.finetune.merge import load_peft, save_merged, save_peft, trainable_state
from auxol.finetune.peft_setup import encoder_trains, parameter_counts, prepare
from auxol.finetune.report import plot_curve
from auxol.io import atomic_open, write_csv, write_json
from auxol.loading import load_model as load_any_model
from auxol.models import PromptableModel, load_model
from auxol.progress import progress
from auxol.seeding import seed_everything

LOG_FIELDS = ["step", "epoch", "loss", "lr", "val_dice"]


def lr_factor(step: int, warmup_steps: int, total_steps: int, power: float = 0.9) -> float:
    """Multiplier of the base lr at ``step`` (0-based): linear 1/200 -> 1 over the warm-up, then (1 - t)^power.

    t is the fraction of the post-warm-up steps done, so the factor reaches 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return 1 / 200 + (1 - 1 / 200) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    return max(1.0 - (step - warmup_steps) / decay_steps, 0.0) ** power


def freeze_batch_norm(model: torch.nn.Module) -> None:
    """Put every BatchNorm of ``model`` in eval mode (running statistics frozen)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


class Trainer:
    """Trains ``model`` (already adapted by :func:`~auxol.finetune.peft_setup.prepare`) as ``config`` says."""

    def __init__(self, model: PromptableModel, config: FinetuneConfig, place: Distributed, console: Console) -> None:
        self.model, self.config, self.place, self.console = model, config, place, console
        self.out = Path(config.out)
        pairs = list_examples(config.train, config.classes, config.empty)
        if config.shots is not None:
            chosen = np.random.default_rng(config.seed).choice(len(pairs), size=min(config.shots, len(pairs)), replace=False)
            pairs = [pairs[i] for i in sorted(chosen)]
        self.dataset = FinetuneDataset(pairs, config.prompt, config.classes, config.augment, config.seed, config.min_size)
        self.val_set = load_evaluation_set(config.val, config.classes) if place.is_main else []
        self.segmenter = PromptedSegmenter(model, encoder_trains(model), config.classes)
        self.network = (
            DistributedDataParallel(self.segmenter, find_unused_parameters=True) if place.enabled else self.segmenter
        )
        parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, betas=(config.beta1, config.beta2))
        self.total_steps = min(config.max_steps or 10**12, config.epochs * self.batches_per_epoch())
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, config.warmup_steps, self.total_steps, config.poly_power)
        )
        self.loss = DiceCELoss(sigmoid=True)  # per map: sigmoid Dice + binary cross-entropy
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best = {"val_dice": -1.0, "epoch": -1, "step": -1}
        self.log: list[dict] = []
        self.step_seconds = 0.0  # time inside train_step, this process, this session

    def batches_per_epoch(self) -> int:
        per_rank = -(-len(self.dataset) // self.place.world_size)
        return -(-per_rank // self.config.batch_size)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``: a seeded shuffle of the items, sharded as DistributedSampler does."""
        sampler = torch.utils.data.DistributedSampler(
            self.dataset, num_replicas=self.place.world_size, rank=self.place.rank, shuffle=True, seed=self.config.seed
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)
        return [indices[i : i + self.config.batch_size] for i in range(0, len(indices), self.config.batch_size)]

    def train_step(self, items: list) -> float:
        """One optimiser step on ``items``; returns the loss (mean over images of Dice + CE)."""
        outputs = self.network(items)
        device = outputs[0].device
        losses = [
            self.loss(logits[:, None], torch.from_numpy(item.targets)[:, None].to(device)) for logits, item in zip(outputs, items)
        ]
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def fit(self) -> None:
        """Train until ``total_steps``, ``epochs`` or early stop; validate and checkpoint along the way."""
        self.model.train()
        freeze_batch_norm(self.model)
        with progress(self.console, disable=not self.place.is_main) as bar:
            task = bar.add_task("finetune", total=self.total_steps, completed=self.step, status="")
            while self.epoch < self.config.epochs and self.step < self.total_steps:
                self.dataset.set_epoch(self.epoch)
                batches = self.epoch_batches(self.epoch)
                loader = torch.utils.data.DataLoader(
                    self.dataset, batch_sampler=batches[self.batch_in_epoch :], collate_fn=list, num_workers=self.config.workers
                )
                for items in loader:
                    started = time.perf_counter()
                    loss = self.train_step(items)
                    self.step_seconds += time.perf_counter() - started
                    self.step += 1
                    self.batch_in_epoch += 1
                    lr = self.scheduler.get_last_lr()[0]
                    self.log.append({"step": self.step, "epoch": self.epoch, "loss": loss, "lr": lr, "val_dice": ""})
                    bar.update(task, completed=self.step, status=f"epoch {self.epoch} loss {loss:.4f} lr {lr:.2e}")
                    if self.step % self.config.save_every == 0:
                        self.save_state()
                    if self.step >= self.total_steps:
                        break
                if self.batch_in_epoch >= len(batches):
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    stop = self.epoch % self.config.val_every == 0 and broadcast(self.validate(bar), self.place)
                    self.save_state()
                    if stop:
                        return
            if self.log and self.log[-1]["val_dice"] == "":  # the last step is always validated
                self.validate(bar)
                self.save_state()

    def validate(self, bar) -> bool:
        """Score the current weights on the validation set (rank 0); keep them if best; True = stop early."""
        if not self.place.is_main:
            return False
        dice = mean_scores(evaluate_model(self.model, self.val_set, self.config.prompt, self.config.classes, self.config.box_margin, self.config.min_size))["dice"]
        self.model.train()
        freeze_batch_norm(self.model)
        self.log[-1]["val_dice"] = dice
        if dice > self.best["val_dice"]:
            self.best = {"val_dice": dice, "epoch": self.epoch, "step": self.step}
            save_peft(self.model, self.out / "peft", self.config.method_config(), self.base_checkpoint())
        bar.console.print(f"step {self.step} epoch {self.epoch}: validation Dice {dice:.4f} (best {self.best['val_dice']:.4f} at step {self.best['step']})")
        write_csv(self.out / "log.csv", self.log, LOG_FIELDS)
        plot_curve(self.log, self.out / "curve.png")
        return self.epoch - self.best["epoch"] >= self.config.patience

    def base_checkpoint(self) -> str | None:
        checkpoint = getattr(self.model, "checkpoint", None)
        return None if checkpoint is None else str(checkpoint)

    def save_state(self) -> None:
        """Write ``state.pt`` atomically (rank 0): everything :meth:`load_state` needs to continue."""
        if not self.place.is_main:
            return
        state = {
            "trainable": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "best": self.best, "log": self.log, "torch_rng": torch.get_rng_state(),
        }
        with atomic_open(self.out / "state.pt", "wb") as handle:
            torch.save(state, handle)
        write_csv(self.out / "log.csv", self.log, LOG_FIELDS)

    def load_state(self) -> None:
        """Continue from ``OUT/state.pt`` (ConfigError if there is none)."""
        path = self.out / "state.pt"
        if not path.is_file():
            raise ConfigError(f"--resume: {path} not found; nothing to resume")
        state = torch.load(path, map_location=self.model.device, weights_only=True)
        self.model.load_state_dict(state["trainable"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best, self.log = state["best"], state["log"]
        torch.set_rng_state(state["torch_rng"])


def final_model(config: FinetuneConfig, out: Path, device: torch.device) -> PromptableModel:
    """The best checkpoint as the user will load it: ``merged.pth`` through load_model, or ``peft/`` for adapters."""
    if (out / "merged.pth").is_file():
        return load_model(config.model, out / "merged.pth", device)
    return load_peft(out / "peft", device)


@dataclass(frozen=True)
class FinetuneSummary:
    """What ``summary.json`` holds about a run.

    Attributes:
        model, method, parts: what was fine-tuned, and how.
        trainable_parameters, total_parameters: numbers of scalar parameters.
        best: the best validation: ``val_dice`` (Dice in [0, 1]), ``epoch`` and ``step``.
        steps: optimiser steps taken; train_seconds: wall time of the training loop (s).
        seconds_per_step: mean step time of this process's steps (s), None if it took none.
        final_evaluation: ``data`` (the test set, else the validation set), ``n`` images
            and the mean ``dice``, ``iou``, ``hd`` and ``hd95`` (px) of the best checkpoint.
    """

    model: str
    method: str
    parts: str
    trainable_parameters: int
    total_parameters: int
    best: dict[str, float]
    steps: int
    train_seconds: float
    seconds_per_step: float | None
    final_evaluation: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_finetune(config: FinetuneConfig, console: Console | None = None) -> FinetuneSummary | None:
    """Run the fine-tuning ``config`` describes; returns the summary on rank 0 (None on other ranks)."""
    console = console or Console()
    place = init_distributed(config.distributed)
    device = device_for(place, config.device)
    seed_everything(config.seed)
    out = Path(config.out)
    model = load_any_model(config.model, config.checkpoint, device)
    method = config.method_config()
    prepare(model, method)
    trainable, total = parameter_counts(model)
    trainer = Trainer(model, config, place, console)
    if config.resume:
        trainer.load_state()
    if place.is_main:
        write_json(out / "config.json", config.to_dict())
        console.print(f"{config.model} {config.method} ({config.parts}): {trainable:,} of {total:,} parameters train")
    started, first_step = time.perf_counter(), trainer.step
    trainer.fit()
    seconds = time.perf_counter() - started
    if not place.is_main:
        return None
    if config.method != "adapter":
        save_merged(load_peft(out / "peft", device), out / "merged.pth")
    rows = evaluate_model(final_model(config, out, device), load_evaluation_set(config.test or config.val, config.classes), config.prompt, config.classes, config.box_margin, config.min_size)
    summary = FinetuneSummary(
        model=config.model, method=config.method, parts=config.parts,
        trainable_parameters=trainable, total_parameters=total,
        best=trainer.best, steps=trainer.step, train_seconds=seconds,
        seconds_per_step=trainer.step_seconds / (trainer.step - first_step) if trainer.step > first_step else None,
        final_evaluation={"data": config.test or config.val, **mean_scores(rows)},
    )
    write_csv(out / "final_evaluation.csv", rows)
    write_json(out / "summary.json", summary.to_dict())
    plot_curve(trainer.log, out / "curve.png")
    return summary

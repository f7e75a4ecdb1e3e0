"""The study's grid on LiteMedSAM at a CPU-sized budget: {decoder, encoder+decoder} x {vanilla, LoRA, adapter}.

Split (deterministic): the first ``--train-count`` pairs of DATA by sorted name train,
of which the last ``--val-count`` validate; the first ``--test-count`` of the remaining
pairs are the test set. Each cell runs ``auxol finetune``'s trainer in its own process
(so peak memory is per cell) and prints: trainable parameters, seconds per training
step, peak memory (CUDA max allocated on a GPU, else the process's peak RSS) and test
Dice (box prompts, scored as ``auxol evaluate`` scores them). A first row gives the
zero-shot model's test Dice on the same images.

    python benchmarks/finetune_grid.py --data /work/shared/data/ddti-thyroid-us --json grid.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CELLS = [(parts, method) for parts in ("decoder", "encoder,decoder") for method in ("vanilla", "lora", "adapter")]


def write_lists(data: str, folder: Path, train_count: int, val_count: int, test_count: int) -> tuple[Path, Path, Path]:
    """CSV lists train.csv, val.csv, test.csv in ``folder`` from DATA's pairs in dataset order."""
    from auxol.data import load_dataset
    from auxol.io import write_csv

    pairs = [pair for listing in load_dataset(data) for pair in listing.pairs]
    chosen = {
        "train": pairs[: train_count - val_count],
        "val": pairs[train_count - val_count : train_count],
        "test": pairs[train_count : train_count + test_count],
    }
    for name, subset in chosen.items():
        write_csv(folder / f"{name}.csv", [{"image_path": p.image_path.resolve(), "mask_path": p.mask_path.resolve()} for p in subset])
    return folder / "train.csv", folder / "val.csv", folder / "test.csv"


def run_cell(arguments: argparse.Namespace) -> dict:
    """Train and evaluate one cell in this process; returns its figures."""
    from rich.console import Console

    from auxol.finetune.config import FinetuneConfig
    from auxol.finetune.trainer import run_finetune

    torch.set_num_threads(arguments.threads)
    config = FinetuneConfig(
        train=arguments.train, val=arguments.val, test=arguments.test, out=arguments.out, model="litemedsam",
        method=arguments.method, parts=arguments.parts, prompt="box", max_steps=arguments.max_steps,
        batch_size=arguments.batch_size, warmup_steps=min(200, arguments.max_steps // 4), val_every=10**6,
    )
    summary = run_finetune(config, Console(stderr=True))
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {
        "parts": arguments.parts, "method": arguments.method,
        "trainable_parameters": summary.trainable_parameters, "total_parameters": summary.total_parameters,
        "seconds_per_step": summary.seconds_per_step, "peak_memory_mib": peak,
        "test_dice": summary.final_evaluation["dice"], "test_images": summary.final_evaluation["n"],
    }


def zero_shot_dice(test: Path) -> float:
    """Mean test Dice of the embedded LiteMedSAM, untrained, by the rules of the cells' final evaluation."""
    from auxol.evaluate.evaluation import mean_scores
    from auxol.finetune.evaluation import evaluate_model, load_evaluation_set
    from auxol.models import load_model

    rows = evaluate_model(load_model("litemedsam"), load_evaluation_set(str(test), 1), "box", 1)
    return mean_scores(rows)["dice"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder (images/, masks/) or CSV list")
    parser.add_argument("--json", required=True, type=Path, help="where to write the figures")
    parser.add_argument("--train-count", type=int, default=80)
    parser.add_argument("--val-count", type=int, default=8)
    parser.add_argument("--test-count", type=int, default=40)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cell", nargs=2, metavar=("PARTS", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--val", help=argparse.SUPPRESS)
    parser.add_argument("--test", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.cell:
        arguments.parts, arguments.method = arguments.cell
        arguments.json.write_text(json.dumps(run_cell(arguments)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        train, val, test = write_lists(arguments.data, scratch, arguments.train_count, arguments.val_count, arguments.test_count)
        print(f"{'parts':16} {'method':8} {'trainable':>10} {'s/step':>7} {'peak MiB':>9} {'test Dice':>9}", flush=True)
        zero_shot = zero_shot_dice(test)
        print(f"{'-':16} {'zero-shot':8} {0:>10,} {'-':>7} {'-':>9} {zero_shot:>9.4f}", flush=True)
        for parts, method in CELLS:
            cell_json = scratch / f"{method}_{parts}.json"
            subprocess.run(
                [sys.executable, __file__, "--data", arguments.data, "--json", str(cell_json), "--cell", parts, method,
                 "--train", str(train), "--val", str(val), "--test", str(test), "--out", str(scratch / f"{method}_{parts}"),
                 "--max-steps", str(arguments.max_steps), "--batch-size", str(arguments.batch_size), "--threads", str(arguments.threads)],
                check=True,
            )
            row = json.loads(cell_json.read_text())
            rows.append(row)
            print(f"{parts:16} {method:8} {row['trainable_parameters']:>10,} {row['seconds_per_step']:>7.2f} "
                  f"{row['peak_memory_mib']:>9.0f} {row['test_dice']:>9.4f}", flush=True)
    arguments.json.write_text(json.dumps({"settings": {k: v for k, v in vars(arguments).items() if k != "json"} | {"json": str(arguments.json)}, "zero_shot_test_dice": zero_shot, "cells": rows}, indent=2))


if __name__ == "__main__":
    main()

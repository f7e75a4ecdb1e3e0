"""Seconds per image of each foundation model, in PyTorch and through the inference runtimes, same images, same process.

    python benchmarks/model_speed.py /work/shared/data/ddti-thyroid-us --limit 20 [--json OUT.json]
        [--models litemedsam,mobilesam] [--runtimes openvino,onnx] [--random-weights]

Every model whose weights are present is measured (``--random-weights`` also times the
others with random weights: speed depends on the architecture only). Each image gets two
box prompts from its mask (the second is the first widened by 10%). Per image, PyTorch
and every runtime run one after the other on the same input, so a machine whose load
changes during the run slows them alike; the figures are means over the images after one
warm-up image. Stages: preprocessing (resize, normalise), embedding (image encoder), the
first prompt (prompt encoder + mask decoder + logits back to the image size) and a second
prompt on the same embedding (what a person waits for after each click). ``x torch`` is
PyTorch's time over the runtime's; ``mask Dice`` is the mean Dice between the runtime's
and PyTorch's masks of the first prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from auxol.data import load_dataset, load_pair
from auxol.evaluate.metrics import dice
from auxol.models import MODELS, Embedding, PromptableModel, build_model, default_checkpoint, load_model
from auxol.models.runtime import cached_graphs
from auxol.prompts import Prompt, prompts_from_mask, widen_box

STAGES = ("preprocess", "embed", "first_prompt", "second_prompt")


def time_one_image(model: PromptableModel, image: np.ndarray, prompts: tuple[Prompt, Prompt]) -> tuple[dict[str, float], np.ndarray]:
    """Seconds of each stage for one image, and the first prompt's mask, with ``model``'s current runtime."""
    encode = model.image_encoder if model.graphs is None else model.graphs.encode
    start = time.perf_counter()
    tensor = model.preprocess(image)
    prepared = time.perf_counter()
    with torch.no_grad():
        features = encode(tensor[None])
    embedded = time.perf_counter()
    embedding = Embedding(features, tuple(image.shape[:2]))
    logits = model.segment(embedding, prompts[0])
    decoded_first = time.perf_counter()
    model.segment(embedding, prompts[1])
    decoded_second = time.perf_counter()
    seconds = dict(zip(STAGES, (prepared - start, embedded - prepared, decoded_first - embedded, decoded_second - decoded_first)))
    return seconds, logits > 0


def time_model(model: PromptableModel, runtimes: list[str], samples: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict]:
    """Per runtime (``torch`` first): mean seconds per stage, and mean mask Dice against PyTorch."""
    graphs = {"torch": None, **{name: cached_graphs(model, name) for name in runtimes}}
    seconds = {name: {stage: [] for stage in STAGES} for name in graphs}
    agreement = {name: [] for name in graphs}
    for index, (image, mask) in enumerate([samples[0], *samples]):
        first = prompts_from_mask(mask, "box")[0]
        prompts = (first, Prompt.from_box(widen_box(first.box, 0.1, *mask.shape)))
        masks = {}
        for name, compiled in graphs.items():
            model.graphs = compiled
            stage_seconds, masks[name] = time_one_image(model, image, prompts)
            if index > 0:  # image 0 is the warm-up
                for stage, value in stage_seconds.items():
                    seconds[name][stage].append(value)
                agreement[name].append(dice(masks[name], masks["torch"]))
    model.graphs = None
    results = {}
    for name in graphs:
        means = {stage: float(np.mean(values)) for stage, values in seconds[name].items()}
        means["image_total"] = means["preprocess"] + means["embed"] + means["first_prompt"]
        means["mask_dice_vs_torch"] = float(np.mean(agreement[name]))
        results[name] = means
    for name in runtimes:
        for stage in ("embed", "second_prompt", "image_total"):
            results[name][f"{stage}_speedup"] = results["torch"][stage] / results[name][stage]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="dataset folder (images/ + masks/) or CSV list")
    parser.add_argument("--limit", type=int, default=20, help="images to time per model")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    parser.add_argument("--runtimes", default="openvino,onnx", help="comma-separated runtimes to compare with torch")
    parser.add_argument("--random-weights", action="store_true", help="also time models whose weights are missing")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    listing = load_dataset(args.data)[0]
    samples = [load_pair(pair) for pair in listing.pairs[: args.limit]]
    runtimes = [name for name in args.runtimes.split(",") if name]
    load = os.getloadavg()
    results = {}
    for name in args.models.split(","):
        if default_checkpoint(name) is not None:
            model, weights = load_model(name, device="cpu"), "official"
        elif args.random_weights:
            model, weights = build_model(name).eval().requires_grad_(False), "random"
        else:
            continue
        results[name] = {"weights": weights, "runtimes": time_model(model, runtimes, samples)}
    title = (
        f"seconds per image on {args.data} ({len(samples)} images, {torch.get_num_threads()} threads, "
        f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end)"
    )
    table = Table(title=title)
    columns = ("model", "weights", "runtime", "preprocess", "embed", "1st prompt", "image total", "2nd prompt",
               "embed x torch", "2nd x torch", "total x torch", "mask Dice")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "weights", "runtime") else "right")
    for name, result in results.items():
        for runtime, r in result["runtimes"].items():
            ratios = ["", "", ""] if runtime == "torch" else [
                f"{r['embed_speedup']:.2f}", f"{r['second_prompt_speedup']:.2f}", f"{r['image_total_speedup']:.2f}"
            ]
            table.add_row(
                name, result["weights"], runtime, f"{r['preprocess']:.3f}", f"{r['embed']:.3f}", f"{r['first_prompt']:.3f}",
                f"{r['image_total']:.3f}", f"{r['second_prompt']:.3f}", *ratios, f"{r['mask_dice_vs_torch']:.4f}",
            )
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps({"load_average": [load[0], os.getloadavg()[0]], "models": results}, indent=2))


if __name__ == "__main__":
    main()

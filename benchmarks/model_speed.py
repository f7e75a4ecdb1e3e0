"""Seconds per image of each foundation model, split into preprocessing, embedding and decoding.

    python benchmarks/model_speed.py ../shared/data/ddti-thyroid-us --limit 10 [--json OUT.json]
        [--models litemedsam,mobilesam] [--random-weights]

Every model whose weights are present is measured (``--random-weights`` also times the
others with random weights: speed depends on the architecture only). Each image gets two
box prompts from its mask (the second is the first widened by 10%); the second prompt on
an embedded image costs only the decoder, which must stay under 15% of the first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from auxol.data import load_dataset, load_pair
from auxol.models import MODELS, Embedding, build_model, default_checkpoint, load_model
from auxol.prompts import Prompt, prompts_from_mask, widen_box


def time_model(model, samples: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean seconds per image of each stage, after one warm-up image."""
    stages = {"preprocess": [], "embed": [], "first_prompt": [], "second_prompt": []}
    for index, (image, mask) in enumerate([samples[0], *samples]):
        first = prompts_from_mask(mask, "box")[0]
        second = Prompt.from_box(widen_box(first.box, 0.1, *mask.shape))
        start = time.perf_counter()
        tensor = model.preprocess(image)
        prepared = time.perf_counter()
        with torch.no_grad():
            features = model.image_encoder(tensor[None])
        embedded = time.perf_counter()
        embedding = Embedding(features, tuple(image.shape[:2]))
        model.segment(embedding, first)
        decoded_first = time.perf_counter()
        model.segment(embedding, second)
        decoded_second = time.perf_counter()
        if index == 0:
            continue  # warm-up
        stages["preprocess"].append(prepared - start)
        stages["embed"].append(embedded - prepared)
        stages["first_prompt"].append(decoded_first - embedded)
        stages["second_prompt"].append(decoded_second - decoded_first)
    means = {name: float(np.mean(values)) for name, values in stages.items()}
    means["image_total"] = means["preprocess"] + means["embed"] + means["first_prompt"]
    means["second_over_first"] = means["second_prompt"] / means["image_total"]
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="dataset folder (images/ + masks/) or CSV list")
    parser.add_argument("--limit", type=int, default=10, help="images to time per model")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    parser.add_argument("--random-weights", action="store_true", help="also time models whose weights are missing")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    listing = load_dataset(args.data)[0]
    samples = [load_pair(pair) for pair in listing.pairs[: args.limit]]
    results = {}
    for name in args.models.split(","):
        if default_checkpoint(name) is not None:
            model, weights = load_model(name, device="cpu"), "official"
        elif args.random_weights:
            model, weights = build_model(name).eval().requires_grad_(False), "random"
        else:
            continue
        results[name] = {"weights": weights, **time_model(model, samples)}
    table = Table(title=f"seconds per image on {args.data} ({len(samples)} images, {torch.get_num_threads()} threads)")
    for column in ("model", "weights", "preprocess", "embed", "1st prompt", "image total", "2nd prompt", "2nd / total"):
        table.add_column(column, justify="left" if column in ("model", "weights") else "right")
    for name, r in results.items():
        table.add_row(
            name, r["weights"], f"{r['preprocess']:.3f}", f"{r['embed']:.3f}", f"{r['first_prompt']:.3f}",
            f"{r['image_total']:.3f}", f"{r['second_prompt']:.3f}", f"{r['second_over_first']:.1%}",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Speed and Dice of AuxOL presets on one stream, against the foundation model's own cost.

Runs the prequential stream (:func:`auxol.stream.stream_part`, tight box prompts,
every image rectified) of the first ``--limit`` images of ``--data`` once per preset. The
foundation model (LiteMedSAM) embeds and decodes each image once; later presets replay
its logits from memory, so every preset sees the same base predictions. Writes::

    {"default_preset": NAME, "model": ..., "data": ..., "images": N,
     "presets": {NAME: {"base_s_per_img", "predict_overhead_s_per_img", "learn_s_per_img",
                        "base_dice", "auxol_dice"}}}

``base_s_per_img`` is LiteMedSAM's image encoder plus prompt decoding,
``predict_overhead_s_per_img`` AuxOL's prediction on top of it (auxiliary network and
fusion), ``learn_s_per_img`` the learning step; Dice is the mean over the images.

    python benchmarks/auxol_speed.py --data /work/shared/data/ddti-thyroid-us --json speed.json --limit 20
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from auxol.data import load_dataset, valid_pairs
from auxol.io import write_json
from auxol.models import Embedding, PromptableModel, load_model
from auxol.online import DEFAULT_PRESET, PRESETS, AuxOL, AuxOLConfig
from auxol.progress import progress
from auxol.prompts import Prompt
from auxol.stream import StreamOptions, stream_part


class CachedModel:
    """A foundation model that computes each image's logits once and replays them afterwards.

    ``embed`` returns the image's key (a digest of its pixels) instead of an embedding;
    ``segment_many`` embeds and decodes on the first request for (image, prompts) and
    records the seconds that took in :attr:`base_seconds`.
    """

    def __init__(self, model: PromptableModel) -> None:
        self.model = model
        self.device = model.device
        self.images: dict[str, np.ndarray] = {}
        self.embeddings: dict[str, Embedding] = {}
        self.logits: dict[tuple[str, tuple[Prompt, ...]], np.ndarray] = {}
        self.base_seconds: dict[str, float] = {}

    def embed(self, image: np.ndarray) -> str:
        key = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()
        self.images.setdefault(key, image)
        return key

    def segment_many(self, key: str, prompts: list[Prompt]) -> np.ndarray:
        cache_key = (key, tuple(prompts))
        if cache_key not in self.logits:
            began = time.perf_counter()
            if key not in self.embeddings:
                self.embeddings[key] = self.model.embed(self.images[key])
            self.logits[cache_key] = self.model.segment_many(self.embeddings[key], prompts)
            self.base_seconds[key] = self.base_seconds.get(key, 0.0) + time.perf_counter() - began
        return self.logits[cache_key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset (a part, a tree of parts or a CSV list); its first part is used")
    parser.add_argument("--json", required=True, type=Path, help="where to write the figures")
    parser.add_argument("--limit", type=int, default=None, help="stream only the first N images")
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated AuxOL presets (default: {','.join(PRESETS)})")
    args = parser.parse_args()
    presets = args.presets.split(",")
    for name in presets:
        AuxOLConfig.preset(name)  # fail early on a typo

    console = Console()
    listing = load_dataset(args.data)[0]
    skipped: list[str] = []
    images = [(pair.stem, image, truth) for pair, image, truth in valid_pairs(listing, skipped)][: args.limit]
    model = CachedModel(load_model())
    figures = {}
    with progress(console) as bar:
        for name in presets:
            task = bar.add_task(name, total=len(images), status="")
            records = []
            learner = AuxOL(model, AuxOLConfig.preset(name))
            rng = np.random.default_rng(learner.config.seed)
            for step in stream_part(model, learner, images, StreamOptions(), rng, listing.name):
                records.append(step.record)
                bar.update(task, advance=1, status=f"Dice {np.mean([r.base_dice for r in records]):.4f} -> {np.mean([r.auxol_dice for r in records]):.4f}")
            figures[name] = {
                "base_s_per_img": float(np.mean(list(model.base_seconds.values()))),
                "predict_overhead_s_per_img": float(np.mean([r.predict_seconds for r in records])),
                "learn_s_per_img": float(np.mean([r.learn_seconds for r in records])),
                "base_dice": float(np.mean([r.base_dice for r in records])),
                "auxol_dice": float(np.mean([r.auxol_dice for r in records])),
            }
    write_json(args.json, {
        "default_preset": DEFAULT_PRESET, "model": model.model.name, "data": str(args.data), "part": listing.name,
        "images": len(images), "torch_threads": torch.get_num_threads(), "presets": figures,
    })

    table = Table(title=f"AuxOL seconds per image: {len(images)} images of {args.data}, {model.model.name}, box prompts")
    for column in ("preset", "base s", "overhead s", "learn s", "overhead/base", "learn/base", "base Dice", "AuxOL Dice"):
        table.add_column(column, justify="left" if column == "preset" else "right")
    for name, row in figures.items():
        base = row["base_s_per_img"]
        table.add_row(
            name + (" (default)" if name == DEFAULT_PRESET else ""), f"{base:.3f}", f"{row['predict_overhead_s_per_img']:.3f}",
            f"{row['learn_s_per_img']:.3f}", f"{row['predict_overhead_s_per_img'] / base:.2f}", f"{row['learn_s_per_img'] / base:.2f}",
            f"{row['base_dice']:.4f}", f"{row['auxol_dice']:.4f}",
        )
    console.print(table)
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

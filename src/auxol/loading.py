"""Loading a foundation model from any weights a user may name: a weights file, or an ``auxol finetune`` run.

This sits above :mod:`auxol.models` (architectures and SAM-format weights, which import
no training code) and :mod:`auxol.finetune` (which knows how a run saved its PEFT
weights), so neither imports the other to load a run folder. ``auxol.finetune.merge`` is
imported only when a folder is given, as it pulls in ``peft``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from auxol import models
from auxol.models import DEFAULT_MODEL, PromptableModel
from auxol.models.runtime import use_runtime


def load_model(
    name: str = DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    runtime: str = "torch",
) -> PromptableModel:
    """Model ``name``, frozen, in eval mode, on ``device`` (default: CUDA if available, else CPU).

    ``checkpoint``: a SAM-format weights file (official weights, or ``merged.pth`` from
    ``auxol finetune``, see :func:`auxol.models.load_model`); an ``auxol finetune`` output
    folder (``OUT`` or ``OUT/peft``; needed for adapter models, which cannot be merged,
    see :func:`auxol.finetune.merge.load_run`); or None for the embedded or fetched
    official weights.

    ``runtime``: what runs the frozen encoder and decoder (:func:`auxol.models.runtime.use_runtime`):
    ``torch``, ``openvino``, ``onnx``, or ``auto`` (a runtime on a CPU, PyTorch on a GPU).
    A fine-tuned run's LoRA or adapters are exported with the rest of the model.
    """
    if checkpoint is not None and Path(checkpoint).is_dir():
        from auxol.finetune.merge import load_run

        model = load_run(name, checkpoint, device)
    else:
        model = models.load_model(name, checkpoint, device)
    return use_runtime(model, runtime)

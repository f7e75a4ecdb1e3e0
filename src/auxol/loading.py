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


def load_model(
    name: str = DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> PromptableModel:
    """Model ``name``, frozen, in eval mode, on ``device`` (default: CUDA if available, else CPU).

    ``checkpoint``: a SAM-format weights file (official weights, or ``merged.pth`` from
    ``auxol finetune``, see :func:`auxol.models.load_model`); an ``auxol finetune`` output
    folder (``OUT`` or ``OUT/peft``; needed for adapter models, which cannot be merged,
    see :func:`auxol.finetune.merge.load_run`); or None for the embedded or fetched
    official weights.
    """
    if checkpoint is not None and Path(checkpoint).is_dir():
        from auxol.finetune.merge import load_run

        return load_run(name, checkpoint, device)
    return models.load_model(name, checkpoint, device)

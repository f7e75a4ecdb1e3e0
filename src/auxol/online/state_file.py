"""Learner state files: a learner's whole state on disk, with the process-wide random state.

A state file is one ``torch.save`` of a dict of tensors, lists and numbers (loadable
with ``weights_only=True``), written atomically so an interrupted save leaves the
previous file intact.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from auxol.errors import DataError
from auxol.io import atomic_open

STATE_FORMAT = 1


def global_rng_state() -> dict[str, Any]:
    """The global Python, NumPy and PyTorch (CPU) generator states, as plain lists and tensors."""
    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, key.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`global_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())


def write_state_file(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save ``state`` (a learner's ``state_dict``) to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        torch.save({"format": STATE_FORMAT, **state}, handle)


def read_state_file(path: str | os.PathLike, device: torch.device) -> dict[str, Any]:
    """Load a state written by :func:`write_state_file`, tensors moved to ``device``."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: learner state file not found") from None
    except Exception as exc:  # torch raises many kinds for a file that is not its own
        raise DataError(f"{path}: not an AuxOL learner state file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DataError(f"{path}: not an AuxOL learner state file of format {STATE_FORMAT}")
    return state

"""auxol: make Segment Anything and its medical variants segment medical images well.

The Python API in one place::

    import auxol
    model = auxol.load_model("litemedsam")             # embedded weights, frozen
    embedding = model.embed(image)                      # uint8 (H, W, 3)
    logits = model.segment(embedding, auxol.Prompt.from_box((x1, y1, x2, y2)))  # (H, W)
    learner = auxol.AuxOL(model, auxol.AuxOLConfig.preset("cpu"))             # online learning

Heavy modules are imported on first use, so ``import auxol`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_model": "auxol.loading",
    "Prompt": "auxol.prompts",
    "AuxOL": "auxol.online",
    "AuxOLConfig": "auxol.online",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'auxol' has no attribute {name!r}")

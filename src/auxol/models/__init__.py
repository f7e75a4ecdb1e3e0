"""Frozen promptable foundation models (LiteMedSAM, SAM, MedSAM, MobileSAM)."""

from auxol.models.promptable import Embedding, PromptableModel
from auxol.models.registry import DEFAULT_MODEL, MODELS, build_model, default_checkpoint, load_model

__all__ = ["DEFAULT_MODEL", "MODELS", "Embedding", "PromptableModel", "build_model", "default_checkpoint", "load_model"]

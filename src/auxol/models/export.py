"""Export a model's frozen parts to ONNX: the image encoder, and the mask decoder.

Two graphs per model, both float32:

============  ==========================================  ==============================
graph         inputs                                      output
============  ==========================================  ==============================
encoder       ``image`` (1, 3, S, S), the preprocessed    ``features`` (1, 256, 64, 64)
              input of :meth:`PromptableModel.preprocess`
decoder       ``features`` (1, 256, 64, 64), ``sparse``   ``low_res`` (N, 1, 256, 256),
              (N, k, 256) and ``dense`` (N, 256, 64, 64)  the logits of
              from :meth:`PromptableModel.encode_prompts`  :meth:`PromptableModel.decode`
============  ==========================================  ==============================

N (prompts) and k (prompt tokens) are dynamic. The prompt encoder stays in PyTorch (a few
microseconds); the decoder graph holds the mask decoder and the dense positional encoding.
The graphs come from ``torch.onnx.export`` (TorchScript tracer, opset 17), which keeps
every operator of SAM's ViT and TinyViT as the model computes it. The decoder is traced
as :class:`auxol.models.folded_decoder.FoldedDecoder` (the same function, ~1.7x faster)
where its cross-attentions are SAM's plain ones, else as the library's forward.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn

from auxol.models.folded_decoder import FoldedDecoder, can_fold
from auxol.models.promptable import PromptableModel
from auxol.prompts import Prompt

OPSET = 17
EXPORT_VERSION = 2
"""Bumped when the graphs change for the same weights, so older cached graphs are rebuilt."""


class _LibraryDecoder(nn.Module):
    """The mask decoder as one function of (features, sparse, dense), for tracing: segment-anything's forward."""

    def __init__(self, model: PromptableModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.model.decode(features, sparse, dense)


def weights_digest(model: PromptableModel) -> str:
    """sha256 (hex) of the model's name, input size, export version and every tensor of its state dict.

    Two models get the same digest only if their graphs would be identical, whatever file
    (or ``auxol finetune`` folder) their weights came from.
    """
    digest = hashlib.sha256(f"{model.name}|{model.input_size}|{EXPORT_VERSION}|{OPSET}".encode())
    for key, value in sorted(model.state_dict().items()):
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def export_onnx(model: PromptableModel, encoder_path: Path, decoder_path: Path) -> None:
    """Write ``model``'s encoder and decoder graphs (see the module docstring) to the two paths.

    The model is traced on its device, without gradients. Models over 2 GB (SAM ViT-H)
    get their weights in files beside the graph.
    """
    size = model.input_size
    image = torch.zeros(1, 3, size, size, device=model.device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        features = model.image_encoder(image)
        torch.onnx.export(
            model.image_encoder, (image,), str(encoder_path), opset_version=OPSET, dynamo=False,
            input_names=["image"], output_names=["features"],
        )
        sparse, dense = model.encode_prompts([Prompt.from_box((0, 0, size // 2, size // 2))], (size, size))
        decoder = FoldedDecoder(model) if can_fold(model) else _LibraryDecoder(model)
        torch.onnx.export(
            decoder, (features, sparse, dense), str(decoder_path), opset_version=OPSET, dynamo=False,
            input_names=["features", "sparse", "dense"], output_names=["low_res"],
            dynamic_axes={"sparse": {0: "prompts", 1: "tokens"}, "dense": {0: "prompts"}, "low_res": {0: "prompts"}},
        )

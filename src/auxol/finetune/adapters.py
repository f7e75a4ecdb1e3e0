"""Bottleneck adapters placed as in the SAM fine-tuning study, by wrapping existing modules.

An :class:`Adapter` is Linear(D -> D/4), GELU, Linear(D/4 -> D) on the last dimension.
Its up-projection starts at zero, so an adapted model starts equal to its base.

- Chosen image-encoder blocks: the attention is wrapped by :class:`AdapterAfter` (its
  output ``a`` becomes ``a + adapter(a)``) and the MLP by :class:`AdapterParallel`
  (``mlp(x) + 0.5 * adapter(x)``). In SAM ViT the MLP's input is the normalised residual
  stream; TinyViT's Mlp normalises inside, so its adapter sees the un-normalised stream.
- Both two-way blocks of the mask decoder: the token-to-image cross-attention is wrapped
  by :class:`AdapterAfter` and the MLP by :class:`AdapterParallel`.

Wrapping moves the wrapped module's parameters under ``.module`` (``blocks.0.attn.qkv``
becomes ``blocks.0.attn.module.qkv``). An adapter is non-linear, so it cannot be folded
into SAM weights: an adapted model is saved as its adapters plus the base checkpoint
(see :mod:`auxol.finetune.merge`).
"""

from __future__ import annotations

import torch
from torch import nn

from auxol.finetune.blocks import select_blocks


class Adapter(nn.Module):
    """Linear(dim -> dim // 4), GELU, Linear(dim // 4 -> dim) on the last axis of (..., dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, dim // 4)
        self.act = nn.GELU()
        self.up = nn.Linear(dim // 4, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class AdapterAfter(nn.Module):
    """``module`` followed by an adapter with a skip connection: a = module(...); a + adapter(a)."""

    def __init__(self, module: nn.Module, dim: int) -> None:
        super().__init__()
        self.module = module
        self.adapter = Adapter(dim)

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        out = self.module(*args, **kwargs)
        return out + self.adapter(out)


class AdapterParallel(nn.Module):
    """``module`` with a scaled adapter in parallel: module(x) + scale * adapter(x)."""

    def __init__(self, module: nn.Module, dim: int, scale: float = 0.5) -> None:
        super().__init__()
        self.module = module
        self.adapter = Adapter(dim)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) + self.scale * self.adapter(x)


def _block_dim(block: nn.Module) -> int:
    return block.dim if hasattr(block, "dim") else block.attn.qkv.in_features


def add_adapters(model: nn.Module, encoder_blocks: list[int] | None, encoder: bool) -> None:
    """Wrap ``model``'s decoder blocks, and with ``encoder`` its chosen encoder blocks, with adapters (in place).

    ``encoder_blocks``: indices as in :func:`auxol.finetune.blocks.select_blocks`.
    """
    for layer in model.mask_decoder.transformer.layers:
        dim = layer.cross_attn_token_to_image.out_proj.out_features
        layer.cross_attn_token_to_image = AdapterAfter(layer.cross_attn_token_to_image, dim)
        layer.mlp = AdapterParallel(layer.mlp, dim)
    if encoder:
        for _, block in select_blocks(model.image_encoder, encoder_blocks):
            dim = _block_dim(block)
            block.attn = AdapterAfter(block.attn, dim)
            block.mlp = AdapterParallel(block.mlp, dim)


"""LoRA on SAM-family attention, through ``peft``.

peft adapts whole ``nn.Linear`` modules chosen by name. SAM's mask decoder has separate
``q_proj``/``k_proj``/``v_proj`` Linears, which peft targets directly. The image encoders
(SAM ViT and TinyViT) compute q, k and v with one fused ``qkv`` Linear; to put LoRA on the
q and v slices only, as the study does, :class:`SplitQKV` replaces the fused Linear by
three Linears ``q``, ``k`` and ``v`` holding the same rows, and puts their outputs back in
the fused order. peft then targets ``...attn.qkv.q`` and ``...attn.qkv.v``. After
training, :func:`merge_lora` folds every LoRA product into its base weight and
:func:`fuse_qkv` re-assembles each fused Linear, giving the backbone's own SAM format.

Defaults follow the published code: rank 4, alpha 4 (scaling alpha / rank = 1, i.e. no
scaling), no dropout; A Kaiming-uniform, B zero (peft's default initialisation), so an
adapted model starts equal to its base.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from auxol.finetune.blocks import select_blocks
from auxol.finetune.config import LoraSettings


def qkv_rows(attention: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Output rows of ``attention.qkv`` that hold q, k and v (each a 1-D index tensor).

    SAM ViT lays the fused output out as [q | k | v]; TinyViT interleaves it per head as
    [q_h | k_h | v_h] for h = 0 .. heads-1, with key_dim rows for q and k and d rows for v.
    """
    if hasattr(attention, "key_dim"):  # TinyViT
        key_dim, value_dim = attention.key_dim, attention.d
        head = torch.arange(attention.num_heads)[:, None] * (2 * key_dim + value_dim)
        q = (head + torch.arange(key_dim)).flatten()
        k = (head + key_dim + torch.arange(key_dim)).flatten()
        v = (head + 2 * key_dim + torch.arange(value_dim)).flatten()
        return q, k, v
    dim = attention.qkv.out_features // 3
    return torch.arange(dim), torch.arange(dim, 2 * dim), torch.arange(2 * dim, 3 * dim)


def _rows_of(linear: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    part = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None)
    part.weight.data.copy_(linear.weight.data[rows])
    if linear.bias is not None:
        part.bias.data.copy_(linear.bias.data[rows])
    return part.to(linear.weight.device, linear.weight.dtype)


class SplitQKV(nn.Module):
    """A fused qkv Linear as three Linears ``q``, ``k``, ``v``; same input and output as the fused one.

    Args:
        qkv: the fused Linear (in -> 3-part out).
        rows: which of its output rows belong to q, k and v (see :func:`qkv_rows`).
    """

    def __init__(self, qkv: nn.Linear, rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.q, self.k, self.v = (_rows_of(qkv, part) for part in rows)
        self.register_buffer("order", torch.argsort(torch.cat(rows)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out) in the fused Linear's row order."""
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)[..., self.order]

    def fused(self) -> nn.Linear:
        """The equivalent fused Linear (with any merged LoRA update)."""
        parts = (self.q, self.k, self.v)
        fused = nn.Linear(self.q.in_features, len(self.order), bias=self.q.bias is not None)
        fused.weight.data.copy_(torch.cat([p.weight.data for p in parts])[self.order])
        if self.q.bias is not None:
            fused.bias.data.copy_(torch.cat([p.bias.data for p in parts])[self.order])
        return fused.to(self.q.weight.device, self.q.weight.dtype)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def lora_target_names(model: nn.Module, settings: LoraSettings, encoder: bool) -> list[str]:
    """Full names of the Linears LoRA adapts; splits the chosen encoder blocks' qkv on the way.

    ``model`` has ``image_encoder`` and ``mask_decoder``; with ``encoder`` False only the
    mask decoder's attentions are adapted.
    """
    names = [
        f"mask_decoder.{name}"
        for name, module in model.mask_decoder.named_modules()
        if isinstance(module, nn.Linear) and name.rpartition(".")[2] in settings.decoder_targets
    ]
    if encoder:
        blocks = None if settings.encoder_blocks is None else list(settings.encoder_blocks)
        for block_name, block in select_blocks(model.image_encoder, blocks):
            if not isinstance(block.attn.qkv, SplitQKV):
                block.attn.qkv = SplitQKV(block.attn.qkv, qkv_rows(block.attn))
            names += [f"image_encoder.{block_name}.attn.qkv.{part}" for part in settings.encoder_targets]
    return names


def add_lora(model: nn.Module, settings: LoraSettings, encoder: bool) -> list[str]:
    """Inject LoRA into ``model`` in place (see :func:`lora_target_names`); returns the adapted names."""
    names = lora_target_names(model, settings, encoder)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=names)
    inject_adapter_in_model(config, model)
    return names


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its base Linear, drop the LoRA layers, and re-fuse split qkv Linears (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            _replace(model, name, module.get_base_layer())
    fuse_qkv(model)


def fuse_qkv(model: nn.Module) -> None:
    """Replace every :class:`SplitQKV` of ``model`` by its fused Linear (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, SplitQKV):
            _replace(model, name, module.fused())

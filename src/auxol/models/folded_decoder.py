"""SAM's mask decoder for the inference graphs: the same function with ~45% fewer FLOPs.

Each cross-attention of SAM's two-way transformer projects all h*w = 4096 image tokens
(256 channels) to 128-channel queries, keys or values, then attends between them and
only T ~ 7 prompt tokens (5 output tokens and the box corners or points). The image-side
projections cost 4096 x 256 x 128 multiply-adds each, ten times per decode. They fold into
the few prompt tokens instead, by linear algebra on segment-anything's own weights:

- scores: ``(x Wk^T + bk) . q = x . (Wk^T q) + bk . q`` per head, so each head's prompt
  query is mapped into the 256-channel image space once (T x 256 values) and scored
  against the image tokens directly (``bk . q`` is the same for every image token, so
  the softmax over them drops it);
- values: softmax weights sum to one, so ``sum_n a_n (x_n Wv^T + bv) = (sum_n a_n x_n) Wv^T
  + bv``: the image tokens are pooled first and projected after (T rows, not 4096);
- image-to-token attention: the output projection folds into the T prompt values.

With multimask output off (as :meth:`PromptableModel.decode`), only the first mask
token's map is computed. The decode is 3.6 -> 2.0 GFLOP for LiteMedSAM (torch's
``FlopCounterMode``); in OpenVINO on a 2-core AVX-512 CPU its graph runs in ~24 ms
against ~41 ms for the traced library decoder, with logits within 2e-5 of it (logits
span about +-25).

segment-anything has no such form, hence this module. It holds no weights: it reads the
model's (plain ``nn.Linear``) attention projections at trace time, and
:func:`can_fold` sends any decoder whose cross-attentions are wrapped (adapters, LoRA
layers not merged) to the library's own forward instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from auxol.models.promptable import PromptableModel

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _cross_attentions(model: PromptableModel) -> list[nn.Module]:
    transformer = model.mask_decoder.transformer
    pairs = [(layer.cross_attn_token_to_image, layer.cross_attn_image_to_token) for layer in transformer.layers]
    return [attention for pair in pairs for attention in pair] + [transformer.final_attn_token_to_image]


def can_fold(model: PromptableModel) -> bool:
    """Whether every cross-attention of ``model``'s decoder is SAM's plain one (four ``nn.Linear`` with biases)."""
    try:
        attentions = _cross_attentions(model)
    except AttributeError:  # not SAM's two-way transformer
        return False
    return all(hasattr(attention, "num_heads") and all(_plain_linear(getattr(attention, name, None)) for name in _PROJECTIONS)
               for attention in attentions)


def _plain_linear(module: nn.Module | None) -> bool:
    return type(module) is nn.Linear and module.bias is not None  # the folding reads weight and bias


def _weight_per_head(linear: nn.Linear, heads: int) -> torch.Tensor:
    """A projection's weight (D, E) as (heads, D / heads, E)."""
    return linear.weight.reshape(heads, -1, linear.weight.shape[-1])


def tokens_to_image(attention: nn.Module, queries: torch.Tensor, image_keys: torch.Tensor, image_values: torch.Tensor) -> torch.Tensor:
    """``attention(q=queries, k=image_keys, v=image_values)`` with the image projections folded.

    Shapes: queries (B, T, E); image_keys and image_values (B, N, E) -> (B, T, E).
    """
    heads = attention.num_heads
    batch, tokens, channels = queries.shape
    q = attention._separate_heads(attention.q_proj(queries), heads)  # (B, H, T, d)
    per_head = q.shape[-1]
    q_in_image = torch.einsum("bhtd,hde->bhte", q, _weight_per_head(attention.k_proj, heads)).reshape(batch, heads * tokens, channels)
    scores = q_in_image @ image_keys.transpose(1, 2)  # the key bias adds bk . q, the same to all N: softmax drops it
    weights = torch.softmax(scores / math.sqrt(per_head), dim=-1)  # (B, H*T, N)
    pooled = (weights @ image_values).reshape(batch, heads, tokens, channels)
    v_bias = attention.v_proj.bias.reshape(heads, per_head)[None, :, None, :]
    out = torch.einsum("bhte,hde->bhtd", pooled, _weight_per_head(attention.v_proj, heads)) + v_bias
    return attention.out_proj(attention._recombine_heads(out))


def image_to_tokens(attention: nn.Module, image_queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``attention(q=image_queries, k=keys, v=values)`` with the image projections folded.

    Shapes: image_queries (B, N, E); keys and values (B, T, E) -> (B, N, E). The softmax
    runs over the T prompt tokens along axis 2 of (B, H, T, N), which vectorises over N.
    """
    heads = attention.num_heads
    batch, pixels, channels = image_queries.shape
    tokens = keys.shape[1]
    k = attention._separate_heads(attention.k_proj(keys), heads)  # (B, H, T, d)
    per_head = k.shape[-1]
    q_bias = attention.q_proj.bias.reshape(heads, per_head)[None, :, None, :]
    k_in_image = torch.einsum("bhtd,hde->bhte", k, _weight_per_head(attention.q_proj, heads)).reshape(batch, heads * tokens, channels)
    scores = (k_in_image @ image_queries.transpose(1, 2)).reshape(batch, heads, tokens, pixels) + (k * q_bias).sum(-1)[..., None]
    weights = torch.softmax(scores / math.sqrt(per_head), dim=2).reshape(batch, heads * tokens, pixels)
    v = attention._separate_heads(attention.v_proj(values), heads)
    out_weight = attention.out_proj.weight.reshape(channels, heads, per_head)
    v_out = torch.einsum("bhtd,ehd->bhte", v, out_weight).reshape(batch, heads * tokens, channels)
    return weights.transpose(1, 2) @ v_out + attention.out_proj.bias


def _two_way_block(layer: nn.Module, queries, keys, query_pe, key_pe):
    """segment-anything's ``TwoWayAttentionBlock.forward`` with the cross-attentions folded."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)
    image_keys = keys + key_pe
    queries = layer.norm2(queries + tokens_to_image(layer.cross_attn_token_to_image, queries + query_pe, image_keys, keys))
    queries = layer.norm3(queries + layer.mlp(queries))
    keys = layer.norm4(keys + image_to_tokens(layer.cross_attn_image_to_token, image_keys, queries + query_pe, queries))
    return queries, keys


class FoldedDecoder(nn.Module):
    """(features, sparse, dense) -> low-resolution logits, as :meth:`PromptableModel.decode`.

    Shapes: features (1, 256, h, w), sparse (N, k, 256), dense (N, 256, h, w) -> (N, 1, 4h, 4w).
    Only for models where :func:`can_fold` holds.
    """

    def __init__(self, model: PromptableModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        decoder, transformer = self.model.mask_decoder, self.model.mask_decoder.transformer
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens[None].expand(sparse.shape[0], -1, -1), sparse), dim=1)  # (N, T, E)
        image = features + dense
        batch, channels, height, width = image.shape
        keys = image.flatten(2).transpose(1, 2)  # (N, h*w, E)
        key_pe = self.model.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2)
        queries = tokens
        for layer in transformer.layers:
            queries, keys = _two_way_block(layer, queries, keys, tokens, key_pe)
        attended = tokens_to_image(transformer.final_attn_token_to_image, queries + tokens, keys + key_pe, keys)
        queries = transformer.norm_final_attn(queries + attended)
        upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(batch, channels, height, width))
        first_mask = decoder.output_hypernetworks_mlps[0](queries[:, 1, :])  # token 0 is the IoU token
        return (upscaled * first_mask[:, :, None, None]).sum(dim=1, keepdim=True)

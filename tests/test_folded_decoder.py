"""The folded mask decoder of the runtime graphs computes segment-anything's decoder, and steps aside for wrapped ones."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

from auxol.models.folded_decoder import FoldedDecoder, can_fold
from auxol.models.preprocess import Preprocessing
from auxol.models.promptable import PromptableModel
from auxol.prompts import Prompt


def two_layer_model() -> PromptableModel:
    """SAM's decoder at 64 channels with two two-way blocks (the second adds the query PE), 16x16 embedding."""
    torch.manual_seed(0)
    prompt_encoder = PromptEncoder(embed_dim=64, image_embedding_size=(16, 16), input_image_size=(64, 64), mask_in_chans=4)
    transformer = TwoWayTransformer(depth=2, embedding_dim=64, mlp_dim=128, num_heads=4)
    decoder = MaskDecoder(transformer_dim=64, transformer=transformer, num_multimask_outputs=3, iou_head_depth=1, iou_head_hidden_dim=16)
    for parameter in decoder.parameters():  # biases are zero at init; random ones check their folding too
        parameter.data.normal_(0.0, 0.3)
    recipe = Preprocessing(input_size=64, keep_aspect=True, interpolation="area", normalization="minmax")
    return PromptableModel("two-layer", nn.Identity(), prompt_encoder, decoder, recipe).eval().requires_grad_(False)


@pytest.mark.parametrize(
    "prompts",
    [
        [Prompt.from_box((5, 8, 40, 50))],
        [Prompt.from_box((5, 8, 40, 50)), Prompt.from_box((0, 0, 63, 63)), Prompt.from_box((30, 30, 35, 36))],
        [Prompt(points=((10.0, 12.0), (40.0, 44.0), (20.0, 50.0)), labels=(1, 0, 1))],
        [Prompt(box=(5.0, 8.0, 40.0, 50.0), points=((20.0, 22.0),), labels=(0,))],
    ],
    ids=["box", "three-boxes", "points", "box-and-point"],
)
def test_folded_decoder_gives_the_library_decoders_logits(prompts):
    model = two_layer_model()
    features = torch.randn(1, 64, 16, 16)
    sparse, dense = model.encode_prompts(prompts, (64, 64))
    with torch.no_grad():
        expected = model.decode(features, sparse, dense)
        folded = FoldedDecoder(model)(features, sparse, dense)
    assert folded.shape == expected.shape == (len(prompts), 1, 64, 64)
    assert expected.abs().max() > 1.0  # logits of some size, so the tolerance below means something
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=1e-4)


def test_a_decoder_with_wrapped_cross_attention_is_not_folded():
    from auxol.finetune.adapters import add_adapters

    model = two_layer_model()
    assert can_fold(model)
    add_adapters(model, encoder_blocks=None, encoder=False)  # wraps the token-to-image cross-attentions
    assert not can_fold(model)


def test_a_decoder_projection_without_bias_is_not_folded():
    model = two_layer_model()
    attention = model.mask_decoder.transformer.final_attn_token_to_image
    attention.v_proj = nn.Linear(attention.v_proj.in_features, attention.v_proj.out_features, bias=False)
    assert not can_fold(model)

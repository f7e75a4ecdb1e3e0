"""Every backbone x parts x method cell of the study's grid builds, and trains exactly the study's parameters."""

from __future__ import annotations

import pytest

from auxol.finetune.config import MethodConfig
from auxol.finetune.peft_setup import parameter_counts, prepare
from auxol.models import build_model

BACKBONES = ["litemedsam", "mobilesam", "sam_vit_b", "medsam_vit_b", pytest.param("sam_vit_l", marks=pytest.mark.slow), pytest.param("sam_vit_h", marks=pytest.mark.slow)]
CELLS = [(method, parts) for method in ("vanilla", "lora", "adapter") for parts in ("decoder", "encoder,decoder")]

# LoRA A/B of q and v of the 7 decoder attentions (2 x self, 2 x 2 cross, final), rank 4:
# self-attention 256 -> 256, cross-attentions 256 -> 128.
DECODER_LORA = 4 * (2 * (2 * (256 + 256) + 4 * (256 + 128)) + 2 * (256 + 128))
# Adapter D -> D/4 -> D with biases, 2 per block.
def adapter_size(dim: int) -> int:
    return 2 * dim * (dim // 4) + dim // 4 + dim


ENCODER_LORA = {  # q and v of the default blocks, rank 4
    "litemedsam": 4 * 2 * (2 * (128 + 128) + 2 * (320 + 320)),  # TinyViT blocks 0, 1 (stage 1) and 8, 9 (stage 3)
    "mobilesam": 4 * 2 * (2 * (128 + 128) + 2 * (320 + 320)),
    "sam_vit_b": 4 * 2 * 4 * (768 + 768),
    "medsam_vit_b": 4 * 2 * 4 * (768 + 768),
    "sam_vit_l": 4 * 2 * 4 * (1024 + 1024),
    "sam_vit_h": 4 * 2 * 4 * (1280 + 1280),
}
ENCODER_ADAPTERS = {
    "litemedsam": 2 * (2 * adapter_size(128) + 2 * adapter_size(320)),
    "mobilesam": 2 * (2 * adapter_size(128) + 2 * adapter_size(320)),
    "sam_vit_b": 2 * 4 * adapter_size(768),
    "medsam_vit_b": 2 * 4 * adapter_size(768),
    "sam_vit_l": 2 * 4 * adapter_size(1024),
    "sam_vit_h": 2 * 4 * adapter_size(1280),
}


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", BACKBONES)
def test_every_cell_trains_the_study_parameters(name):
    base = build_model(name)
    base_total = _numel(base)
    heads = _numel(base.prompt_encoder) + _numel(base.mask_decoder)
    heads_outside_transformer = heads - _numel(base.mask_decoder.transformer)
    expected = {
        ("vanilla", "decoder"): heads,
        ("vanilla", "encoder,decoder"): base_total,
        ("lora", "decoder"): heads_outside_transformer + DECODER_LORA,
        ("lora", "encoder,decoder"): heads_outside_transformer + DECODER_LORA + ENCODER_LORA[name],
        ("adapter", "decoder"): 4 * adapter_size(256),
        ("adapter", "encoder,decoder"): 4 * adapter_size(256) + ENCODER_ADAPTERS[name],
    }
    for method, parts in CELLS:
        model = build_model(name)
        prepare(model, MethodConfig(method, parts))
        trainable, total = parameter_counts(model)
        assert trainable == expected[(method, parts)], (method, parts)
        assert total == base_total + (trainable - heads_outside_transformer if method == "lora" else 0) + (trainable if method == "adapter" else 0)
        encoder_trains = any(p.requires_grad for p in model.image_encoder.parameters())
        assert encoder_trains == (parts == "encoder,decoder"), (method, parts)

"""Which parameters train in each cell of the study's grid, and how a model is prepared for it.

=================  ===============  ===================================================
method             parts            trainable
=================  ===============  ===================================================
vanilla            decoder          prompt encoder + mask decoder (encoder frozen,
                                    run without grad)
vanilla            encoder,decoder  everything
adapter            decoder          the decoder adapters only
adapter            encoder,decoder  the decoder and chosen encoder-block adapters only
lora               decoder          LoRA A/B of the decoder attentions; the prompt
                                    encoder; the decoder outside its two-way
                                    transformer (tokens, hypernetwork MLPs, upscaling,
                                    IoU head)
lora               encoder,decoder  as above, plus LoRA A/B of the chosen encoder blocks
=================  ===============  ===================================================
"""

from __future__ import annotations

from torch import nn

from auxol.finetune.adapters import add_adapters
from auxol.finetune.config import MethodConfig
from auxol.finetune.lora import add_lora

def _is_peft_parameter(name: str) -> bool:
    return "lora_" in name or ".adapter." in name


def prepare(model: nn.Module, config: MethodConfig) -> None:
    """Add ``config``'s LoRA or adapters to ``model`` and set ``requires_grad`` per the table above (in place)."""
    blocks = None if config.lora.encoder_blocks is None else list(config.lora.encoder_blocks)
    if config.method == "lora":
        add_lora(model, config.lora, config.encoder)
    elif config.method == "adapter":
        add_adapters(model, blocks, config.encoder)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(_trains(name, config))


def _trains(name: str, config: MethodConfig) -> bool:
    if config.method == "vanilla":
        return config.encoder or not name.startswith("image_encoder.")
    if config.method == "adapter":
        return _is_peft_parameter(name)
    in_decoder_transformer = name.startswith("mask_decoder.transformer.")
    frozen_base = name.startswith("image_encoder.") or in_decoder_transformer
    return _is_peft_parameter(name) or not frozen_base


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) numbers of scalar parameters of ``model``."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def encoder_trains(model: nn.Module) -> bool:
    """Whether any image-encoder parameter of ``model`` trains."""
    return any(p.requires_grad for p in model.image_encoder.parameters())

"""Saving a fine-tuned model: its PEFT weights alone, and a merged SAM-format state dict.

``OUT/peft/`` holds ``weights.safetensors`` (every trainable tensor, named as in the
adapted model: LoRA A/B, adapters, and for LoRA/vanilla the trained decoder and prompt
encoder tensors) and ``peft_config.json`` (model name, base checkpoint, method, parts,
LoRA settings). :func:`load_peft` rebuilds the adapted model from the two.

``OUT/merged.pth`` (vanilla and LoRA only) is the backbone's own SAM state dict with every
LoRA update folded into its base weight, so ``auxol.models.load_model(name,
checkpoint=OUT/merged.pth)`` loads it strictly. Adapters are non-linear and cannot be
merged; an adapter model is used through :func:`load_peft`, which every
``--checkpoint OUT`` (the run's output folder) calls.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from auxol.errors import ConfigError, WeightsError
from auxol.finetune.lora import LoraSettings, merge_lora
from auxol.finetune.peft_setup import MethodConfig, prepare
from auxol.io import atomic_open, write_json
from auxol.models import PromptableModel, load_model
from auxol.models.registry import default_device

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "peft_config.json"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable tensors of ``model`` by name, on the CPU."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_peft(model: PromptableModel, folder: str | os.PathLike, method: MethodConfig, base_checkpoint: str | None) -> None:
    """Write ``folder``/weights.safetensors and ``folder``/peft_config.json (atomically)."""
    folder = Path(folder)
    with atomic_open(folder / WEIGHTS_FILE, "wb") as handle:
        handle.write(save(trainable_state(model)))
    write_json(folder / CONFIG_FILE, {"model": model.name, "base_checkpoint": base_checkpoint, **asdict(method)})


def read_peft_config(folder: str | os.PathLike) -> dict:
    """The JSON object of ``folder``/peft_config.json; WeightsError naming the file if unreadable."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path}: cannot read PEFT configuration ({error})") from None
    if not isinstance(config, dict) or "model" not in config:
        raise WeightsError(f"{path}: not a PEFT configuration written by 'auxol finetune'")
    return config


def load_peft(folder: str | os.PathLike, device: str | torch.device | None = None) -> PromptableModel:
    """Rebuild a fine-tuned model from ``folder`` (see :func:`save_peft`): base weights, method, trained tensors; frozen, eval."""
    folder = Path(folder)
    config = read_peft_config(folder)
    lora = config["lora"]
    method = MethodConfig(config["method"], config["parts"], LoraSettings(**{
        **lora, "encoder_blocks": None if lora["encoder_blocks"] is None else tuple(lora["encoder_blocks"]),
        "encoder_targets": tuple(lora["encoder_targets"]), "decoder_targets": tuple(lora["decoder_targets"]),
    }))
    model = load_model(config["model"], config["base_checkpoint"], device="cpu")
    prepare(model, method)
    weights = load_file(folder / WEIGHTS_FILE)
    expected = trainable_state(model)
    if weights.keys() != expected.keys():
        raise WeightsError(f"{folder / WEIGHTS_FILE}: tensors do not match a {config['model']} {method.method}/{method.parts} model")
    model.load_state_dict(weights, strict=False)
    model.requires_grad_(False)
    return model.eval().to(device or model.device)


def load_run(name: str, folder: str | os.PathLike, device: str | torch.device | None = None) -> PromptableModel:
    """The ``name`` model saved by ``auxol finetune`` in ``folder`` (its ``peft/`` sub-folder, or the folder itself).

    Raises:
        WeightsError: ``folder`` holds no ``peft_config.json`` (in itself or in ``peft/``).
        ConfigError: the run fine-tuned another model than ``name``.
    """
    folder = Path(folder)
    peft_folder = folder / "peft" if (folder / "peft" / CONFIG_FILE).is_file() else folder
    if not (peft_folder / CONFIG_FILE).is_file():
        raise WeightsError(f"{folder}: a folder, but not an 'auxol finetune' output (no peft/{CONFIG_FILE})")
    trained = read_peft_config(peft_folder)["model"]
    if trained != name:
        raise ConfigError(f"{folder}: fine-tuned from {trained}, not {name}; pass --model {trained}")
    model = load_peft(peft_folder, device or default_device())
    model.checkpoint = peft_folder
    return model


def merged_state_dict(model: PromptableModel) -> dict[str, torch.Tensor]:
    """SAM-format state dict of ``model`` with LoRA folded in (``model`` itself is left unchanged)."""
    merged = copy.deepcopy(model)
    merge_lora(merged)
    state = {name: tensor.detach().cpu() for name, tensor in merged.state_dict().items()}
    if any(".adapter." in name for name in state):
        raise WeightsError("adapter models cannot be merged into SAM weights; use their peft/ folder")
    return state


def save_merged(model: PromptableModel, path: str | os.PathLike) -> None:
    """Write :func:`merged_state_dict` of ``model`` to ``path`` (atomically)."""
    with atomic_open(path, "wb") as handle:
        torch.save(merged_state_dict(model), handle)

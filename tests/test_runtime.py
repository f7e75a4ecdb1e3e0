"""The frozen model through OpenVINO / ONNX Runtime: same logits as PyTorch, graphs cached per weights, PyTorch fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

from auxol.data import read_mask
from auxol.evaluate.metrics import dice
from auxol.models import build_model, load_model, runtime
from auxol.models.export import weights_digest
from auxol.models.folded_decoder import can_fold
from auxol.models.preprocess import Preprocessing
from auxol.models.promptable import PromptableModel
from auxol.prompts import Prompt, prompts_from_mask
from conftest import disk_image
from test_cli import run_cli

PROMPTS = [Prompt.from_box((40, 50, 120, 130)), Prompt.from_point(80, 90), Prompt.from_box((0, 0, 60, 60))]


def tiny_model(seed: int = 0) -> PromptableModel:
    """A SAM-shaped model small enough to export in a second: 64 px input, 32 channels, 16x16 embedding."""
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Conv2d(3, 32, 4, stride=4), nn.GELU(), nn.Conv2d(32, 32, 1))
    prompt_encoder = PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(64, 64), mask_in_chans=4)
    transformer = TwoWayTransformer(depth=1, embedding_dim=32, mlp_dim=64, num_heads=2)
    decoder = MaskDecoder(transformer_dim=32, transformer=transformer, num_multimask_outputs=3, iou_head_depth=1, iou_head_hidden_dim=16)
    recipe = Preprocessing(input_size=64, keep_aspect=True, interpolation="area", normalization="minmax")
    return PromptableModel("tiny", encoder, prompt_encoder, decoder, recipe).eval().requires_grad_(False)


def torch_and_runtime_logits(model: PromptableModel, name: str) -> tuple[np.ndarray, np.ndarray]:
    image = disk_image()[0]
    model.graphs = None
    expected = model.segment_many(model.embed(image), PROMPTS)
    runtime.use_runtime(model, name)
    assert model.runtime == name
    return expected, model.segment_many(model.embed(image), PROMPTS)


@pytest.mark.parametrize("name", ["openvino", "onnx"])
def test_tiny_model_through_each_runtime_gives_torch_logits(name):
    expected, actual = torch_and_runtime_logits(tiny_model(), name)
    assert actual.shape == expected.shape == (3, 160, 200)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


@pytest.mark.parametrize("method", ["lora", "adapter"])
def test_a_fine_tuned_model_runs_through_the_runtime_with_its_peft_weights(method):
    from auxol.finetune.config import MethodConfig
    from auxol.finetune.peft_setup import prepare
    from test_finetune_tiny import tiny_model as tiny_vit

    model = tiny_vit()
    plain_digest = weights_digest(model)
    prepare(model, MethodConfig(method, "encoder,decoder"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name or ".adapter." in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)  # stands in for training
    model.eval().requires_grad_(False)
    assert weights_digest(model) != plain_digest  # its own graphs, not the base model's
    expected, actual = torch_and_runtime_logits(model, "openvino")
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    plain, _ = torch_and_runtime_logits(tiny_vit(), "openvino")
    assert np.abs(plain - expected).max() > 0.01  # the PEFT weights matter, so the check above can fail


def test_embedded_litemedsam_through_the_default_runtime_gives_torch_masks():
    model = load_model("litemedsam", device="cpu")
    image, truth = disk_image()
    prompt = prompts_from_mask(truth, "box")[0]
    expected_features, expected = model.embed(image).features, model.segment(model.embed(image), prompt)
    assert can_fold(model)  # its decoder graph is the folded one
    runtime.use_runtime(model, "auto")
    assert model.runtime == "openvino"
    embedding = model.embed(image)
    assert embedding.features.shape == (1, 256, 64, 64)
    assert (embedding.features - expected_features).abs().max() < 1e-4
    logits = model.segment(embedding, prompt)
    assert np.abs(logits - expected).max() < 1e-3
    assert dice(logits > 0, expected > 0) > 0.999 and dice(logits > 0, truth) > 0.9


def test_graphs_are_cached_per_weights_and_reused(monkeypatch, capsys):
    exports = []
    export = runtime.export_onnx
    monkeypatch.setattr(runtime, "export_onnx", lambda *args: (exports.append(args), export(*args)))
    first, same, other = tiny_model(10), tiny_model(10), tiny_model(11)
    runtime.use_runtime(first, "onnx")
    runtime.use_runtime(same, "onnx")
    assert len(exports) == 1 and same.graphs.folder == first.graphs.folder
    assert "exporting the frozen model" in capsys.readouterr().err
    runtime.use_runtime(other, "openvino")
    assert len(exports) == 2 and other.graphs.folder != first.graphs.folder
    manifest = json.loads((other.graphs.folder / runtime.MANIFEST_FILE).read_text())
    assert manifest["weights_digest"] == weights_digest(other) != weights_digest(first)


@pytest.mark.parametrize("damage", ["truncate", "flip", "other_weights", "manifest"])
def test_a_damaged_or_foreign_cache_is_rebuilt_never_used(damage, capsys):
    model = tiny_model(2)
    runtime.use_runtime(model, "onnx")
    folder = model.graphs.folder
    encoder = folder / runtime.ENCODER_FILE
    data = encoder.read_bytes()
    if damage == "truncate":
        encoder.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # a weight changed in place: still a valid graph, but not these weights
        encoder.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    elif damage == "other_weights":
        manifest = json.loads((folder / runtime.MANIFEST_FILE).read_text())
        manifest["weights_digest"] = weights_digest(tiny_model(3))
        (folder / runtime.MANIFEST_FILE).write_text(json.dumps(manifest))
    else:
        (folder / runtime.MANIFEST_FILE).write_text("{not json")
    capsys.readouterr()
    expected, actual = torch_and_runtime_logits(model, "onnx")
    assert "rebuilding" in capsys.readouterr().err
    assert encoder.read_bytes() == data
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_missing_or_failing_runtime_warns_once_and_keeps_torch(monkeypatch, capsys):
    model = tiny_model(4)
    image = disk_image()[0]
    expected = model.segment_many(model.embed(image), PROMPTS)
    real_find_spec = runtime.importlib.util.find_spec
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name: None if name == "openvino" else real_find_spec(name))
    assert runtime.resolve_runtime("auto", torch.device("cpu")) == "onnx"
    runtime.use_runtime(model, "openvino")
    err = capsys.readouterr().err
    assert model.runtime == "torch" and err.count("\n") == 1 and "not installed" in err

    def broken(path, threads):
        raise RuntimeError("cannot parse graph")

    monkeypatch.setitem(runtime._OPENERS, "onnx", broken)
    runtime.use_runtime(model, "onnx")
    err = capsys.readouterr().err
    assert model.runtime == "torch" and "using PyTorch" in err and err.count("warning") == 1
    np.testing.assert_array_equal(model.segment_many(model.embed(image), PROMPTS), expected)


def test_auto_is_torch_on_a_gpu_and_names_are_checked():
    assert runtime.resolve_runtime("auto", torch.device("cuda", 0)) == "torch"
    assert runtime.resolve_runtime("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="unknown runtime"):
        runtime.resolve_runtime("tensorrt", torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sam_vit_b", "medsam_vit_b", "mobilesam", "sam_vit_h"])
def test_other_families_export_and_agree_with_torch(name, tmp_path):
    model = build_model(name)
    torch.save(model.state_dict(), tmp_path / "random.pth")
    model = load_model(name, tmp_path / "random.pth", device="cpu")
    assert can_fold(model)  # so the graph holds the folded decoder, checked against the library's below
    expected, actual = torch_and_runtime_logits(model, "openvino")
    assert np.abs(actual - expected).max() < 1e-2
    assert np.mean((actual > 0) == (expected > 0)) > 0.999


def test_evaluate_uses_the_runtime_by_default_and_gives_torchs_masks(disk_dataset, tmp_path, monkeypatch):
    fast, slow = tmp_path / "auto", tmp_path / "torch"
    assert run_cli(monkeypatch, "evaluate", disk_dataset, "--out", fast) == 0
    assert run_cli(monkeypatch, "evaluate", disk_dataset, "--out", slow, "--runtime", "torch") == 0
    assert json.loads((fast / "config.json").read_text())["runtime"] == "openvino"
    assert json.loads((slow / "config.json").read_text())["runtime"] == "torch"
    assert json.loads((fast / "summary.json").read_text())["runtime"] == "openvino"
    assert json.loads((slow / "summary.json").read_text())["runtime"] == "torch"
    for stem in ("case0", "case1", "case2"):
        assert dice(read_mask(fast / "predictions" / f"{stem}.png"), read_mask(slow / "predictions" / f"{stem}.png")) > 0.999


@pytest.mark.slow
def test_models_export_writes_both_graphs(tmp_path, monkeypatch):
    assert run_cli(monkeypatch, "models", "export", "litemedsam", "--out", tmp_path / "lite.onnx") == 0
    import onnxruntime

    encoder = onnxruntime.InferenceSession(str(tmp_path / "lite.onnx"))
    decoder = onnxruntime.InferenceSession(str(tmp_path / "lite.decoder.onnx"))
    assert [i.shape for i in encoder.get_inputs()] == [[1, 3, 256, 256]]
    assert [i.name for i in decoder.get_inputs()] == ["features", "sparse", "dense"]

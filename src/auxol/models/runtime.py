"""The frozen model through an inference runtime on the CPU: OpenVINO (default) or ONNX Runtime.

:func:`use_runtime` gives a :class:`PromptableModel` compiled graphs of its image encoder
and mask decoder (:mod:`auxol.models.export`); ``embed`` and ``segment_many`` then run
them instead of PyTorch, with the same inputs, outputs and masks. Training code never
calls it: gradients need PyTorch.

Graphs are cached in ``$AUXOL_HOME/graphs/<model>-<digest>/`` (default
``~/.cache/auxol``), keyed by :func:`weights_digest`, so every weights file (a
``merged.pth``, an adapter run) gets its own, built once with a progress line.
``manifest.json`` holds the full weights digest and the sha256 of every graph file: a
folder whose digest or files do not match is rebuilt, never used. A runtime that is not
installed, or cannot export or load the graphs, leaves the model on PyTorch with one
warning line.

Measured on LiteMedSAM, 2-core AVX-512 CPU, fp32, same process (see README, Benchmarks):
OpenVINO embeds ~1.3x faster than ONNX Runtime and 2.5-2.8x faster than PyTorch, hence the
default. Both run with ``torch.get_num_threads()`` threads and fp32 arithmetic (OpenVINO
would otherwise pick bf16 on CPUs that have it, and change masks).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from auxol.models.export import export_onnx, weights_digest
from auxol.models.promptable import PromptableModel
from auxol.models.weights import auxol_home, file_digest
from auxol.progress import STDERR, warn

Runtime = Literal["auto", "torch", "openvino", "onnx"]
RUNTIMES: tuple[str, ...] = ("auto", "torch", "openvino", "onnx")
_MODULES = {"openvino": "openvino", "onnx": "onnxruntime"}
ENCODER_FILE, DECODER_FILE, MANIFEST_FILE = "encoder.onnx", "decoder.onnx", "manifest.json"
MAX_SHAPES = 8
"""OpenVINO: input shapes a graph stays compiled for (the decoder sees one per prompt kind:
box, n points, box and n points); the oldest is dropped beyond it."""

OPENVINO_GRAPH_SETTINGS: dict[str, dict[str, str]] = {DECODER_FILE: {"SNIPPETS_MODE": "DISABLE"}}
"""OpenVINO settings of single graphs, chosen by measurement (LiteMedSAM, interleaved in one
process): the decoder without OpenVINO's fused "snippet" kernels takes 22.8-24.7 ms vs
27.5-29.2 ms with them, logits within 2e-5; the encoder is faster with them (540 vs 553 ms)."""

Graph = Callable[..., np.ndarray]
"""A compiled graph: float32 arrays in the graph's input order -> its first output."""


def _open_openvino(path: Path, threads: int) -> Graph:
    """``path`` compiled by OpenVINO once per input shape (a graph compiled for fixed shapes
    ran the LiteMedSAM library decoder ~1.3x faster than the dynamic one: 40 vs 52 ms)."""
    import openvino

    core = openvino.Core()
    core.set_property({"CACHE_DIR": str(path.parent / "openvino-cache")})  # compiled blobs: ~4x faster start next time
    config = {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
        **OPENVINO_GRAPH_SETTINGS.get(path.name, {}),
    }
    source = core.read_model(str(path))  # parsed once; each shape compiles a reshaped clone
    compiled: dict[tuple[tuple[int, ...], ...], object] = {}
    lock = threading.Lock()

    def for_shapes(shapes: tuple[tuple[int, ...], ...]):
        with lock:
            if shapes not in compiled:
                if len(compiled) >= MAX_SHAPES:
                    compiled.pop(next(iter(compiled)))
                graph = source.clone()
                graph.reshape({port.get_any_name(): list(shape) for port, shape in zip(graph.inputs, shapes)})
                compiled[shapes] = core.compile_model(graph, "CPU", config)
            return compiled[shapes]

    def run(*arrays: np.ndarray) -> np.ndarray:
        request = for_shapes(tuple(array.shape for array in arrays)).create_infer_request()  # requests are not thread-safe
        request.infer(list(arrays), share_inputs=True)  # no copy: the arrays outlive the call
        return request.get_output_tensor(0).data.copy()

    if all(port.get_partial_shape().is_static for port in source.inputs):  # the encoder: compiled now, not on first use
        for_shapes(tuple(tuple(port.get_shape()) for port in source.inputs))
    return run


def _open_onnxruntime(path: Path, threads: int) -> Graph:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    return lambda *arrays: session.run(None, dict(zip(names, arrays)))[0]


_OPENERS: dict[str, Callable[[Path, int], Graph]] = {"openvino": _open_openvino, "onnx": _open_onnxruntime}


@dataclass
class CompiledGraphs:
    """A model's encoder and decoder graphs, compiled by one runtime; tensors in and out, on the CPU."""

    runtime: str
    folder: Path
    encoder: Graph
    decoder: Graph

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Preprocessed input (1, 3, S, S) -> features (1, 256, 64, 64), as the image encoder."""
        return torch.from_numpy(self.encoder(_array(inputs)))

    def decode(self, features: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Features (1, 256, 64, 64), prompts (N, k, 256) and (N, 256, 64, 64) -> logits (N, 1, 256, 256).

        One prompt at a time: SAM's decoder repeats the features per prompt, so a batch
        costs N single decodes anyway, and a graph compiled for N = 1 is faster (OpenVINO,
        LiteMedSAM, 6 boxes: 248 ms one by one vs 348 ms as one dynamic batch).
        """
        features, sparse, dense = _array(features), _array(sparse), _array(dense)
        logits = [self.decoder(features, sparse[i : i + 1], dense[i : i + 1]) for i in range(len(sparse))]
        return torch.from_numpy(np.concatenate(logits))


def _array(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().float().numpy())


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """The runtime ``runtime`` means on ``device``: ``auto`` is OpenVINO, else ONNX Runtime, on a CPU; PyTorch elsewhere."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime '{runtime}'; choose one of: {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    if device.type != "cpu":
        return "torch"
    installed = [name for name, module in _MODULES.items() if importlib.util.find_spec(module) is not None]
    return installed[0] if installed else "torch"


def graph_folder(model: PromptableModel, digest: str) -> Path:
    """Cache folder of ``model``'s graphs for the weights of ``digest``."""
    return auxol_home() / "graphs" / f"{model.name}-{digest[:16]}"


def use_runtime(model: PromptableModel, runtime: str = "auto") -> PromptableModel:
    """Make ``model`` embed and decode through ``runtime``; returns ``model`` itself.

    ``torch`` (or ``auto`` on a GPU) leaves it on PyTorch. A named runtime on a GPU model,
    a runtime that is not installed, or graphs that cannot be exported or loaded: one
    warning line, and the model stays on PyTorch.
    """
    chosen = resolve_runtime(runtime, model.device)
    model.graphs = None
    if chosen == "torch":
        return model
    if model.device.type != "cpu":
        warn(f"--runtime {chosen} runs on the CPU; the model is on {model.device}, so it stays on PyTorch")
        return model
    if importlib.util.find_spec(_MODULES[chosen]) is None:
        warn(f"runtime {chosen}: the '{_MODULES[chosen]}' package is not installed; using PyTorch")
        return model
    try:
        model.graphs = cached_graphs(model, chosen)
    except Exception as error:  # export and runtimes raise many types; any of them means: use PyTorch
        warn(f"runtime {chosen}: cannot run {model.name} ({type(error).__name__}: {_first_line(error)}); using PyTorch")
    return model


def cached_graphs(model: PromptableModel, runtime: str) -> CompiledGraphs:
    """``model``'s graphs compiled by ``runtime``, exported into the cache first if missing, stale or corrupt."""
    digest = weights_digest(model)
    folder = graph_folder(model, digest)
    problem = _check_folder(folder, digest)
    if problem is None:
        try:
            return _open(folder, runtime)
        except Exception as error:  # a file the runtime cannot parse despite its digest
            problem = f"{runtime} cannot load it ({type(error).__name__})"
    if folder.exists():
        warn(f"{folder}: {problem}; rebuilding")
    build_graphs(model, folder, digest)
    return _open(folder, runtime)


def build_graphs(model: PromptableModel, folder: Path, digest: str) -> None:
    """Export ``model`` into ``folder`` (replaced as a whole once complete) with its manifest."""
    STDERR.print(f"{model.name}: exporting the frozen model to {folder} (once for these weights) ...")
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        export_onnx(model, staging / ENCODER_FILE, staging / DECODER_FILE)
        files = {path.name: file_digest(path) for path in sorted(staging.iterdir())}
        manifest = {"model": model.name, "weights_digest": digest, "files": files}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    STDERR.print(f"{model.name}: exported in {time.perf_counter() - start:.0f} s")


def _check_folder(folder: Path, digest: str) -> str | None:
    """Why the graphs in ``folder`` cannot be used for the weights of ``digest``; None if they can."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        if manifest["weights_digest"] != digest:
            return "built from other weights"
        for name, expected in manifest["files"].items():
            if file_digest(folder / name) != expected:
                return f"{name} is corrupt (digest mismatch)"
    except FileNotFoundError as error:
        return f"{Path(error.filename).name} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST_FILE} is unreadable"
    return None


def _open(folder: Path, runtime: str) -> CompiledGraphs:
    threads = torch.get_num_threads()
    opener = _OPENERS[runtime]
    return CompiledGraphs(runtime, folder, opener(folder / ENCODER_FILE, threads), opener(folder / DECODER_FILE, threads))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "no message"

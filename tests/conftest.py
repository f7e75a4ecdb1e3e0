"""Shared fixtures: small generated images and datasets (tests never read ../shared)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from auxol.models import load_model


def disk_image(size: tuple[int, int] = (160, 200), centre: tuple[int, int] = (90, 80), radius: int = 35, seed: int = 0):
    """A bright noisy disk on a dark background: (uint8 (H, W, 3) image, bool (H, W) truth)."""
    rng = np.random.default_rng(seed)
    height, width = size
    truth = np.zeros(size, np.uint8)
    cv2.circle(truth, centre, radius, 1, -1)
    image = 40 + 150 * truth + rng.normal(0, 12, size)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2), truth.astype(bool)


def write_pair(root: Path, stem: str, image: np.ndarray, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}.png")
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(root / "masks" / f"{stem}.png")


@pytest.fixture
def disk_dataset(tmp_path: Path) -> Path:
    """A part of three disk images of different sizes and positions."""
    root = tmp_path / "disks"
    for index, (size, centre, radius) in enumerate([((160, 200), (90, 80), 35), ((128, 128), (60, 70), 25), ((200, 150), (70, 120), 40)]):
        write_pair(root, f"case{index}", *disk_image(size, centre, radius, seed=index))
    return root


@pytest.fixture(scope="session", autouse=True)
def auxol_home(tmp_path_factory):
    """Every test's ``$AUXOL_HOME`` (fetched weights, exported graphs): one fresh folder per session, never ~/.cache."""
    home = tmp_path_factory.mktemp("auxol-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUXOL_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def litemedsam():
    """The embedded LiteMedSAM on the CPU, loaded once per test session."""
    return load_model("litemedsam", device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one torch thread: tiny networks are fastest so, and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

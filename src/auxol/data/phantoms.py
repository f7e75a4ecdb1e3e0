"""Synthetic ultrasound phantoms: a stream of medical-looking images whose truth a base model gets systematically wrong.

Each phantom is a B-mode-like image (speckle over smooth tissue, darker with depth) with
one hypoechoic lesion. The lesion has a dark core and, around it, a faint rim that is
only a little darker than the tissue; the truth is core + rim. A box prompt from the
truth encloses the whole lesion, yet a foundation model outlines the dark core: its
masks are consistently too small (LiteMedSAM: Dice about 0.8). The error is the same
on every image, so an auxiliary network can learn it online, which is what the
``auxol demo`` stream shows.

Image ``index`` of a stream depends only on ``(seed, index, size)``: the first 12
phantoms of a 60-image stream are the 12 phantoms of a 12-image stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from auxol.errors import ConfigError
from auxol.io import write_image_png, write_mask_png

PhantomKind = Literal["ultrasound"]
KINDS: tuple[str, ...] = ("ultrasound",)

CORE_INTENSITY = 0.12
"""Mean echo of the lesion core, as a fraction of the surrounding tissue's."""
RIM_INTENSITY = 0.72
"""Mean echo of the lesion rim, as a fraction of the surrounding tissue's: faint."""
CORE_SCALE = (0.78, 0.85)
"""Range of the core's radius as a fraction of the whole lesion's (the truth)."""


@dataclass(frozen=True)
class Phantom:
    """One synthetic image with its truth.

    Attributes:
        image: uint8 (H, W, 3) gray image repeated in R, G and B.
        mask: bool (H, W), the truth: the lesion core and its rim.
        core: bool (H, W), the dark core alone (a subset of ``mask``).
    """

    image: np.ndarray
    mask: np.ndarray
    core: np.ndarray


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise (size, size) float32, rescaled to zero mean and unit standard deviation."""
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def _speckle(rng: np.random.Generator, size: int, grain: float) -> np.ndarray:
    """Fully developed speckle (size, size) float32 with mean about 1: the magnitude of blurred complex Gaussian noise.

    ``grain`` is the blur sigma in pixels, roughly the speckle spot radius.
    """
    real, imag = (cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), grain) for _ in range(2))
    magnitude = np.hypot(real, imag)
    return magnitude / magnitude.mean()


def _lesion_region(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Radius-fraction map of a random lobulated ellipse.

    Returns (radius float32 (size, size): the pixel's distance from the centre divided by
    the lesion boundary's distance in its direction, so the lesion is ``radius <= 1``;
    centre (x, y) in pixels).
    """
    centre = rng.uniform(0.35, 0.65, size=2) * size
    axes = rng.uniform(0.13, 0.22, size=2) * size
    tilt = rng.uniform(0, np.pi)
    harmonics = rng.normal(0, 0.05, size=(3, 2))  # lobulation: cos/sin amplitudes of orders 2..4
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    u = dx * np.cos(tilt) + dy * np.sin(tilt)
    v = -dx * np.sin(tilt) + dy * np.cos(tilt)
    theta = np.arctan2(v / axes[1], u / axes[0])
    boundary = 1.0 + sum(a * np.cos(k * theta) + b * np.sin(k * theta) for k, (a, b) in enumerate(harmonics, start=2))
    radius = np.hypot(u / axes[0], v / axes[1]) / boundary
    return radius.astype(np.float32), centre


def ultrasound_phantom(seed: int, index: int, size: int = 256) -> Phantom:
    """Phantom ``index`` of the ultrasound stream with ``seed``: a size x size image, see the module docstring."""
    rng = np.random.default_rng([seed, index])
    tissue = np.exp(0.25 * _smooth_noise(rng, size, size / 10))
    layers = 1.0 + 0.15 * np.sin(np.linspace(0, rng.uniform(3, 6) * np.pi, size) + rng.uniform(0, 2 * np.pi))
    tissue *= layers[:, None].astype(np.float32)
    radius, centre = _lesion_region(rng, size)
    core_scale = rng.uniform(*CORE_SCALE)
    mask = radius <= 1.0
    core = radius <= core_scale
    # Echo relative to tissue: a smooth step from the core to the rim and from the rim to the tissue.
    core_to_rim = np.clip((radius - core_scale) / 0.06 + 0.5, 0, 1)
    rim_to_tissue = np.clip((radius - 1.0) / 0.06 + 0.5, 0, 1)
    echo = CORE_INTENSITY + (RIM_INTENSITY - CORE_INTENSITY) * core_to_rim
    echo = echo + (1.0 - echo) * rim_to_tissue
    # Posterior acoustic enhancement: brighter tissue below the lesion, fading with depth.
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    below = np.exp(-(((xs - centre[0]) / (0.18 * size)) ** 2)) * np.clip((ys - centre[1]) / size, 0, None)
    enhancement = 1.0 + 1.2 * below * np.exp(-((ys - centre[1]) / (0.5 * size)))
    attenuation = np.exp(-0.8 * ys / size)
    amplitude = tissue * echo * enhancement * attenuation * _speckle(rng, size, grain=1.2)
    compressed = np.log1p(4.0 * amplitude) / np.log1p(4.0 * 3.0)  # log compression, ~3 = bright speckle
    gray = np.clip(255 * compressed, 0, 255).astype(np.uint8)
    return Phantom(image=np.repeat(gray[:, :, None], 3, axis=2), mask=mask, core=core)


def phantom_stream(n: int, kind: PhantomKind = "ultrasound", seed: int = 0, size: int = 256) -> list[Phantom]:
    """The first ``n`` phantoms of the stream (``kind``, ``seed``), in memory."""
    if kind not in KINDS:
        raise ConfigError(f"unknown phantom kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if n < 1 or size < 64:
        raise ConfigError(f"phantoms need n >= 1 and size >= 64, got n={n}, size={size}")
    return [ultrasound_phantom(seed, index, size) for index in range(n)]


def generate_phantoms(out_dir: str | os.PathLike, n: int, kind: PhantomKind = "ultrasound", seed: int = 0, size: int = 256) -> Path:
    """Write a phantom stream as a dataset part: ``out_dir/images/phantom_XXXX.png`` and ``out_dir/masks/phantom_XXXX.png`` (0/255).

    Returns ``out_dir``. The files are the same bytes for the same (n, kind, seed, size).
    Phantom files already in ``out_dir`` (from an earlier, longer stream) are deleted first,
    so the part holds exactly these ``n`` pairs.
    """
    out_dir = Path(out_dir)
    for stale in [*out_dir.glob("images/phantom_*.png"), *out_dir.glob("masks/phantom_*.png")]:
        stale.unlink()
    for index, phantom in enumerate(phantom_stream(n, kind, seed, size)):
        write_image_png(out_dir / "images" / f"phantom_{index:04d}.png", phantom.image)
        write_mask_png(out_dir / "masks" / f"phantom_{index:04d}.png", phantom.mask)
    return out_dir

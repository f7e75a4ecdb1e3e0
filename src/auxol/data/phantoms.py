"""Synthetic phantoms: streams of medical-looking images whose truth a base model gets systematically wrong.

``ultrasound``: each phantom is a B-mode-like image (speckle over smooth tissue, darker with depth) with
one hypoechoic lesion. The lesion has a dark core and, around it, a faint rim that is
only a little darker than the tissue; the truth is core + rim. A box prompt from the
truth encloses the whole lesion, yet a foundation model outlines the dark core: its
masks are consistently too small (LiteMedSAM: Dice about 0.8). The error is the same
on every image, so an auxiliary network can learn it online, which is what the
``auxol demo`` stream shows.

``vessels``: a fundus-like photograph (a bright disc on black, smooth reddish
background) crossed by a tree of thin dark vessels, 1.5 to 3.5 px wide; the truth is the
vessels. A box prompt of the whole tree covers most of the image, and a foundation model
returns a blob (LiteMedSAM: Dice about 0.2); a crop of the whole box squeezed to 64 px
keeps no vessel, so the auxiliary network can learn them only at a finer resolution.

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

PhantomKind = Literal["ultrasound", "vessels"]
KINDS: tuple[str, ...] = ("ultrasound", "vessels")

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
        image: uint8 (H, W, 3) RGB image (ultrasound: gray repeated in R, G and B).
        mask: bool (H, W), the truth: the lesion core and its rim, or the vessels.
        core: bool (H, W), the dark core alone (a subset of ``mask``); for vessels, the
            vessels wider than 2.5 px.
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


VESSEL_WIDTH = (1.5, 3.5)
"""Range of vessel widths in pixels (trunks widest, thinning at each branching)."""


def _vessel_tree(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Width map float32 (size, size) of a random branching vessel tree (0 off the vessels), and its centre (x, y).

    Four trunks leave a point near the centre; each is a random walk with smooth
    turning that branches a few times, and each branch is thinner than its parent.
    """
    width_map = np.zeros((size, size), np.float32)
    centre = rng.uniform(0.4, 0.6, size=2) * size
    stack = [(centre[0], centre[1], angle, VESSEL_WIDTH[1], 0) for angle in rng.uniform(0, 2 * np.pi) + np.arange(4) * np.pi / 2]
    step = size / 64
    while stack:
        x, y, angle, width, depth = stack.pop()
        for index in range(int(rng.uniform(20, 45))):
            angle += rng.normal(0, 0.12)
            nx, ny = x + step * np.cos(angle), y + step * np.sin(angle)
            cv2.line(width_map, (round(x * 8), round(y * 8)), (round(nx * 8), round(ny * 8)), float(width), thickness=max(1, round(width)), shift=3)
            x, y = nx, ny
            if not (0 <= x < size and 0 <= y < size):
                break
            if depth < 4 and index > 6 and rng.uniform() < 0.08:
                child = max(VESSEL_WIDTH[0], width * 0.75)
                stack.append((x, y, angle + rng.choice((-1, 1)) * rng.uniform(0.4, 0.9), child, depth + 1))
                width = max(VESSEL_WIDTH[0], width * 0.85)
    return width_map, centre


def vessel_phantom(seed: int, index: int, size: int = 256) -> Phantom:
    """Phantom ``index`` of the vessel stream with ``seed``: a size x size fundus-like image, see the module docstring."""
    rng = np.random.default_rng([seed, index, 1])
    width_map, _ = _vessel_tree(rng, size)
    mask = width_map > 0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    disc = np.hypot(xs - size / 2, ys - size / 2) <= 0.48 * size
    shading = 0.75 + 0.2 * _smooth_noise(rng, size, size / 6) - 0.3 * (np.hypot(xs - size / 2, ys - size / 2) / size)
    contrast = np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7) * 1.2, 0, 1)
    red = 0.85 * shading * (1 - 0.25 * contrast)
    green = 0.45 * shading * (1 - 0.55 * contrast)
    blue = 0.2 * shading * (1 - 0.4 * contrast)
    rgb = np.dstack([red, green, blue]) * disc[:, :, None] + rng.normal(0, 0.02, (size, size, 3))
    image = np.clip(255 * rgb, 0, 255).astype(np.uint8)
    return Phantom(image=image, mask=mask & disc, core=(width_map > 2.5) & disc)


def phantom_stream(n: int, kind: PhantomKind = "ultrasound", seed: int = 0, size: int = 256) -> list[Phantom]:
    """The first ``n`` phantoms of the stream (``kind``, ``seed``), in memory."""
    if kind not in KINDS:
        raise ConfigError(f"unknown phantom kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if n < 1 or size < 64:
        raise ConfigError(f"phantoms need n >= 1 and size >= 64, got n={n}, size={size}")
    make = ultrasound_phantom if kind == "ultrasound" else vessel_phantom
    return [make(seed, index, size) for index in range(n)]


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

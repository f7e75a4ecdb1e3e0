"""The simulated clinician of a stream: how each image is prompted, who rectifies it, and how well.

- Prompts come from the true mask (:func:`auxol.prompts.prompts_from_mask`: one box or
  point per component), boxes optionally shifted by the published "lrud" prompt noise
  (:func:`shift_box`).
- Only every ``interval``-th image whose base-model Dice is at most ``dice_threshold``
  is rectified (:func:`is_rectified`).
- The rectified mask is the truth, optionally degraded by annotation noise as in the
  AuxOL paper's robustness study (:func:`rectified_mask`, :func:`degrade_mask`): each
  component is dilated or eroded with a square kernel whose side is
  ``max(1, round(ratio * reference_size))`` pixels, ``reference_size`` being the smaller
  side of the component's bounding box (ratio 0.05 or 0.10 in the paper). A side of 1 px
  leaves the mask unchanged. Pixels outside the image count as foreground for erosion
  (OpenCV's default), so a mask touching the border stays there.

All random draws (box shifts, "either" noise) come from the stream's generator, in image
order, so a resumed run draws what an uninterrupted one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from auxol.errors import ConfigError
from auxol.prompts import Box, Prompt, PromptKind, clip_box, components, prompts_from_mask

NoiseKind = Literal["dilate", "erode", "either"]
"""Annotation noise: dilate or erode every rectified component, or draw one of the two per component."""


@dataclass(frozen=True)
class StreamOptions:
    """How the simulated clinician prompts and rectifies.

    Attributes:
        prompt: prompts derived from each true mask: ``"box"`` or ``"point"``.
        min_size: mask components narrower or shorter than this (px) give no prompt.
        box_margin: widen each box by this fraction of the image's long side before any
            shift (0 = tight boxes, the AuxOL paper's rule; ``auxol evaluate`` uses 0.02).
        prompt_noise: "lrud" box shift, as a fraction of the box size (box prompts
            only; 0 = tight boxes).
        interval: only every ``interval``-th image (0, k, 2k, ...) is rectified.
        dice_threshold: only images whose base-model Dice is <= this are rectified.
        annotation_noise: degrade each rectified mask by ``"dilate"``, ``"erode"`` or
            ``"either"`` (drawn per component), or ``None`` for exact masks.
        noise_ratio: side of the square noise kernel as a fraction of the smaller side
            of the component's bounding box (the paper's crop for a box prompt).
    """

    prompt: PromptKind = "box"
    min_size: int = 16
    box_margin: float = 0.0
    prompt_noise: float = 0.0
    interval: int = 1
    dice_threshold: float = 1.0
    annotation_noise: NoiseKind | None = None
    noise_ratio: float = 0.05

    def __post_init__(self) -> None:
        if self.prompt not in ("box", "point"):
            raise ConfigError(f"--prompt must be 'box' or 'point', got {self.prompt!r}")
        if self.interval < 1:
            raise ConfigError(f"--interval must be >= 1, got {self.interval}")
        if not 0 <= self.box_margin < 1:
            raise ConfigError(f"--box-margin must be in [0, 1), got {self.box_margin}")
        if not 0 <= self.prompt_noise < 1:
            raise ConfigError(f"--prompt-noise must be in [0, 1), got {self.prompt_noise}")
        if self.prompt_noise and self.prompt != "box":
            raise ConfigError("--prompt-noise shifts boxes; it needs --prompt box")
        if self.annotation_noise not in (None, "dilate", "erode", "either"):
            raise ConfigError(f"--annotation-noise must be dilate, erode or either, got {self.annotation_noise!r}")
        if not 0 <= self.noise_ratio < 1:
            raise ConfigError(f"--noise-ratio must be in [0, 1), got {self.noise_ratio}")


def shift_box(box: Box, ratio: float, rng: np.random.Generator, height: int, width: int) -> Box:
    """The published "lrud" prompt noise: move ``box`` by ``ratio`` of its size, then clip it to the image.

    The box moves left or right by ``ratio * box width`` and up or down by ``ratio * box
    height`` (width and height in pixels, x2 - x1 + 1; each direction drawn from ``rng``
    with probability 1/2, horizontal first), keeping its size; coordinates are then
    clipped to the (height, width) image, which shrinks a box pushed over an edge.
    Returned coordinates are floats (not rounded).
    """
    box_width, box_height = box[2] - box[0] + 1, box[3] - box[1] + 1
    dx, dy = ratio * box_width * rng.choice((-1, 1)), ratio * box_height * rng.choice((-1, 1))
    return clip_box(box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy, height, width)


def stream_prompts(truth: np.ndarray, options: StreamOptions, rng: np.random.Generator) -> list[Prompt]:
    """The prompts a clinician gives for bool (H, W) ``truth``, box-shifted by ``options.prompt_noise`` with ``rng``."""
    prompts = prompts_from_mask(truth, options.prompt, options.min_size, options.box_margin)
    if not options.prompt_noise:
        return prompts
    height, width = truth.shape
    return [Prompt.from_box(shift_box(p.box, options.prompt_noise, rng, height, width)) for p in prompts]


def is_rectified(index: int, base_dice: float, options: StreamOptions) -> bool:
    """Whether the clinician rectifies image ``index`` (0-based) whose base-model Dice is ``base_dice``."""
    return index % options.interval == 0 and base_dice <= options.dice_threshold


def degrade_mask(mask: np.ndarray, kind: NoiseKind, ratio: float, rng: np.random.Generator, reference_size: int) -> np.ndarray:
    """Dilate or erode ``mask`` (H, W), any dtype, nonzero = foreground; return bool (H, W).

    The kernel is square with side ``max(1, round(ratio * reference_size))`` px.
    ``kind="either"`` draws dilation or erosion with probability 1/2 each from ``rng``
    (one draw per call); "dilate" and "erode" use no random numbers.
    """
    if kind not in ("dilate", "erode", "either"):
        raise ConfigError(f"annotation noise must be 'dilate', 'erode' or 'either', got {kind!r}")
    if ratio < 0:
        raise ConfigError(f"annotation noise ratio must be >= 0, got {ratio}")
    if kind == "either":
        kind = "dilate" if rng.random() < 0.5 else "erode"
    side = max(1, round(ratio * reference_size))
    kernel = np.ones((side, side), dtype=np.uint8)
    morph = cv2.dilate if kind == "dilate" else cv2.erode
    return morph(np.asarray(mask).astype(bool).astype(np.uint8), kernel) > 0


def rectified_mask(truth: np.ndarray, options: StreamOptions, rng: np.random.Generator) -> np.ndarray:
    """The mask the clinician hands back: bool (H, W) ``truth``, each component degraded by the annotation noise.

    Each 8-connected component is dilated or eroded on its own with a kernel of side
    ``noise_ratio * min(its box height, its box width)``; the results are united.
    """
    if options.annotation_noise is None:
        return truth
    degraded = np.zeros_like(truth, dtype=bool)
    for (x1, y1, x2, y2), region in components(truth, min_size=1):
        reference = int(min(x2 - x1, y2 - y1)) + 1
        degraded |= degrade_mask(region, options.annotation_noise, options.noise_ratio, rng, reference)
    return degraded

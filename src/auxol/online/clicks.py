"""Clicks on a box-only foundation model: each click becomes a box whose extent is learned online.

LiteMedSAM and MedSAM were trained with box prompts only; given a click they return an
empty or meaningless mask (LiteMedSAM on DDTI: Dice 0.0004). Here a click (x, y) becomes
the box (x - left, y - top, x + right, y + bottom) and the foundation model segments
that box instead. The four extents are fractions of the image's long side, so objects
keep their scale across image sizes:

- candidate extents: until ``min_objects`` corrected objects exist, a fixed geometric
  range of square boxes (the default: 4% to 50% of the long side per side); then
  evenly spaced quantiles (10th to 90th percentile; the median alone for one candidate)
  of each extent over the last ``history`` corrected objects, measured from the click to
  the sides of the rectified component under it (:func:`object_extents`);
- the foundation model segments every candidate box in one batch and the candidate with
  the most stable mask wins (:func:`stability`, SAM's own score for picking among its
  masks): a box that fits the object gives a confident mask, a box much too small or too
  large an uncertain one;
- the winning box is refined on the image itself: the model's mask for it gives a
  tighter or wider box (its component under the click, plus a small margin), and the
  model is asked again (:func:`refine_box`).

Measured with LiteMedSAM, one click at each object's centroid, foundation model alone
(no learning), Dice: on DDTI (120 images, median object extent 0.32 of the long side per
side) square boxes of 0.09 / 0.18 / 0.25 / 0.35 / 0.5 per side give 0.10 / 0.39 / 0.62 /
0.82 / 0.66, the best of eight candidates 0.856 (the tight box: 0.856) and the most
stable one 0.723; prostate MRI: most stable 0.857 (tight box 0.905); Kvasir: 0.906
(0.967). The auxiliary network's crop is built around the final box, and it can be
shown the click as a Gaussian map (:func:`click_map`).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import cv2
import numpy as np

from auxol.prompts import Box, Point, Prompt

Extents = tuple[float, float, float, float]
"""(left, top, right, bottom): distances from the click to the object's box sides, as fractions of the image's long side."""

ExtentSource = Literal["default", "learned"]


def click_of(prompt: Prompt) -> Point | None:
    """The click a point-only prompt stands for: the mean of its foreground points; ``None`` for a box or no foreground point."""
    positives = [point for point, label in zip(prompt.points, prompt.labels) if label == 1]
    if prompt.box is not None or not positives:
        return None
    xs, ys = zip(*positives)
    return float(np.mean(xs)), float(np.mean(ys))


def _component_at(mask: np.ndarray, point: Point) -> np.ndarray | None:
    """The 8-connected component of bool (H, W) ``mask`` under ``point`` (x, y), else the one nearest to it; ``None`` if ``mask`` is empty."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    height, width = mask.shape
    x, y = min(max(round(point[0]), 0), width - 1), min(max(round(point[1]), 0), height - 1)
    label = labels[y, x]
    if label == 0:
        ys, xs = np.nonzero(labels)
        nearest = np.argmin((xs - point[0]) ** 2 + (ys - point[1]) ** 2)
        label = labels[ys[nearest], xs[nearest]]
    return labels == label


def object_extents(mask: np.ndarray, point: Point) -> Extents | None:
    """Extents (see :data:`Extents`) of the component of bool (H, W) ``mask`` under the click, or nearest to it.

    The box sides are the component's extreme pixels (inclusive); ``None`` when ``mask``
    is empty. A click outside its component's box gives a negative extent on that side.
    """
    region = _component_at(np.asarray(mask, dtype=bool), point)
    if region is None:
        return None
    ys, xs = np.nonzero(region)
    long_side = max(mask.shape)
    x, y = point
    return tuple(float(v) / long_side for v in (x - xs.min(), y - ys.min(), xs.max() - x, ys.max() - y))


def click_box(point: Point, extents: Extents, height: int, width: int) -> Box:
    """The box (x1, y1, x2, y2) the extents give around ``point`` in an (height, width) image, clipped to it.

    Each side is at least half a pixel from the click, so the box is never empty.
    """
    long_side = max(height, width)
    left, top, right, bottom = (max(extent * long_side, 0.5) for extent in extents)
    x, y = point
    return (
        float(np.clip(x - left, 0, width - 1)), float(np.clip(y - top, 0, height - 1)),
        float(np.clip(x + right, 0, width - 1)), float(np.clip(y + bottom, 0, height - 1)),
    )


def refine_box(logits: np.ndarray, point: Point, margin: float) -> Box | None:
    """The box of the foundation model's mask (``logits > 0``, float (H, W)) around the click, widened.

    The component under the click (or nearest to it) gives the box; each side moves out by
    ``margin`` times the image's long side, clipped to the image. ``None`` when the mask
    is empty (keep the box it came from).
    """
    region = _component_at(logits > 0, point)
    if region is None:
        return None
    height, width = logits.shape
    ys, xs = np.nonzero(region)
    pad = margin * max(height, width)
    return (
        float(max(xs.min() - pad, 0)), float(max(ys.min() - pad, 0)),
        float(min(xs.max() + pad, width - 1)), float(min(ys.max() + pad, height - 1)),
    )


def click_map(point: Point, box: tuple[int, int, int, int], size: int, sigma: float) -> np.ndarray:
    """A Gaussian bump at ``point`` on the crop ``box`` resized to size x size: float32 (size, size), peak 1.

    ``sigma`` is a fraction of ``size`` (the crop's side after resizing), so the bump has
    the same shape on every crop.
    """
    x1, y1, x2, y2 = box
    u = (point[0] - x1 + 0.5) / (x2 - x1 + 1) * size - 0.5
    v = (point[1] - y1 + 0.5) / (y2 - y1 + 1) * size - 0.5
    grid = np.arange(size, dtype=np.float32)
    spread = 2 * (sigma * size) ** 2
    return np.exp(-((grid[None, :] - u) ** 2) / spread - ((grid[:, None] - v) ** 2) / spread).astype(np.float32)


def stability(logits: np.ndarray, offset: float = 1.0) -> float:
    """SAM's stability score of one mask: |logits > offset| / |logits > -offset|, in [0, 1] (1 for an empty mask).

    ``logits`` is float (H, W); a mask whose boundary moves little when the threshold
    moves by ``offset`` scores near 1.
    """
    return float((np.count_nonzero(logits > offset) + 1) / (np.count_nonzero(logits > -offset) + 1))


class ExtentEstimator:
    """Candidate extents for the next clicked object, from the objects corrected so far (see the module notes).

    Args:
        default_range: (smallest, largest) extent of the default candidates, fractions of
            the long side, used until ``min_objects`` objects are known.
        candidates: number of candidate extents (1: one box, no choice).
        min_objects: corrected objects needed before the learned candidates replace the default.
        history: the learned candidates use the last ``history`` objects.
    """

    def __init__(self, default_range: tuple[float, float], candidates: int, min_objects: int, history: int) -> None:
        self.default_range = default_range
        self.candidates = candidates
        self.min_objects = min_objects
        self.objects: deque[Extents] = deque(maxlen=history)

    def __len__(self) -> int:
        return len(self.objects)

    def add(self, extents: Extents) -> None:
        self.objects.append(tuple(float(v) for v in extents))

    def estimate(self) -> tuple[list[Extents], ExtentSource]:
        """The candidate extents for the next click, and whether they are the ``"default"`` or ``"learned"`` ones.

        Default: ``candidates`` square extents spaced geometrically over ``default_range``
        (one candidate: its geometric mean). Learned: per side, the quantiles at
        ``candidates`` levels evenly spaced over [0.1, 0.9] (one candidate: the median).
        """
        if len(self.objects) < max(self.min_objects, 1):
            low, high = self.default_range
            sizes = np.geomspace(low, high, self.candidates) if self.candidates > 1 else [np.sqrt(low * high)]
            return [(float(size),) * 4 for size in sizes], "default"
        levels = np.linspace(0.1, 0.9, self.candidates) if self.candidates > 1 else [0.5]
        quantiles = np.quantile(np.array(self.objects), levels, axis=0)
        return [tuple(float(v) for v in row) for row in quantiles], "learned"

    def state_dict(self) -> dict[str, Any]:
        return {"objects": [list(extents) for extents in self.objects]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.objects.clear()
        self.objects.extend(tuple(extents) for extents in state["objects"])

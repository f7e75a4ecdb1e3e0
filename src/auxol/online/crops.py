"""Crops: where the auxiliary network looks, and the one crop-and-resize it sees through.

Learning and prediction both build their inputs with :func:`crop_resize`, so the
auxiliary network is trained on exactly what it is later asked to segment. Boxes here are
integer pixel boxes ``(x1, y1, x2, y2)``, inclusive, inside the image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from auxol.prompts import Box, Prompt, widen_box

PixelBox = tuple[int, int, int, int]

POINT_CROP_WIDEN = 0.1
"""Point prompts: the crop is the base mask's bounding box widened by this fraction per side."""


def pixel_box(box: Box, height: int, width: int) -> PixelBox:
    """The smallest integer box holding the float ``box``, clipped to the (height, width) image."""
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2, y2 = min(width - 1, math.ceil(box[2])), min(height - 1, math.ceil(box[3]))
    return x1, y1, x2, y2


def crop_box(prompt: Prompt, base_logits: np.ndarray, margin: float = 0.0) -> PixelBox:
    """The region the auxiliary network sees for one prompt.

    Args:
        prompt: the prompt given to the foundation model.
        base_logits: float (H, W) foundation-model logits for this prompt.
        margin: box prompts only: widen each side by this fraction of the box size.

    A box prompt gives its box (widened by ``margin``). A point prompt gives the bounding
    box of the convex hull of the base mask (``base_logits > 0``) -- the same as the
    mask's own bounding box -- widened by :data:`POINT_CROP_WIDEN` per side, or the whole
    image when the base mask is empty.
    """
    height, width = base_logits.shape
    if prompt.box is not None:
        return pixel_box(widen_box(prompt.box, margin, height, width), height, width)
    ys, xs = np.nonzero(base_logits > 0)
    if xs.size == 0:
        return 0, 0, width - 1, height - 1
    hull_box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    return pixel_box(widen_box(hull_box, POINT_CROP_WIDEN, height, width), height, width)


def structure_width(mask: np.ndarray) -> float | None:
    """The typical width in pixels of the structures in bool (H, W) ``mask``: 2 * area / boundary length.

    The boundary is the number of foreground pixels with a background 4-neighbour (or on
    the image border). A tube of width w gives about w, a disc of radius r about r; ``None``
    for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    inner = cv2.erode(mask.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = np.count_nonzero(mask) - np.count_nonzero(inner)
    return float(2 * np.count_nonzero(mask) / boundary)


def tiles(box: PixelBox, size: int, scale: float, max_tiles: int) -> list[PixelBox]:
    """Cut ``box`` into a grid of tiles, each resized to ``size`` px by a factor of at least ``scale`` where the bound allows.

    Args:
        box: the crop box (x1, y1, x2, y2), inclusive.
        size: side of the auxiliary input in pixels.
        scale: the smallest resize factor wanted (input px per image px; 0.5 keeps a
            4 px structure 2 px wide); capped at 1 (tiles never smaller than ``size``).
        max_tiles: cost bound: the grid never has more tiles; when it would, the tiles
            grow and the factor drops below ``scale``.

    Returns the tiles row by row, covering ``box`` exactly without overlap; ``[box]``
    when the whole box already meets ``scale``.
    """
    height, width = box_shape(box)
    side = size / min(scale, 1.0)  # image pixels per tile side
    columns, rows = math.ceil(width / side), math.ceil(height / side)
    while columns * rows > max_tiles:
        side *= 1.05
        columns, rows = math.ceil(width / side), math.ceil(height / side)
    x1, y1, x2, y2 = box
    xs = np.linspace(x1, x2 + 1, columns + 1).round().astype(int)
    ys = np.linspace(y1, y2 + 1, rows + 1).round().astype(int)
    return [(int(xs[i]), int(ys[j]), int(xs[i + 1]) - 1, int(ys[j + 1]) - 1) for j in range(rows) for i in range(columns)]


def box_shape(box: PixelBox) -> tuple[int, int]:
    """(height, width) of the region ``box`` covers."""
    return box[3] - box[1] + 1, box[2] - box[0] + 1


def crop(array: np.ndarray, box: PixelBox) -> np.ndarray:
    """``array[y1:y2+1, x1:x2+1]`` for an (H, W) or (H, W, C) array."""
    x1, y1, x2, y2 = box
    return array[y1 : y2 + 1, x1 : x2 + 1]


def crop_resize(array: np.ndarray, box: PixelBox, size: int) -> np.ndarray:
    """Crop ``array`` (H, W) or (H, W, C) to ``box`` and resize to float32 (size, size[, C]).

    Values keep their scale (a 0/1 mask gives values in [0, 1]). Shrinking uses area
    averaging (no aliasing), enlarging bilinear interpolation.
    """
    region = crop(array, box).astype(np.float32)
    interpolation = cv2.INTER_AREA if min(region.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interpolation)


def aux_input(
    image: np.ndarray,
    base_mask: np.ndarray,
    box: PixelBox,
    size: int,
    four_channel: bool,
    click_plane: np.ndarray | None = None,
) -> torch.Tensor:
    """The auxiliary network's input for one crop: float32 (3, 4 or 5, size, size) in [0, 1].

    Channels: R, G, B of the uint8 (H, W, 3) ``image`` divided by 255, then (if
    ``four_channel``) the bool (H, W) ``base_mask``, then (if given) ``click_plane``, a
    float (size, size) map in [0, 1] already on the resized crop. The image is not masked
    by the 4th channel (the published code's RGBA resize premultiplied it).
    """
    planes = np.dstack([image, base_mask.astype(np.float32) * 255]) if four_channel else image
    resized = crop_resize(planes, box, size) / 255.0
    if click_plane is not None:
        resized = np.dstack([resized, click_plane])
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32))


def aux_target(rectified: np.ndarray, box: PixelBox, size: int) -> torch.Tensor:
    """The training target for one crop: float32 (1, size, size), the resized mask thresholded at 0.5."""
    return torch.from_numpy(crop_resize(rectified.astype(np.float32), box, size) > 0.5).float()[None]


def resize_to_box(logits: torch.Tensor, box: PixelBox) -> np.ndarray:
    """Auxiliary logits (S, S) back to the crop's own size: float32 (h, w), bilinear."""
    resized = F.interpolate(logits[None, None].float(), size=box_shape(box), mode="bilinear", align_corners=False)
    return resized[0, 0].cpu().numpy()


def paste(full: np.ndarray, crop_mask: np.ndarray, box: PixelBox) -> None:
    """OR the bool (h, w) ``crop_mask`` into the bool (H, W) ``full`` at ``box``, in place."""
    x1, y1, x2, y2 = box
    full[y1 : y2 + 1, x1 : x2 + 1] |= crop_mask

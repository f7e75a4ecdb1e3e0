"""Training examples for fine-tuning: labelled slices, prompts drawn from their masks, light augmentation.

A dataset is a folder of parts or a CSV list (:func:`auxol.data.load_dataset`); 3-D
volumes are first cut into such a folder by :mod:`auxol.data.volumes`. Masks hold one
integer value per class: binary masks (``classes=1``) are read with
:func:`auxol.data.read_mask`, label maps (``classes>1``) with
:func:`auxol.data.read_label_map`, whose values must lie in 0..classes.

Each item is drawn with its own generator seeded by (seed, epoch, index), so a run is
reproducible whatever the number of workers or processes, and a resumed run draws the
same items as an uninterrupted one.

Prompts per item (``prompt``):

- ``box``: the up to ``max_objects`` (3) largest components of the mask
  (:func:`auxol.prompts.components`), each box side pushed out by a random 0-10 % of the
  box's width or height; each box's target is its own component. A mask with no
  component of ``min_size`` gets the rule of :func:`auxol.prompts.prompts_from_mask`
  (one whole-image box) with the whole mask as target.
- ``point``: one foreground point drawn uniformly inside each of those components.
- ``none``: no prompt; the target is the whole mask (classes=1) or one map per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from auxol.data import Pair, load_dataset, read_image, read_label_map, read_mask
from auxol.errors import ConfigError, DataError
from auxol.finetune.config import EmptyPolicy, PromptMode
from auxol.prompts import Prompt, components, prompts_from_mask



@dataclass(frozen=True)
class TrainingItem:
    """One training example after augmentation.

    Attributes:
        name: the pair's stem.
        image: uint8 (H, W, 3) RGB.
        prompts: the prompts, one per target; empty for prompt mode ``none``.
        targets: float32 (N, H, W) in {0, 1}: one map per prompt, or per class (mode none).
    """

    name: str
    image: np.ndarray
    prompts: list[Prompt]
    targets: np.ndarray


def read_labels(pair: Pair, classes: int) -> np.ndarray:
    """The label map int64 (H, W) of ``pair``: 0 background, 1..classes foreground.

    Raises DataError naming the mask file for values outside 0..classes.
    """
    if classes == 1:
        return read_mask(pair.mask_path).astype(np.int64)
    labels = read_label_map(pair.mask_path)
    outside = np.setdiff1d(np.unique(labels), np.arange(classes + 1))
    if outside.size:
        raise DataError(f"{pair.mask_path}: label values {outside.tolist()} outside the declared classes 0..{classes}")
    return labels


def list_examples(data: str, classes: int, empty: EmptyPolicy) -> list[Pair]:
    """The pairs of the dataset folder or CSV list ``data`` usable for training, in dataset order.

    Every mask is read once to check its labels; with ``empty="skip"`` pairs whose mask
    has no foreground are left out. Raises DataError when no pair is left.
    """
    if empty not in ("skip", "keep"):
        raise ConfigError(f"--empty must be 'skip' or 'keep', got {empty!r}")
    pairs = [pair for listing in load_dataset(data) for pair in listing.pairs]
    kept = [pair for pair in pairs if empty == "keep" or read_labels(pair, classes).any()]
    if not kept:
        raise DataError(f"{data}: no image/mask pair with foreground to train on")
    return kept


def widen_randomly(box: tuple[float, ...], rng: np.random.Generator, max_ratio: float, height: int, width: int) -> tuple[float, ...]:
    """Push each side of the inclusive box out by its own random 0..max_ratio of the box size, clipped to the image."""
    x1, y1, x2, y2 = box
    box_width, box_height = x2 - x1 + 1, y2 - y1 + 1
    left, top, right, bottom = rng.uniform(0, max_ratio, size=4)
    return (
        max(0.0, x1 - left * box_width),
        max(0.0, y1 - top * box_height),
        min(width - 1.0, x2 + right * box_width),
        min(height - 1.0, y2 + bottom * box_height),
    )


def prompted_targets(
    mask: np.ndarray, kind: PromptMode, rng: np.random.Generator, max_objects: int = 3, widen: float = 0.1, min_size: int = 16
) -> tuple[list[Prompt], np.ndarray]:
    """Training prompts of kind ``box`` or ``point`` for the bool (H, W) ``mask`` and their float32 (N, H, W) targets."""
    height, width = mask.shape
    found = sorted(components(mask, min_size), key=lambda item: -int(item[1].sum()))[:max_objects]
    if not found:
        return prompts_from_mask(mask, kind, min_size)[:1], mask[None].astype(np.float32)
    prompts = []
    for box, region in found:
        if kind == "box":
            prompts.append(Prompt.from_box(widen_randomly(box, rng, widen, height, width)))
        else:
            ys, xs = np.nonzero(region)
            chosen = rng.integers(len(xs))
            prompts.append(Prompt.from_point(float(xs[chosen]), float(ys[chosen])))
    return prompts, np.stack([region for _, region in found]).astype(np.float32)


def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The study's light augmentation on uint8 (H, W, 3) ``image`` and int (H, W) ``labels``; sizes kept.

    Colour jitter (brightness, contrast and saturation factors in [0.7, 1.3]),
    histogram equalisation with probability 0.1, then one joint affine warp: rotation
    up to 45 degrees, zoom so the visible area is 0.5-1.5 times the image, random shift
    within the slack. Labels are warped with nearest-neighbour; outside is background.
    """
    pixels = image.astype(np.float32)
    pixels *= rng.uniform(0.7, 1.3)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.7, 1.3) + mean
    gray = pixels.mean(axis=2, keepdims=True)
    pixels = (pixels - gray) * rng.uniform(0.7, 1.3) + gray
    image = np.clip(pixels, 0, 255).astype(np.uint8)
    if rng.random() < 0.1:
        image = np.stack([cv2.equalizeHist(np.ascontiguousarray(image[..., c])) for c in range(3)], axis=2)
    height, width = labels.shape
    zoom = 1.0 / np.sqrt(rng.uniform(0.5, 1.5))
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-45, 45), zoom)
    slack = max(zoom - 1.0, 0.0) / 2
    matrix[:, 2] += rng.uniform(-slack, slack, size=2) * (width, height)
    image = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
    warped = cv2.warpAffine(labels.astype(np.float32), matrix, (width, height), flags=cv2.INTER_NEAREST, borderValue=0)
    return image, warped.astype(np.int64)


class FinetuneDataset(torch.utils.data.Dataset):
    """Training items drawn from ``pairs`` (see the module docstring); call :meth:`set_epoch` each epoch.

    Args:
        pairs: image/mask pairs (see :func:`list_examples`).
        prompt: none, box or point.
        classes: number of foreground classes (values 1..classes in the masks).
        augment: apply :func:`augment`.
        seed: base of every item's random generator.
        min_size: components narrower or shorter than this (px) are not prompted.
    """

    def __init__(self, pairs: list[Pair], prompt: PromptMode, classes: int, augment: bool, seed: int, min_size: int = 16) -> None:
        if prompt not in ("none", "box", "point"):
            raise ConfigError(f"--prompt must be none, box or point, got {prompt!r}")
        if classes > 1 and prompt != "none":
            raise ConfigError(f"--classes {classes} needs --prompt none (prompts select one object, not classes)")
        self.pairs, self.prompt, self.classes = pairs, prompt, classes
        self.augment, self.seed, self.min_size = augment, seed, min_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> TrainingItem:
        pair = self.pairs[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, labels = read_image(pair.image_path), read_labels(pair, self.classes)
        if labels.shape != image.shape[:2]:
            raise DataError(f"{pair.mask_path}: mask size {labels.shape} differs from image {pair.image_path} {image.shape[:2]}")
        if self.augment:
            image, labels = augment(image, labels, rng)
        if self.prompt == "none":
            classes = np.arange(1, self.classes + 1)
            targets = (labels[None] == classes[:, None, None]).astype(np.float32)
            return TrainingItem(pair.stem, image, [], targets)
        prompts, targets = prompted_targets(labels > 0, self.prompt, rng, min_size=self.min_size)
        return TrainingItem(pair.stem, image, prompts, targets)

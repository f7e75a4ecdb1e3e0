"""The AuxOL learner: predict an image, then learn from its rectified mask.

:meth:`AuxOL.predict` runs the frozen foundation model, the auxiliary U-Net on one crop
per prompt and the fusion, with the weights as they are; :meth:`AuxOL.learn` takes the
clinician's rectified mask (or ``None``), records the best fusion weight of each crop,
adds the crops to the online batch and takes the optimiser steps. Prediction never reads
the image's own mask, so a stream of ``predict(t)``, ``learn(t)`` is prequential.
See :mod:`auxol.online` for how this differs from the published code.
"""

from __future__ import annotations

import copy
from collections import deque

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from auxol.errors import DataError
from auxol.models import Embedding, PromptableModel
from auxol.online import clicks, crops
from auxol.online.config import DEFAULT_PRESET, AuxOLConfig
from auxol.online.fusion import AlphaHistory, best_alpha, fused_logits
from auxol.online.loss import boundary_weight, structure_loss
from auxol.online.queue import OnlineBatch
from auxol.online.state_file import global_rng_state, read_state_file, set_global_rng_state, write_state_file
from auxol.online.unet import AuxUNet
from auxol.prompts import DEFAULT_BOX_MARGIN, Box, Point, Prompt
from auxol.seeding import seed_everything

Batch = tuple[torch.Tensor, torch.Tensor]

WIDTH_HISTORY = 32
"""``min_width``: the structure width is the median over this many last corrected masks."""

CLICK_SIGMA = 0.1
"""Spread of the click channel's Gaussian, as a fraction of the crop side."""


@dataclass
class Crop:
    """One prompt's crop as predicted, with what :meth:`AuxOL.learn` needs.

    Attributes:
        box: crop box (x1, y1, x2, y2) in image pixels, inclusive; the crop is (h, w).
        aux_input: float32 (C, S, S) auxiliary input in [0, 1].
        base_logits: float32 (h, w) foundation-model logits on the crop (for a click
            turned into a box: the model's logits for that box).
        aux_logits: float32 (h, w) auxiliary logits resized to the crop.
        fused_prob: float32 (h, w) probability the mask was thresholded from (> 0.5);
            the foundation model's sigmoid while no fusion weight exists.
        click: the click (x, y) this crop's box was estimated from, or ``None`` (and on
            every tile but a prompt's first).
        prompt: index of the prompt this crop belongs to (several crops: tiles of it).
    """

    box: crops.PixelBox
    aux_input: torch.Tensor
    base_logits: np.ndarray
    aux_logits: np.ndarray
    fused_prob: np.ndarray
    click: Point | None = None
    prompt: int = 0


@dataclass(frozen=True)
class AlphaEntry:
    """One rectified crop in the learner's fusion history (an entry of :attr:`AuxOL.alpha_log`).

    Attributes:
        image: index of the image among those the learner has seen (0-based).
        crop: index of the crop among the image's prompts.
        best_alpha: the fusion weight in {0, alpha_step, ..., alpha_max} that fitted the
            rectified mask best (weight of the foundation model).
        used_alpha: the weight the image's prediction used, or None (foundation model alone).
    """

    image: int
    crop: int
    best_alpha: float
    used_alpha: float | None


@dataclass
class Prediction:
    """What :meth:`AuxOL.predict` returns for one image of size (H, W) with N prompts.

    Attributes:
        base_logits: float32 (N, H, W) foundation-model logits per prompt as given.
        base_mask: bool (H, W) union of ``base_logits > 0``: the raw foundation model.
        fm_mask: bool (H, W) union of the foundation model's masks that AuxOL fuses:
            ``base_mask``, except that a click turned into a box (``click_box``) gives the
            model's mask for that box; no learned network is involved.
        boxcut_mask: bool (H, W) the foundation model's masks (those of ``fm_mask``) kept
            inside their crop boxes only (the published assembly without learning).
        mask: bool (H, W) AuxOL's final mask.
        alpha: fusion weight used (weight of the foundation model), or ``None`` while
            too few alphas exist and the foundation model is used alone.
        crops: one :class:`Crop` per prompt, or per tile of a prompt (``min_width``), in
            prompt order.
        click_boxes: per prompt, the box (x1, y1, x2, y2) the foundation model was given
            for its click, or ``None`` (not a click, or ``click_box`` off).
        click_extent: ``"default"`` when the clicks' boxes had the fixed default extent
            (too few corrected objects yet), ``"learned"`` when it came from them,
            ``None`` when no click was turned into a box.
    """

    base_logits: np.ndarray
    base_mask: np.ndarray
    fm_mask: np.ndarray
    boxcut_mask: np.ndarray
    mask: np.ndarray
    alpha: float | None
    crops: list[Crop]
    click_boxes: list[Box | None]
    click_extent: clicks.ExtentSource | None


class AuxOL:
    """Auxiliary online learning around a frozen promptable model.

    Args:
        model: the frozen foundation model; the auxiliary network lives on its device.
        config: options; ``None`` gives the :data:`~auxol.online.config.DEFAULT_PRESET`.
        background: :meth:`learn` hands the optimiser steps to one worker thread and
            returns at once; steps apply in order, :meth:`predict` uses the weights as
            they are, :meth:`flush` waits. Off: :meth:`learn` returns after its steps.

    Creating a learner seeds Python, NumPy and PyTorch with ``config.seed`` and sets
    ``torch.use_deterministic_algorithms(config.deterministic, warn_only=True)``.
    """

    def __init__(self, model: PromptableModel, config: AuxOLConfig | None = None, background: bool = False) -> None:
        self.model = model
        self.config = config or AuxOLConfig.preset(DEFAULT_PRESET)
        seed_everything(self.config.seed)
        torch.use_deterministic_algorithms(self.config.deterministic, warn_only=True)
        self.device = model.device
        in_channels = 3 + int(self.config.four_channel) + int(self.config.click_channel)
        self.net = AuxUNet(in_channels=in_channels, width=self.config.width).to(self.device)
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = self.config.bn_momentum
        self.memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        self.queue = OnlineBatch(self.config.queue_length)
        self.alphas = AlphaHistory(self.config.alpha_history)
        self.alpha_log: list[AlphaEntry] = []
        self.extents = clicks.ExtentEstimator(
            (self.config.click_extent_min, self.config.click_extent_max), self.config.click_candidates,
            self.config.click_min_objects, self.config.click_history,
        )
        self.widths: deque[float] = deque(maxlen=WIDTH_HISTORY)
        self.images_seen = 0
        self.images_rectified = 0
        self._lock = threading.Lock()  # guards the network, optimiser, online batch, alphas and counters
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auxol-learn") if background else None
        self._pending: list[Future] = []

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        image: np.ndarray,
        prompts: list[Prompt],
        embedding: Embedding | None = None,
        base_logits: np.ndarray | None = None,
    ) -> Prediction:
        """Segment one image: foundation model, auxiliary network on each crop, fusion.

        Args:
            image: uint8 (H, W, 3) RGB image.
            prompts: one prompt per object, in image pixels.
            embedding: the image's ``model.embed`` output, to skip the image encoder.
            base_logits: float32 (N, H, W) foundation-model logits for ``prompts``, to
                skip the foundation model for them (e.g. cached from a previous run). A
                click turned into a box (``click_box``) is still decoded: with
                ``embedding``, or the image is embedded.
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"AuxOL.predict: expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        for prompt in prompts:
            prompt.check_inside(height, width)
        if base_logits is None:
            if prompts and embedding is None:
                embedding = self.model.embed(image)
            base_logits = self._foundation_logits(image, prompts, embedding)
        if base_logits.shape != (len(prompts), height, width):
            expected = (len(prompts), height, width)
            raise DataError(f"AuxOL.predict: base_logits of shape {base_logits.shape}, expected {expected}")

        points = [clicks.click_of(prompt) if self.config.click_box else None for prompt in prompts]
        fm_logits, click_boxes, click_extent = self._click_logits(image, points, base_logits, embedding)
        prompt_boxes = [
            crops.crop_box(prompt if box is None else Prompt.from_box(box), logits, self.config.crop_margin)
            for prompt, box, logits in zip(prompts, click_boxes, fm_logits)
        ]
        with self._lock:
            scale = self._tile_scale()
        tiled = [
            (index, tile)
            for index, box in enumerate(prompt_boxes)
            for tile in ([box] if scale is None else crops.tiles(box, self.config.crop_size, scale, self.config.max_tiles))
        ]
        boxes = [tile for _, tile in tiled]
        inputs = [
            crops.aux_input(
                image, fm_logits[index] > 0, tile, self.config.crop_size, self.config.four_channel,
                self._click_plane(prompts[index], points[index], tile) if self.config.click_channel else None,
            )
            for index, tile in tiled
        ]
        with self._lock:  # the weights, the online batch and the alphas of one moment
            aux_logits = self._aux_logits(inputs)
            alpha = self.alphas.current()

        mask = np.zeros((height, width), dtype=bool)
        boxcut_mask = np.zeros((height, width), dtype=bool)
        covered = np.zeros((height, width), dtype=bool)
        predicted: list[Crop] = []
        for position, ((index, box), aux_input, aux) in enumerate(zip(tiled, inputs, aux_logits)):
            base_crop = crops.crop(fm_logits[index], box)
            aux_crop = crops.resize_to_box(aux, box)
            fused = base_crop if alpha is None else fused_logits(base_crop, aux_crop, alpha)
            crops.paste(mask, fused > 0, box)
            crops.paste(boxcut_mask, base_crop > 0, box)
            crops.paste(covered, np.ones(base_crop.shape, dtype=bool), box)
            first_tile = position == 0 or tiled[position - 1][0] != index
            click = points[index] if first_tile else None
            predicted.append(Crop(box, aux_input, base_crop, aux_crop, expit(fused), click, index))
        fm_mask = (fm_logits > 0).any(axis=0)
        if self.config.keep_base_outside_crop:
            mask |= fm_mask & ~covered
        return Prediction(
            base_logits=base_logits,
            base_mask=(base_logits > 0).any(axis=0),
            fm_mask=fm_mask,
            boxcut_mask=boxcut_mask,
            mask=mask,
            alpha=alpha,
            crops=predicted,
            click_boxes=click_boxes,
            click_extent=click_extent,
        )

    def _foundation_logits(self, image: np.ndarray, prompts: list[Prompt], embedding: Embedding | None) -> np.ndarray:
        if not prompts:
            return np.zeros((0, *image.shape[:2]), dtype=np.float32)
        return self.model.segment_many(embedding, prompts)

    def _click_logits(
        self, image: np.ndarray, points: list[Point | None], base_logits: np.ndarray, embedding: Embedding | None
    ) -> tuple[np.ndarray, list[Box | None], clicks.ExtentSource | None]:
        """The foundation model's logits to fuse: ``base_logits`` with each click's map replaced by its box's.

        Returns (logits float32 (N, H, W), the box given for each click or ``None``, where
        the extents came from). Each click's candidate boxes (:class:`clicks.ExtentEstimator`)
        are segmented in one batch, the most stable mask picks one, and that box is
        re-fitted ``click_refine`` times to the model's mask for it.
        """
        clicked = [index for index, point in enumerate(points) if point is not None]
        if not clicked:
            return base_logits, [None] * len(points), None
        height, width = base_logits.shape[1:]
        if embedding is None:
            embedding = self.model.embed(image)
        with self._lock:
            candidates, source = self.extents.estimate()
        boxes, logits = [], []
        for index in clicked:
            tried = [clicks.click_box(points[index], extents, height, width) for extents in candidates]
            tried_logits = self.model.segment_many(embedding, [Prompt.from_box(box) for box in tried])
            best = int(np.argmax([clicks.stability(candidate) for candidate in tried_logits]))
            boxes.append(tried[best])
            logits.append(tried_logits[best])
        for _ in range(self.config.click_refine):
            boxes = [
                clicks.refine_box(box_logits, points[index], DEFAULT_BOX_MARGIN) or box
                for index, box, box_logits in zip(clicked, boxes, logits)
            ]
            logits = self.model.segment_many(embedding, [Prompt.from_box(box) for box in boxes])
        fm_logits = base_logits.copy()
        fm_logits[clicked] = logits
        click_boxes: list[Box | None] = [None] * len(points)
        for index, box in zip(clicked, boxes):
            click_boxes[index] = box
        return fm_logits, click_boxes, source

    def _tile_scale(self) -> float | None:
        """``min_width``: the resize factor that keeps the corrected structures that wide, or ``None`` (no tiling).

        ``None`` while ``min_width`` is 0 or no mask has been corrected yet. The caller
        holds the learner's lock.
        """
        if not self.config.min_width or not self.widths:
            return None
        return self.config.min_width / float(np.median(self.widths))

    def _click_plane(self, prompt: Prompt, point: Point | None, box: crops.PixelBox) -> np.ndarray:
        """The click channel of one crop: a Gaussian at the click, a box prompt's centre, or the mean of its points."""
        if point is None:
            if prompt.box is not None:
                x1, y1, x2, y2 = prompt.box
                point = ((x1 + x2) / 2, (y1 + y2) / 2)
            else:
                point = tuple(np.mean(prompt.points, axis=0))
        return clicks.click_map(point, box, self.config.crop_size, CLICK_SIGMA)

    def _foundation_logits(self, image: np.ndarray, prompts: list[Prompt], embedding: Embedding | None) -> np.ndarray:
        if not prompts:
            return np.zeros((0, *image.shape[:2]), dtype=np.float32)
        if embedding is None:
            embedding = self.model.embed(image)
        return self.model.segment_many(embedding, prompts)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Auxiliary logits, float32 (B, 1, S, S), for inputs (B, C, S, S), in the network's current mode."""
        inputs = inputs.to(self.device).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16):
            return self.net(inputs).float()

    @torch.no_grad()
    def _aux_logits(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Auxiliary logits on the CPU, float32 (n, S, S), one per crop input, without changing any state.

        The caller holds the learner's lock.
        """
        if not inputs:
            size = self.config.crop_size
            return torch.zeros((0, size, size))
        if self.config.predict_batchnorm == "running":
            self.net.eval()
            return self._forward(torch.stack(inputs))[:, 0].cpu()
        # "queue": each crop is normalised with the online batch it would join, as the
        # published training forward does; the running averages are left untouched.
        self.net.train()
        saved_buffers = [buffer.clone() for buffer in self.net.buffers()]
        queued = self.queue.inputs()
        newest = [self._forward(torch.stack((queued + [x])[-self.config.queue_length :]))[-1, 0] for x in inputs]
        for buffer, saved in zip(self.net.buffers(), saved_buffers):
            buffer.copy_(saved)
        return torch.stack(newest).cpu()

    # -------------------------------------------------------------------- learning

    def learn(self, prediction: Prediction, rectified: np.ndarray | None) -> None:
        """Learn from the image just predicted.

        Args:
            prediction: this learner's :meth:`predict` output for the image.
            rectified: bool (H, W) mask the clinician gave for the image, or ``None`` when
                the image was not rectified.

        For each crop with a rectified mask: record its best fusion weight, append it to
        the online batch (and, for a click, the extent of the rectified object under it to
        the click-box estimator); after each prompt's crops (one, or its tiles), take
        ``steps_per_image`` optimiser steps on the batch. Without
        a mask, only the steps on the existing batch (if ``train_on_unrectified``).
        """
        if rectified is not None:
            rectified = np.asarray(rectified).astype(bool)
            if rectified.shape != prediction.base_mask.shape:
                image_shape = prediction.base_mask.shape
                raise DataError(f"AuxOL.learn: rectified mask of shape {rectified.shape}, image is {image_shape}")
        batches: list[Batch] = []
        new_alphas = []
        with self._lock:  # a predict in another thread reads the online batch and the alphas
            for index, crop in enumerate(prediction.crops):
                if rectified is not None:
                    alpha = best_alpha(
                        crop.base_logits, crop.aux_logits, crops.crop(rectified, crop.box),
                        self.config.alpha_step, self.config.alpha_max,
                    )
                    new_alphas.append(alpha)
                    self.alpha_log.append(AlphaEntry(self.images_seen, index, alpha, prediction.alpha))
                    self.queue.append(crop.aux_input, crops.aux_target(rectified, crop.box, self.config.crop_size))
                    extents = None if crop.click is None else clicks.object_extents(rectified, crop.click)
                    if extents is not None:
                        self.extents.add(extents)
                elif not (self.config.train_on_unrectified and len(self.queue)):
                    continue
                last_tile = index == len(prediction.crops) - 1 or prediction.crops[index + 1].prompt != crop.prompt
                if last_tile:
                    batches.append(self.queue.stacked())
            width = None if rectified is None or not self.config.min_width else crops.structure_width(rectified)
            if width is not None:
                self.widths.append(width)
            for alpha in new_alphas:  # after the loop: no crop's weight depends on its own image
                self.alphas.append(alpha)
            self.images_seen += 1
            self.images_rectified += int(rectified is not None)
        if self._worker is None:
            self._train(batches)
        else:
            self._pending.append(self._worker.submit(self._train, batches))

    def _train(self, batches: list[Batch]) -> None:
        for inputs, targets in batches:
            targets = targets.to(self.device)
            weight = boundary_weight(targets)
            for _ in range(self.config.steps_per_image):
                with self._lock:
                    self.net.train()
                    self.optimizer.zero_grad(set_to_none=True)
                    loss = structure_loss(self._forward(inputs), targets, weight)
                    loss.backward()
                    self.optimizer.step()

    def flush(self) -> None:
        """Wait until every step handed to the background worker has been applied; re-raise its error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    @property
    def alpha(self) -> float | None:
        """The fusion weight the next prediction uses (weight of the foundation model), or None while it is used alone."""
        return self.alphas.current()

    @property
    def alphas_recorded(self) -> int:
        """The best alphas in the fusion history: one per rectified crop learned so far."""
        return len(self.alphas.alphas)

    # ---------------------------------------------------------------- state files

    def state_dict(self) -> dict[str, Any]:
        """A copy of the learner's whole state: config, weights, optimiser, online batch, alphas, counters, RNG states.

        Taken after pending background steps and under the learner's lock, so it is never
        caught in the middle of a prediction or a step in another thread.
        """
        self.flush()
        with self._lock:
            return copy.deepcopy({
                "config": self.config.to_dict(),
                "net": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "queue": self.queue.state_dict(),
                "alphas": list(self.alphas.alphas),
                "alpha_log": [asdict(entry) for entry in self.alpha_log],
                "click_objects": self.extents.state_dict(),
                "widths": list(self.widths),
                "images_seen": self.images_seen,
                "images_rectified": self.images_rectified,
                "rng": global_rng_state(),
            })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` taken from a learner with the same config."""
        self.flush()
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.queue.load_state_dict(state["queue"])
        self.alphas.alphas = list(state["alphas"])
        self.alpha_log = [AlphaEntry(**entry) for entry in state["alpha_log"]]
        self.extents.load_state_dict(state.get("click_objects", {"objects": []}))  # state files from before click_box
        self.widths.clear()
        self.widths.extend(float(width) for width in state.get("widths", []))  # and from before min_width
        self.images_seen = state["images_seen"]
        self.images_rectified = state["images_rectified"]
        set_global_rng_state(state["rng"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the learner's state file to ``path`` atomically (after pending background steps)."""
        write_state_file(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, model: PromptableModel, background: bool = False) -> AuxOL:
        """A learner that continues the state file saved at ``path`` exactly where it stopped."""
        state = read_state_file(path, model.device)
        learner = cls(model, AuxOLConfig.from_dict(state["config"]), background=background)
        learner.load_state_dict(state)
        return learner

"""One frozen promptable model behind a small interface, for every SAM-family backbone.

All families share SAM's prompt encoder and mask decoder; they differ in the image
encoder and the input recipe (:mod:`auxol.models.preprocess`). A model embeds an image
once and decodes any number of prompts against that embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from auxol.models.preprocess import Preprocessing
from auxol.prompts import Prompt


@dataclass
class Embedding:
    """An image's embedding and the sizes needed to map prompts and logits.

    Attributes:
        features: image-encoder output, float32 (1, 256, 64, 64).
        image_size: (H, W) of the original image in pixels.
    """

    features: torch.Tensor
    image_size: tuple[int, int]


class PromptableModel(nn.Module):
    """A SAM-family model: image encoder, prompt encoder, mask decoder and its input recipe.

    The submodules keep segment-anything's names (``image_encoder``, ``prompt_encoder``,
    ``mask_decoder``), so ``state_dict()`` is in SAM's checkpoint format. ``graphs``, set
    by :func:`auxol.models.runtime.use_runtime`, runs the frozen encoder and decoder of
    ``embed`` and ``segment_many`` through an inference runtime instead (``decode`` and
    the submodules stay PyTorch, for training).
    """

    def __init__(
        self,
        name: str,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        preprocessing: Preprocessing,
    ) -> None:
        super().__init__()
        self.name = name
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.preprocessing = preprocessing
        self.graphs = None  # CompiledGraphs of auxol.models.runtime, or None for PyTorch

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def runtime(self) -> str:
        """What embeds and decodes: ``torch``, or the inference runtime of ``graphs``."""
        return "torch" if self.graphs is None else self.graphs.runtime

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) RGB image -> normalised, padded input (3, S, S) on the model's device."""
        return self.preprocessing.image_to_input(image).to(self.device)

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Embedding:
        """Run the image encoder once; ``image`` is uint8 (H, W, 3) RGB."""
        inputs = self.preprocess(image)[None]
        features = self.image_encoder(inputs) if self.graphs is None else self.graphs.encode(inputs)
        return Embedding(features=features, image_size=tuple(image.shape[:2]))

    def encode_prompts(
        self, prompts: list[Prompt], image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in image pixels -> (sparse (N, k, 256), dense (N, 256, 64, 64)) embeddings.

        The prompts of one call must be of one kind (all boxes, all points, or all both)
        with the same number of points, so they can be decoded as one batch.
        """
        height, width = image_size
        to_input = self.preprocessing.coords_to_input
        boxes = points = None
        if prompts[0].box is not None:
            corners = np.array([p.box for p in prompts], dtype=np.float32).reshape(-1, 2, 2)
            boxes = torch.from_numpy(to_input(corners, height, width).reshape(-1, 4)).to(self.device)
        if prompts[0].points:
            coords = to_input(np.array([p.points for p in prompts], dtype=np.float32), height, width)
            labels = np.array([p.labels for p in prompts], dtype=np.int64)
            points = (torch.from_numpy(coords).to(self.device), torch.from_numpy(labels).to(self.device))
        return self.prompt_encoder(points=points, boxes=boxes, masks=None)

    def decode(self, features: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Mask decoder with multimask output off: low-resolution logits (N, 1, 256, 256).

        ``features`` is one image's (1, C, h, w), shared by all N prompts (SAM's decoder
        repeats it per prompt); decode several images with one call each.
        """
        low_res, _ = self.mask_decoder(
            image_embeddings=features,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return low_res

    @torch.no_grad()
    def segment_many(self, embedding: Embedding, prompts: list[Prompt]) -> np.ndarray:
        """Logits float32 (N, H, W) at the image size, one map per prompt (> 0 is foreground)."""
        height, width = embedding.image_size
        decode = self.decode if self.graphs is None else self.graphs.decode
        maps = []
        for group in _same_kind_groups(prompts):
            sparse, dense = self.encode_prompts(group, embedding.image_size)
            low_res = decode(embedding.features, sparse, dense)
            maps.append(self.preprocessing.logits_to_image(low_res.float(), height, width))
        order = np.argsort([i for group in _same_kind_indices(prompts) for i in group], kind="stable")
        return torch.cat(maps).cpu().numpy()[order]

    def segment(self, embedding: Embedding, prompt: Prompt) -> np.ndarray:
        """Logits float32 (H, W) at the image size for one prompt (> 0 is foreground)."""
        return self.segment_many(embedding, [prompt])[0]


def _kind(prompt: Prompt) -> tuple[bool, int]:
    return prompt.box is not None, len(prompt.points)


def _same_kind_indices(prompts: list[Prompt]) -> list[list[int]]:
    groups: dict[tuple[bool, int], list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(_kind(prompt), []).append(index)
    return list(groups.values())


def _same_kind_groups(prompts: list[Prompt]) -> list[list[Prompt]]:
    return [[prompts[i] for i in group] for group in _same_kind_indices(prompts)]

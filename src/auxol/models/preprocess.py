"""How each model family turns an image into its input tensor, and logits back.

Three recipes cover the SAM family:

========================  ===========  ============  ===========================
family                    input size   resize        intensities
========================  ===========  ============  ===========================
LiteMedSAM                256          long side,    per-image min-max to [0, 1]
                                       area (cv2)
SAM ViT-B/L/H, MobileSAM  1024         long side,    ImageNet mean/std on 0..255
                                       bilinear
MedSAM ViT-B              1024         square (no    per-image min-max to [0, 1]
                                       aspect kept),
                                       bicubic
========================  ===========  ============  ===========================

Long-side resizing pads with zeros at the bottom and right to a square; LiteMedSAM and
SAM then crop the decoder's logits to the resized extent before resizing them back to
the image size, as their official inference code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

_CV2_INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class Preprocessing:
    """The input recipe of one model family.

    Attributes:
        input_size: side of the square input, in pixels.
        keep_aspect: resize the long side to ``input_size`` and zero-pad (True), or
            stretch to ``input_size`` x ``input_size`` (False).
        interpolation: cv2 interpolation used to resize the image.
        normalization: ``"minmax"`` (per image to [0, 1]) or ``"imagenet"``.
    """

    input_size: int
    keep_aspect: bool
    interpolation: Literal["area", "bilinear", "bicubic"]
    normalization: Literal["minmax", "imagenet"]

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """Size (h, w) of the image inside the model input, before padding."""
        if not self.keep_aspect:
            return self.input_size, self.input_size
        scale = self.input_size / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def image_to_input(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) RGB image -> float32 tensor (3, S, S), S = ``input_size``."""
        height, width = image.shape[:2]
        new_h, new_w = self.resized_size(height, width)
        resized = cv2.resize(image, (new_w, new_h), interpolation=_CV2_INTERPOLATION[self.interpolation])
        pixels = resized.astype(np.float32)
        if self.normalization == "minmax":
            low, high = float(pixels.min()), float(pixels.max())
            pixels = (pixels - low) / max(high - low, 1e-8)
        else:
            pixels = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        return F.pad(tensor, (0, self.input_size - new_w, 0, self.input_size - new_h))

    def coords_to_input(self, coords: np.ndarray, height: int, width: int) -> np.ndarray:
        """Pixel coordinates (..., 2) as (x, y) in the image -> the same points in the model input."""
        new_h, new_w = self.resized_size(height, width)
        scale = np.array([new_w / width, new_h / height], dtype=np.float32)
        return np.asarray(coords, dtype=np.float32) * scale

    def logits_to_image(self, low_res: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Decoder logits (N, 1, h', w') -> logits (N, H, W) at the image size (bilinear)."""
        new_h, new_w = self.resized_size(height, width)
        logits = F.interpolate(low_res, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        logits = logits[..., :new_h, :new_w]
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[:, 0]


LITEMEDSAM = Preprocessing(input_size=256, keep_aspect=True, interpolation="area", normalization="minmax")
SAM = Preprocessing(input_size=1024, keep_aspect=True, interpolation="bilinear", normalization="imagenet")
MEDSAM = Preprocessing(input_size=1024, keep_aspect=False, interpolation="bicubic", normalization="minmax")

"""The auxiliary network: a standard 2-D U-Net with bilinear upsampling.

Four max-pool downs and four bilinear ups with skip concatenation, as in the widely used
PyTorch U-Net the published code takes: level widths w, 2w, 4w, 8w, 8w (w = 64 in the
paper) and one output logit channel at the input resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> BatchNorm -> ReLU) twice; ``mid_channels`` defaults to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid_channels = mid_channels or out_channels
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max pool, then :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Bilinear upsampling to the skip's size, concatenation [skip, upsampled], :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.conv(torch.cat([skip, x], dim=1))


class AuxUNet(nn.Module):
    """U-Net mapping (B, in_channels, S, S) inputs to (B, 1, S, S) logits.

    Args:
        in_channels: 3 (RGB) or 4 (RGB + the foundation model's mask).
        width: channels of the first level; the levels have w, 2w, 4w, 8w, 8w.

    ``S`` should be a multiple of 16 (four poolings); other sizes work but lose rows.
    """

    def __init__(self, in_channels: int = 4, width: int = 64) -> None:
        super().__init__()
        w = width
        self.inc = DoubleConv(in_channels, w)
        self.downs = nn.ModuleList([Down(w, 2 * w), Down(2 * w, 4 * w), Down(4 * w, 8 * w), Down(8 * w, 8 * w)])
        self.ups = nn.ModuleList([Up(16 * w, 4 * w), Up(8 * w, 2 * w), Up(4 * w, w), Up(2 * w, w)])
        self.head = nn.Conv2d(w, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)

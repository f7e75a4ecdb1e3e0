"""The structure loss of PraNet: boundary-weighted BCE plus boundary-weighted IoU.

Both terms are weighted, as intended; the published code's BCE ended up unweighted
through a deprecated reduction flag (see ``docs/auxol-method.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def boundary_weight(target: torch.Tensor) -> torch.Tensor:
    """w = 1 + 5 * |avgpool31(target) - target|: 1 far from edges, up to 6 next to them.

    ``target`` is float (B, 1, S, S) in [0, 1]; the 31x31 pool has stride 1 and zero
    padding 15 (padding counted in the average, PyTorch's default). It is taken as a 31x1
    then a 1x31 mean: the same average with 62 instead of 961 additions per pixel.
    """
    columns = F.avg_pool2d(target, kernel_size=(31, 1), stride=1, padding=(15, 0))
    pooled = F.avg_pool2d(columns, kernel_size=(1, 31), stride=1, padding=(0, 15))
    return 1 + 5 * torch.abs(pooled - target)


def structure_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of weighted BCE + weighted IoU loss; a scalar tensor.

    Args:
        logits: float (B, 1, S, S) network outputs before the sigmoid.
        target: float (B, 1, S, S) binary masks (0 or 1).
        weight: ``boundary_weight(target)`` if the caller has it (it depends on the
            target only, so several steps on one batch compute it once).

    Per sample, with p = sigmoid(logits), m = target and w = :func:`boundary_weight`:
    wBCE = sum(w * bce) / sum(w) and wIoU = 1 - (sum(p m w) + 1) / (sum((p + m) w) -
    sum(p m w) + 1).
    """
    logits = logits.float()
    weight = boundary_weight(target) if weight is None else weight
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weighted_bce = (weight * bce).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
    prob = torch.sigmoid(logits)
    intersection = (prob * target * weight).sum(dim=(2, 3))
    union = ((prob + target) * weight).sum(dim=(2, 3)) - intersection
    weighted_iou = 1 - (intersection + 1) / (union + 1)
    return (weighted_bce + weighted_iou).mean()

"""Evaluation of predicted masks against ground truth."""

from auxol.evaluate.metrics import dice, hausdorff, iou, score

__all__ = ["dice", "hausdorff", "iou", "score"]

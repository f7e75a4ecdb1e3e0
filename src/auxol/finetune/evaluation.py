"""Validation and final evaluation of a fine-tuned model, by the rules of ``auxol evaluate``.

Prompted models (box, point) are scored exactly as :mod:`auxol.evaluate.evaluation` does:
usable pairs only (:func:`auxol.data.valid_pairs`: readable, same size,
non-empty mask), prompts from :func:`auxol.prompts.prompts_from_mask` (boxes widened by
``box_margin`` of the long side), the union of the
prompts' masks by :func:`auxol.evaluate.evaluation.segment_with_prompts`, metrics by
:func:`auxol.evaluate.metrics.score`. Automatic models (prompt none) are scored per class
on the same pairs and the scores averaged over classes.
"""

from __future__ import annotations

import numpy as np

from auxol.data import load_dataset, read_image, valid_pairs
from auxol.evaluate.evaluation import segment_with_prompts
from auxol.evaluate.metrics import score
from auxol.finetune.data import read_labels
from auxol.finetune.forward import predict_automatic
from auxol.models import PromptableModel
from auxol.prompts import DEFAULT_BOX_MARGIN

EvaluationSet = list[tuple[str, np.ndarray, np.ndarray]]


def load_evaluation_set(data: str, classes: int) -> EvaluationSet:
    """(stem, image uint8 (H, W, 3), labels int64 (H, W)) for every usable pair of ``data``, in dataset order.

    Binary data (``classes=1``) is filtered by ``auxol evaluate``'s own rule
    (:func:`~auxol.data.valid_pairs`); label maps by their foreground.
    """
    found = []
    for listing in load_dataset(data):
        if classes == 1:
            found += [(pair.stem, image, mask.astype(np.int64)) for pair, image, mask in valid_pairs(listing, [])]
            continue
        for pair in listing.pairs:
            labels = read_labels(pair, classes)
            if labels.any():
                found.append((pair.stem, read_image(pair.image_path), labels))
    return found


def evaluate_model(
    model: PromptableModel, examples: EvaluationSet, prompt: str, classes: int, box_margin: float = DEFAULT_BOX_MARGIN, min_size: int = 16
) -> list[dict]:
    """One row {image, dice, iou, hd, hd95} per example; the model is put in eval mode.

    ``box_margin`` and ``min_size``: the prompt rule's options, as in ``auxol evaluate``.
    """
    model.eval()
    rows = []
    for stem, image, labels in examples:
        if prompt == "none":
            predicted = predict_automatic(model, image, classes)
            scores = [score(predicted[c], labels == c + 1) for c in range(classes)]
            row = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
        else:
            predicted, _, _ = segment_with_prompts(model, image, labels > 0, prompt, box_margin, min_size)
            row = score(predicted, labels > 0)
        rows.append({"image": stem, **row})
    return rows

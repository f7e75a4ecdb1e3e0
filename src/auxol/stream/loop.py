"""The prequential loop of one part: each image is predicted and scored before anything learns from it.

For each image, in order: the simulated clinician (:mod:`auxol.stream.clinician`) prompts
from the true mask; the foundation model segments the image; the AuxOL learner predicts
with what earlier images taught it; base and AuxOL are scored against the truth; then, if
the clinician rectifies this image, the learner learns from the (optionally degraded)
truth. Image t's mask reaches the learner only after image t was predicted and scored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from auxol.evaluate.metrics import dice, score
from auxol.models import PromptableModel
from auxol.online import AuxOL, Prediction
from auxol.stream.clinician import StreamOptions, is_rectified, rectified_mask, stream_prompts


@dataclass
class ImageRecord:
    """One image of the stream: a row of ``results.csv``.

    Dice values are in [0, 1] (``*_smooth1``: the paper's Dice with smooth 1), HD95 in
    pixels capped at the image diagonal, times in seconds. ``alpha`` is the fusion weight
    of the foundation model, ``None`` while AuxOL used the foundation model alone.
    ``base_seconds`` is the image encoder plus the decoding of all prompts,
    ``predict_seconds`` AuxOL's work on top of it, ``learn_seconds`` the learning step.
    """

    part: str
    image: str
    index: int
    prompts: int
    rectified: bool
    base_dice: float
    base_hd95: float
    boxcut_dice: float
    auxol_dice: float
    auxol_hd95: float
    base_dice_smooth1: float
    auxol_dice_smooth1: float
    alpha: float | None
    base_seconds: float
    predict_seconds: float
    learn_seconds: float


@dataclass
class StreamStep:
    """What :func:`stream_part` yields per image: its record and what figures need."""

    record: ImageRecord
    prediction: Prediction
    image: np.ndarray
    truth: np.ndarray


def stream_part(
    model: PromptableModel,
    learner: AuxOL,
    images: Iterable[tuple[str, np.ndarray, np.ndarray]],
    options: StreamOptions,
    rng: np.random.Generator,
    part: str = ".",
    start: int = 0,
) -> Iterator[StreamStep]:
    """Run the prequential loop over ``images``: (stem, uint8 (H, W, 3) image, bool (H, W) truth).

    ``rng`` draws the prompt and annotation noise; ``start`` is the stream index of the
    first image (when resuming). ``model`` needs only ``embed`` and ``segment_many``.
    """
    for index, (stem, image, truth) in enumerate(images, start=start):
        prompts = stream_prompts(truth, options, rng)
        began = time.perf_counter()
        base_logits = model.segment_many(model.embed(image), prompts)
        based = time.perf_counter()
        prediction = learner.predict(image, prompts, base_logits=base_logits)
        predicted = time.perf_counter()

        base, auxol = score(prediction.base_mask, truth), score(prediction.mask, truth)
        rectified = is_rectified(index, base["dice"], options)
        learned = time.perf_counter()
        learner.learn(prediction, rectified_mask(truth, options, rng) if rectified else None)
        learner.flush()
        record = ImageRecord(
            part=part,
            image=stem,
            index=index,
            prompts=len(prompts),
            rectified=rectified,
            base_dice=base["dice"],
            base_hd95=base["hd95"],
            boxcut_dice=dice(prediction.boxcut_mask, truth),
            auxol_dice=auxol["dice"],
            auxol_hd95=auxol["hd95"],
            base_dice_smooth1=dice(prediction.base_mask, truth, smooth=1.0),
            auxol_dice_smooth1=dice(prediction.mask, truth, smooth=1.0),
            alpha=prediction.alpha,
            base_seconds=based - began,
            predict_seconds=predicted - based,
            learn_seconds=time.perf_counter() - learned,
        )
        yield StreamStep(record, prediction, image, truth)


def aux_probability(prediction: Prediction, height: int, width: int) -> np.ndarray:
    """The auxiliary network's probability pasted into its crops: float32 (H, W) in [0, 1], 0 outside the crops."""
    full = np.zeros((height, width), dtype=np.float32)
    for crop in prediction.crops:
        x1, y1, x2, y2 = crop.box
        probability = torch.sigmoid(torch.from_numpy(crop.aux_logits)).numpy()
        full[y1 : y2 + 1, x1 : x2 + 1] = np.maximum(full[y1 : y2 + 1, x1 : x2 + 1], probability)
    return full

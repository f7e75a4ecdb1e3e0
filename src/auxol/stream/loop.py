"""The prequential loop of one part: each image is predicted and scored before anything learns from it.

For each image, in order: the simulated clinician (:mod:`auxol.stream.clinician`) prompts
from the true mask; the foundation model segments the image; the AuxOL learner predicts
with what earlier images taught it; base and AuxOL are scored against the truth; then, if
the clinician rectifies this image, the learner learns from the (optionally degraded)
truth. Image t's mask reaches the learner only after image t was predicted and scored.

Effort: the mask the clinician hands back (the rectified mask, or the truth for an image
not rectified) is compared with each shown mask, base and AuxOL: its Dice with it (a
shown mask with Dice >= 0.90 or 0.95 counts as accepted as is in the summary) and the
pixels the correction changes, |shown XOR corrected|, also as a share of the object.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from auxol.evaluate.metrics import changed_pixels, dice, score
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
    ``predict_seconds`` AuxOL's work on top of it (with ``click_box``: the decoding of the
    clicks' boxes too), ``learn_seconds`` the learning step.

    ``fm_dice`` is the foundation model's Dice on the masks AuxOL fuses (clicks turned into
    boxes: the masks of those boxes; otherwise the same as ``base_dice``), and
    ``click_extent`` says where those boxes' extent came from (``default``, ``learned``,
    empty: no click). Effort (see the module notes): ``*_correction_dice`` is the shown
    mask's Dice with the corrected one, ``*_changed_px`` the pixels the correction changes
    and ``*_changed_fraction`` that count over the corrected object's area.
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
    fm_dice: float
    click_extent: str | None
    base_correction_dice: float
    auxol_correction_dice: float
    base_changed_px: int
    base_changed_fraction: float
    auxol_changed_px: int
    auxol_changed_fraction: float
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
        embedding = model.embed(image)
        base_logits = model.segment_many(embedding, prompts)
        based = time.perf_counter()
        prediction = learner.predict(image, prompts, embedding=embedding, base_logits=base_logits)
        predicted = time.perf_counter()

        base, auxol = score(prediction.base_mask, truth), score(prediction.mask, truth)
        rectified = is_rectified(index, base["dice"], options)
        corrected = rectified_mask(truth, options, rng) if rectified else truth
        learned = time.perf_counter()
        learner.learn(prediction, corrected if rectified else None)
        learner.flush()
        learn_seconds = time.perf_counter() - learned
        base_changed, auxol_changed = changed_pixels(prediction.base_mask, corrected), changed_pixels(prediction.mask, corrected)
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
            fm_dice=dice(prediction.fm_mask, truth),
            click_extent=prediction.click_extent,
            base_correction_dice=dice(prediction.base_mask, corrected),
            auxol_correction_dice=dice(prediction.mask, corrected),
            base_changed_px=base_changed[0],
            base_changed_fraction=base_changed[1],
            auxol_changed_px=auxol_changed[0],
            auxol_changed_fraction=auxol_changed[1],
            base_seconds=based - began,
            predict_seconds=predicted - based,
            learn_seconds=learn_seconds,
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

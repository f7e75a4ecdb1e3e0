"""Clicks on a box-only foundation model: extents, candidate boxes, the learner's click-to-box path.

The foundation model is a stub that, like LiteMedSAM, returns nothing for a click and
segments the object inside a box, so every test runs in well under a second.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from auxol.evaluate.metrics import dice
from auxol.models import Embedding
from auxol.online import AuxOL, AuxOLConfig
from auxol.online.clicks import ExtentEstimator, click_box, click_map, click_of, object_extents, refine_box, stability
from auxol.prompts import Prompt, prompts_from_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLICKS = AuxOLConfig(
    width=4, queue_length=4, crop_size=32, alpha_history=2, lr=1e-3, predict_batchnorm="running",
    click_box=True, click_candidates=1, click_refine=0, click_min_objects=3,
)


def square_object(size: int = 80, side: int = 30, corner: tuple[int, int] = (20, 25)) -> np.ndarray:
    """A bool (size, size) mask with one side x side square whose top-left pixel is ``corner`` (x, y)."""
    mask = np.zeros((size, size), bool)
    x, y = corner
    mask[y : y + side, x : x + side] = True
    return mask


class BoxOnlyModel:
    """LiteMedSAM's behaviour in miniature: a click gives -5 everywhere; a box gives +5 on the object inside the box, -5 elsewhere."""

    device = torch.device("cpu")

    def __init__(self, truth: np.ndarray) -> None:
        self.truth = truth
        self.boxes: list[tuple[float, ...]] = []

    def embed(self, image: np.ndarray) -> Embedding:
        return Embedding(features=torch.zeros(1, 256, 64, 64), image_size=image.shape[:2])

    def segment_many(self, embedding: Embedding, prompts: list[Prompt]) -> np.ndarray:
        maps = []
        for prompt in prompts:
            inside = np.zeros(self.truth.shape, bool)
            if prompt.box is not None:
                self.boxes.append(prompt.box)
                x1, y1, x2, y2 = (round(v) for v in prompt.box)
                inside[y1 : y2 + 1, x1 : x2 + 1] = True
            maps.append(np.where(inside & self.truth, 5.0, -5.0).astype(np.float32))
        return np.stack(maps)


def test_object_extents_measure_from_the_click_to_the_component_sides() -> None:
    mask = np.zeros((50, 100), bool)  # long side 100
    mask[20:40, 10:30] = True  # columns 10..29, rows 20..39
    mask[0:5, 90:95] = True  # another object, not under the click
    assert object_extents(mask, (20.0, 30.0)) == pytest.approx((0.10, 0.10, 0.09, 0.09))
    assert object_extents(mask, (5.0, 30.0)) == pytest.approx((-0.05, 0.10, 0.24, 0.09))  # nearest component
    assert object_extents(np.zeros((50, 100), bool), (5.0, 5.0)) is None


def test_click_box_and_refine_box_in_pixels() -> None:
    assert click_box((50.0, 40.0), (0.1, 0.2, 0.3, 0.05), height=80, width=100) == (40.0, 20.0, 80.0, 45.0)
    assert click_box((5.0, 5.0), (0.1, 0.1, 0.1, 0.1), height=80, width=100) == (0.0, 0.0, 15.0, 15.0)  # clipped
    logits = np.where(square_object(), 3.0, -3.0)  # square x 20..49, y 25..54 in an 80 x 80 image
    assert refine_box(logits, (30.0, 30.0), margin=0.05) == (16.0, 21.0, 53.0, 58.0)  # 0.05 * 80 = 4 px
    assert refine_box(np.full((80, 80), -1.0), (30.0, 30.0), margin=0.05) is None


def test_click_of_is_the_mean_foreground_point_and_none_for_boxes() -> None:
    assert click_of(Prompt(points=((10.0, 20.0), (30.0, 40.0), (0.0, 0.0)), labels=(1, 1, 0))) == (20.0, 30.0)
    assert click_of(Prompt.from_box((0, 0, 5, 5))) is None
    assert click_of(Prompt.from_point(3, 4, label=0)) is None


def test_stability_and_click_map() -> None:
    logits = np.full((10, 10), -5.0)
    logits[:2] = 3.0  # 20 px > 1
    logits[2:4] = 0.0  # 20 more px > -1
    assert stability(logits) == pytest.approx(21 / 41)
    plane = click_map((30.0, 10.0), (20, 0, 59, 39), size=16, sigma=0.1)  # 40 x 40 crop -> 16 px
    assert plane.shape == (16, 16) and plane.max() <= 1
    assert np.unravel_index(np.argmax(plane), plane.shape) == (4, 4)  # (10 + 0.5) / 40 * 16 - 0.5 = 3.7


def test_extent_estimator_default_range_then_quantiles_of_the_history() -> None:
    estimator = ExtentEstimator(default_range=(0.04, 0.36), candidates=3, min_objects=2, history=3)
    candidates, source = estimator.estimate()
    assert source == "default"
    assert [c[0] for c in candidates] == pytest.approx([0.04, 0.12, 0.36])  # geometric
    for size in (0.1, 0.2, 0.3, 0.9):  # the oldest (0.1) falls out of a history of 3
        estimator.add((size, size / 2, size, size))
    candidates, source = estimator.estimate()
    assert source == "learned"
    assert [c[0] for c in candidates] == pytest.approx([0.22, 0.3, 0.78])  # 10th, 50th, 90th percentile of 0.2, 0.3, 0.9
    assert candidates[1][1] == pytest.approx(0.15)
    single = ExtentEstimator(default_range=(0.04, 0.36), candidates=1, min_objects=0, history=8)
    assert single.estimate()[0] == [pytest.approx((0.12,) * 4)]  # the geometric mean while nothing is known
    single.add((0.1, 0.2, 0.3, 0.4))
    single.add((0.3, 0.4, 0.5, 0.6))
    assert single.estimate() == ([pytest.approx((0.2, 0.3, 0.4, 0.5))], "learned")  # the median


def test_a_click_on_a_box_only_model_learns_the_objects_extent() -> None:
    """Objects of one size: the default box cuts them; after three corrections the learned box fits."""
    truth = square_object()
    model = BoxOnlyModel(truth)
    image = np.repeat((60 + 120 * truth).astype(np.uint8)[:, :, None], 3, axis=2)
    prompts = prompts_from_mask(truth, "point")
    learner = AuxOL(model, dataclasses.replace(CLICKS, click_extent_min=0.1, click_extent_max=0.1))
    shown = []
    for _ in range(5):
        prediction = learner.predict(image, prompts)
        shown.append((prediction.click_extent, dice(prediction.base_mask, truth), dice(prediction.fm_mask, truth)))
        learner.learn(prediction, truth)
    assert [source for source, _, _ in shown] == ["default"] * 3 + ["learned"] * 2
    assert all(base == 0 for _, base, _ in shown)  # the click itself gives nothing
    # default: 8 px each side of the click (0.1 * 80) -> a 17 x 17 box inside the 30 x 30 square
    assert shown[0][2] == pytest.approx(2 * 17 * 17 / (17 * 17 + 30 * 30), abs=1e-6)
    assert shown[3][2] == 1.0 and shown[4][2] == 1.0  # the learned extents are the square's own
    assert len(learner.extents) == 5


def test_candidates_pick_the_most_stable_box_and_refine_fits_it() -> None:
    """A model that is confident only when the box holds the whole object: the right candidate wins."""
    truth = square_object()

    class ConfidentWhenItFits(BoxOnlyModel):
        def segment_many(self, embedding: Embedding, prompts: list[Prompt]) -> np.ndarray:
            maps = super().segment_many(embedding, prompts)
            for prompt, logits in zip(prompts, maps):
                if prompt.box is None:
                    continue
                x1, y1, x2, y2 = prompt.box
                if not (x1 <= 20 and y1 <= 25 and x2 >= 49 and y2 >= 54):
                    logits[np.abs(logits) > 0] = np.where(logits[np.abs(logits) > 0] > 0, 0.5, -0.5)  # unsure
            return maps

    model = ConfidentWhenItFits(truth)
    image = np.repeat((60 + 120 * truth).astype(np.uint8)[:, :, None], 3, axis=2)
    config = dataclasses.replace(CLICKS, click_candidates=4, click_extent_min=0.05, click_extent_max=0.4, click_refine=1)
    prediction = AuxOL(model, config).predict(image, prompts_from_mask(truth, "point"))
    assert dice(prediction.fm_mask, truth) == 1.0
    assert prediction.click_boxes[0] == pytest.approx((18.4, 23.4, 50.6, 55.6))  # the square's box + 2% of 80 px


def test_click_state_survives_a_session_file(tmp_path) -> None:
    truth = square_object()
    image = np.repeat((60 + 120 * truth).astype(np.uint8)[:, :, None], 3, axis=2)
    learner = AuxOL(BoxOnlyModel(truth), dataclasses.replace(CLICKS, click_channel=True))
    prompts = prompts_from_mask(truth, "point")
    for _ in range(3):
        learner.learn(learner.predict(image, prompts), truth)
    learner.save(tmp_path / "session.pt")
    resumed = AuxOL.load(tmp_path / "session.pt", BoxOnlyModel(truth))
    assert list(resumed.extents.objects) == list(learner.extents.objects)
    assert resumed.predict(image, prompts).click_extent == "learned"
    assert resumed.net.inc[0].in_channels == 5  # RGB, base mask, click

"""AuxOL online learner: network, loss, crops, fusion, learner, sessions.

The foundation model is a stub returning fixed logits (``StubModel``) or the logits are
passed to ``predict`` directly, so every test runs in well under a few seconds.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from auxol.errors import ConfigError, DataError
from auxol.models import Embedding
from auxol.online import DEFAULT_PRESET, PRESETS, AuxOL, AuxOLConfig
from auxol.online.crops import aux_input, crop_box, crop_resize, paste, pixel_box, structure_width, tiles
from auxol.online.fusion import AlphaHistory, alpha_grid, best_alpha
from auxol.online.loss import boundary_weight, structure_loss
from auxol.online.unet import AuxUNet
from auxol.prompts import Prompt, prompts_from_mask



pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = AuxOLConfig(width=4, queue_length=4, crop_size=32, alpha_history=2, lr=1e-3, predict_batchnorm="running")


def lesion_image(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 (size, size, 3) noisy image with a brighter ellipse, and the ellipse's bool mask."""
    truth = np.zeros((size, size), np.uint8)
    centre = tuple(int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
    axes = tuple(int(v) for v in rng.integers(size // 8, size // 4, 2))
    cv2.ellipse(truth, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    gray = 60 + 90 * truth + rng.normal(0, 20, (size, size))
    image = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return image, truth.astype(bool)


def eroded_logits(truth: np.ndarray, pixels: int = 3) -> np.ndarray:
    """A foundation model with a systematic error: +5 inside ``truth`` eroded by ``pixels``, -5 elsewhere."""
    eroded = cv2.erode(truth.astype(np.uint8), np.ones((2 * pixels + 1,) * 2, np.uint8)).astype(bool)
    return np.where(eroded, 5.0, -5.0).astype(np.float32)


def stream(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, list[Prompt], np.ndarray]]:
    """``n`` images as (image, truth, box prompts, base logits (N, H, W))."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        image, truth = lesion_image(rng)
        prompts = prompts_from_mask(truth, "box", min_size=4)
        items.append((image, truth, prompts, np.stack([eroded_logits(truth)] * len(prompts))))
    return items


class StubModel:
    """The PromptableModel interface around a fixed (H, W) logit map per image."""

    device = torch.device("cpu")

    def __init__(self, logits: np.ndarray) -> None:
        self.logits = logits

    def embed(self, image: np.ndarray) -> Embedding:
        return Embedding(features=torch.zeros(1, 256, 64, 64), image_size=image.shape[:2])

    def segment_many(self, embedding: Embedding, prompts: list[Prompt]) -> np.ndarray:
        return np.stack([self.logits] * len(prompts))


def run(learner: AuxOL, items, masks=None) -> list:
    """Prequential replay: predict each image, then learn from ``masks[i]`` (default: the truth)."""
    predictions = []
    for index, (image, truth, prompts, logits) in enumerate(items):
        prediction = learner.predict(image, prompts, base_logits=logits)
        predictions.append(prediction)
        learner.learn(prediction, truth if masks is None else masks[index])
    return predictions


# ---------------------------------------------------------------- network and loss


@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize("width", [2, 4, 8])
def test_unet_gives_one_logit_map_at_the_input_size(in_channels: int, width: int) -> None:
    net = AuxUNet(in_channels=in_channels, width=width)
    assert net(torch.rand(2, in_channels, 32, 32)).shape == (2, 1, 32, 32)
    assert net.inc[0].in_channels == in_channels
    assert [d[1][3].out_channels for d in net.downs] == [2 * width, 4 * width, 8 * width, 8 * width]


def test_structure_loss_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (2, 1, 6, 5))
    target = (rng.random((2, 1, 6, 5)) > 0.5).astype(np.float64)
    expected = []
    for p_logit, m in zip(logits[:, 0], target[:, 0]):
        padded = np.pad(m, 15)  # 31x31 mean with zero padding counted in the divisor
        pooled = np.array([[padded[i : i + 31, j : j + 31].sum() / 961 for j in range(5)] for i in range(6)])
        w = 1 + 5 * np.abs(pooled - m)
        p = 1 / (1 + np.exp(-p_logit))
        bce = -(m * np.log(p) + (1 - m) * np.log(1 - p))
        inter = (p * m * w).sum()
        expected.append((w * bce).sum() / w.sum() + 1 - (inter + 1) / (((p + m) * w).sum() - inter + 1))
    got = structure_loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    assert got.item() == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_boundary_weight_is_the_31x31_mean_with_zero_padding() -> None:
    target = (torch.rand(3, 1, 64, 48, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    direct = 1 + 5 * torch.abs(torch.nn.functional.avg_pool2d(target, kernel_size=31, stride=1, padding=15) - target)
    weight = boundary_weight(target)
    assert weight.shape == target.shape and float(weight.max()) > 4.0  # a 0/1 target has edges near 6
    torch.testing.assert_close(weight, direct, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------- crops


def test_box_prompt_crop_is_the_box_widened_by_the_margin() -> None:
    logits = np.full((100, 200), -1.0, np.float32)
    prompt = Prompt.from_box((50, 20, 69, 39))  # 20 x 20 px
    assert crop_box(prompt, logits) == (50, 20, 69, 39)
    assert crop_box(prompt, logits, margin=0.1) == (48, 18, 71, 41)
    assert crop_box(Prompt.from_box((0, 0, 9, 9)), logits, margin=0.5) == (0, 0, 14, 14)  # clipped


def test_point_prompt_crop_is_the_base_mask_box_widened_by_ten_percent() -> None:
    logits = np.full((100, 200), -1.0, np.float32)
    logits[30:50, 100:140] = 1.0  # a 40 x 20 px mask
    assert crop_box(Prompt.from_point(120, 40), logits) == (96, 28, 143, 51)
    assert crop_box(Prompt.from_point(120, 40), np.full((100, 200), -1.0)) == (0, 0, 199, 99)


def test_crop_resize_and_paste_keep_geometry() -> None:
    mask = np.zeros((40, 50), bool)
    mask[10:20, 5:25] = True
    box = pixel_box((5.0, 10.0, 24.0, 19.0), 40, 50)
    assert crop_resize(mask, box, 16).min() == 1.0
    full = np.zeros_like(mask)
    paste(full, np.ones((10, 20), bool), box)
    np.testing.assert_array_equal(full, mask)


def test_aux_input_appends_the_base_mask_without_masking_the_image() -> None:
    image = np.full((32, 32, 3), 200, np.uint8)
    base = np.zeros((32, 32), bool)
    base[:16] = True
    x = aux_input(image, base, (0, 0, 31, 31), 16, four_channel=True)
    assert x.shape == (4, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[:3], torch.tensor(200 / 255))  # RGB unchanged outside the mask
    assert x[3, :8].min() == 1 and x[3, 8:].max() == 0
    assert aux_input(image, base, (0, 0, 31, 31), 16, four_channel=False).shape == (3, 16, 16)


# ------------------------------------------------------------------------ fusion


def test_alpha_grid_runs_from_zero_to_alpha_max() -> None:
    assert alpha_grid(0.05, 1.0).tolist() == [round(0.05 * i, 10) for i in range(21)]
    assert alpha_grid(0.25, 0.5).tolist() == [0.0, 0.25, 0.5]


def test_best_alpha_keeps_the_smallest_of_tied_alphas() -> None:
    target = np.array([[True, True, False, False]])
    base = np.array([[1.0, 1.0, -1.0, -1.0]])  # perfect
    assert best_alpha(base, base.copy(), target) == 0.0  # every alpha ties at Dice 1
    aux = np.array([[1.0, -3.0, -1.0, -1.0]])  # misses a pixel unless 4 * alpha - 3 > 0
    assert best_alpha(base, aux, target) == 0.8


def test_best_alpha_is_one_when_every_dice_is_zero() -> None:
    target = np.array([[True, False]])
    assert best_alpha(np.array([[-1.0, 1.0]]), np.array([[-2.0, 2.0]]), target) == 1.0


def test_alpha_history_averages_the_previous_k_alphas() -> None:
    history = AlphaHistory(k=2)
    history.append(0.2)
    assert history.current() is None
    history.append(0.4)
    assert history.current() == pytest.approx(0.3)
    history.append(1.0)
    assert history.current() == pytest.approx(0.7)


# ----------------------------------------------------------------------- learner


def test_prediction_never_depends_on_the_images_own_mask() -> None:
    items = stream(6)
    wrong = [truth if i != 4 else ~truth for i, (_, truth, _, _) in enumerate(items)]
    honest = run(AuxOL(StubModel(None), TINY), items)
    leaked = run(AuxOL(StubModel(None), TINY), items, masks=wrong)
    for a, b in zip(honest[:5], leaked[:5]):  # up to and including image 4 itself
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.crops[0].aux_logits, b.crops[0].aux_logits)
        assert a.alpha == b.alpha
    assert not np.array_equal(honest[5].crops[0].aux_logits, leaked[5].crops[0].aux_logits)  # image 4's mask was learned after


@pytest.mark.parametrize("batchnorm", ["queue", "running"])
def test_predict_changes_no_state(batchnorm: str) -> None:
    learner = AuxOL(StubModel(None), dataclasses.replace(TINY, predict_batchnorm=batchnorm))
    image, truth, prompts, logits = stream(3)[2]
    run(learner, stream(2))
    before = {k: v.clone() for k, v in learner.net.state_dict().items()}
    first = learner.predict(image, prompts, base_logits=logits)
    second = learner.predict(image, prompts, base_logits=logits)
    np.testing.assert_array_equal(first.crops[0].aux_logits, second.crops[0].aux_logits)
    for key, value in learner.net.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    "options", [{"predict_batchnorm": "queue"}, {"predict_batchnorm": "running"}, {"bf16": True, "channels_last": True}]
)
def test_resumed_session_continues_bit_for_bit(tmp_path, options: dict) -> None:
    config = dataclasses.replace(TINY, **options)
    items = stream(8)
    masks = [truth if i % 3 else None for i, (_, truth, _, _) in enumerate(items)]  # some unrectified
    learner = AuxOL(StubModel(None), config)
    run(learner, items[:4], masks[:4])
    learner.save(tmp_path / "session.pt")
    torch.manual_seed(99)  # disturb the global state between save and load
    expected = run(learner, items[4:], masks[4:])
    resumed = AuxOL.load(tmp_path / "session.pt", StubModel(None))
    assert resumed.images_seen == 4 and resumed.images_rectified == 2
    got = run(resumed, items[4:], masks[4:])
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.crops[0].aux_logits, b.crops[0].aux_logits)
        assert a.alpha == b.alpha
    assert resumed.alpha_log == learner.alpha_log
    assert resumed.config == config


def test_fusion_falls_back_to_the_base_model_when_the_aux_net_is_useless() -> None:
    learner = AuxOL(StubModel(None), dataclasses.replace(TINY, lr=1e-12))  # weights stay as they are
    torch.nn.init.constant_(learner.net.head.bias, 20.0)  # foreground everywhere, confidently
    items = stream(5)
    predictions = run(learner, items, masks=[logits[0] > 0 for *_, logits in items])
    last = predictions[-1]
    assert last.alpha is not None and last.alpha >= 0.8  # -5 alpha + 20 (1 - alpha) < 0 needs alpha > 0.8
    np.testing.assert_array_equal(last.mask, last.boxcut_mask)


def test_fusion_weight_is_the_mean_of_earlier_rectified_crops_only() -> None:
    items = stream(6)
    learner = AuxOL(StubModel(None), TINY)  # K = 2
    masks = [items[0][1], None, items[2][1], None, items[4][1], items[5][1]]
    predictions = run(learner, items, masks)
    assert [p.alpha for p in predictions[:3]] == [None, None, None]  # 0, 1, 2 alphas before
    assert [entry.image for entry in learner.alpha_log] == [0, 2, 4, 5]
    best = [entry.best_alpha for entry in learner.alpha_log]
    assert predictions[3].alpha == pytest.approx(np.mean(best[:2]))
    assert predictions[5].alpha == pytest.approx(np.mean(best[1:3]))  # never its own alpha
    assert learner.alpha_log[-1].used_alpha == predictions[5].alpha
    assert learner.images_seen == 6 and learner.images_rectified == 4


def test_unrectified_image_trains_on_the_queue_only_if_asked() -> None:
    image, truth, prompts, logits = stream(1)[0]
    for train, changes in ((True, True), (False, False)):
        learner = AuxOL(StubModel(None), dataclasses.replace(TINY, train_on_unrectified=train))
        learner.learn(learner.predict(image, prompts, base_logits=logits), truth)
        before = [p.clone() for p in learner.net.parameters()]
        learner.learn(learner.predict(image, prompts, base_logits=logits), None)
        assert len(learner.queue) == 1
        assert any(not torch.equal(a, b) for a, b in zip(before, learner.net.parameters())) == changes


def test_margin_and_keep_base_outside_crop_keep_lesion_parts_outside_the_box() -> None:
    image, truth, _, _ = stream(1)[0]
    ys, xs = np.nonzero(truth)
    small_box = Prompt.from_box((xs.min() + 3, ys.min() + 3, xs.max(), ys.max()))  # cuts the top-left rim
    logits = np.where(truth, 5.0, -5.0).astype(np.float32)[None]

    def final(**options) -> np.ndarray:
        learner = AuxOL(StubModel(None), dataclasses.replace(TINY, **options))
        return learner.predict(image, [small_box], base_logits=logits).mask

    assert final().sum() < truth.sum()
    np.testing.assert_array_equal(final(keep_base_outside_crop=True), truth)
    np.testing.assert_array_equal(final(crop_margin=0.5), truth)


def test_predict_runs_the_foundation_model_when_no_logits_are_given() -> None:
    image, truth, _, logits = stream(1)[0]
    learner = AuxOL(StubModel(logits[0]), TINY)
    prediction = learner.predict(image, [Prompt.from_point(*np.argwhere(truth).mean(0)[::-1])])
    np.testing.assert_array_equal(prediction.base_mask, logits[0] > 0)
    assert prediction.crops[0].box == crop_box(Prompt.from_point(0, 0), logits[0])  # point rule
    x1, y1, x2, y2 = prediction.crops[0].box
    assert prediction.crops[0].aux_input.shape[1:] == (TINY.crop_size, TINY.crop_size)
    assert prediction.crops[0].aux_logits.shape == (y2 - y1 + 1, x2 - x1 + 1)  # the auxiliary output, back at the crop


def test_background_learning_applies_the_same_steps_in_order(tmp_path) -> None:
    items = stream(5)
    expected = run(AuxOL(StubModel(None), TINY), items)
    learner = AuxOL(StubModel(None), TINY, background=True)
    for image, truth, prompts, logits in items:
        learner.flush()
        prediction = learner.predict(image, prompts, base_logits=logits)
        np.testing.assert_array_equal(prediction.crops[0].aux_logits, expected[learner.images_seen].crops[0].aux_logits)
        learner.learn(prediction, truth)
    learner.save(tmp_path / "session.pt")  # flushes first
    assert not learner._pending


def test_state_dict_is_a_snapshot_that_later_learning_leaves_alone() -> None:
    learner = AuxOL(StubModel(None), TINY)
    items = stream(4)
    run(learner, items[:2])
    state = learner.state_dict()
    taken = {key: value.clone() for key, value in state["net"].items()}
    queued = len(state["queue"]["inputs"])
    run(learner, items[2:])
    assert all(torch.equal(state["net"][key], value) for key, value in taken.items())
    assert len(state["queue"]["inputs"]) == queued and state["images_seen"] == 2
    assert not all(torch.equal(learner.net.state_dict()[key], value) for key, value in taken.items())


def test_auxol_learns_a_systematic_error() -> None:
    """The base mask is the truth eroded by 3 px; after 20 images AuxOL must beat it clearly."""
    config = dataclasses.replace(
        TINY, width=8, queue_length=8, crop_margin=0.2, lr=2e-3, steps_per_image=2, alpha_history=5
    )
    items = stream(30, seed=1)
    predictions = run(AuxOL(StubModel(None), config), items)

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return 2 * (a & b).sum() / (a.sum() + b.sum())

    tail = range(20, 30)
    base = np.mean([dice(predictions[i].base_mask, items[i][1]) for i in tail])
    auxol = np.mean([dice(predictions[i].mask, items[i][1]) for i in tail])
    assert auxol > base + 0.3, (base, auxol)  # measured: 0.44 -> 0.99; 0.52 when nothing is learned


# ------------------------------------------------------------------ config, files


def test_presets_and_config_validation() -> None:
    assert DEFAULT_PRESET in PRESETS and AuxOLConfig.preset("paper") == AuxOLConfig()
    paper = AuxOLConfig.preset("paper")
    assert (paper.width, paper.queue_length, paper.crop_size, paper.lr, paper.alpha_history) == (64, 32, 128, 5e-4, 5)
    assert AuxOLConfig.from_dict(PRESETS[DEFAULT_PRESET].to_dict()) == PRESETS[DEFAULT_PRESET]
    with pytest.raises(ConfigError, match="preset"):
        AuxOLConfig.preset("fast")
    with pytest.raises(ConfigError, match="crop_size"):
        AuxOLConfig(crop_size=100)
    with pytest.raises(ConfigError, match="unknown AuxOL option"):
        AuxOLConfig.from_dict({"widht": 8})


def test_loading_a_file_that_is_not_a_session_names_it(tmp_path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a session")
    with pytest.raises(DataError, match="junk.pt"):
        AuxOL.load(path, StubModel(None))


# ------------------------------------------------------------ thin structures


def test_structure_width_of_a_bar_and_a_disc() -> None:
    bar = np.zeros((50, 50), bool)
    bar[10:13, 5:45] = True  # 3 px wide, 40 long: 120 px, 82 boundary px (two long rows + 2 ends)
    assert structure_width(bar) == pytest.approx(2 * 120 / 82)
    disc = cv2.circle(np.zeros((101, 101), np.uint8), (50, 50), 30, 1, -1).astype(bool)
    assert 30 <= structure_width(disc) <= 35  # a disc: about its radius (a digital circle has fewer boundary px than 2 pi r)
    assert structure_width(np.zeros((5, 5), bool)) is None


def test_tiles_keep_the_resize_factor_within_the_bound() -> None:
    box = (0, 0, 255, 191)  # 256 wide, 192 high
    grid = tiles(box, size=64, scale=0.5, max_tiles=16)  # 128 px tiles: 2 x 2
    assert grid == [(0, 0, 127, 95), (128, 0, 255, 95), (0, 96, 127, 191), (128, 96, 255, 191)]
    covered = np.zeros((192, 256), int)
    for x1, y1, x2, y2 in tiles(box, size=64, scale=1.0, max_tiles=6):  # 64 px tiles would be 4 x 3 = 12 > 6
        covered[y1 : y2 + 1, x1 : x2 + 1] += 1
    assert len(tiles(box, size=64, scale=1.0, max_tiles=6)) <= 6 and (covered == 1).all()  # exact cover, no overlap
    assert tiles(box, size=64, scale=0.2, max_tiles=16) == [box]  # 64 / 256 = 0.25 already meets 0.2
    assert len(tiles(box, size=64, scale=4.0, max_tiles=64)) == 12  # never finer than the image itself


def test_min_width_tiles_thin_structures_once_a_mask_is_corrected() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((96, 96), bool)
    truth[20:23, 4:92] = True  # a 3 px vessel across the image
    image = np.repeat((80 + 100 * truth + rng.normal(0, 5, truth.shape)).clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    prompts = [Prompt.from_box((0, 0, 95, 95))]
    logits = np.full((1, 96, 96), -5.0, np.float32)
    learner = AuxOL(StubModel(None), dataclasses.replace(TINY, min_width=1.9, max_tiles=9))
    first = learner.predict(image, prompts, base_logits=logits)
    assert len(first.crops) == 1  # no width known yet: the whole box, 96 -> 32 px (the vessel: 1 px)
    learner.learn(first, truth)
    second = learner.predict(image, prompts, base_logits=logits)
    # width 2 * 264 / 178 = 2.97 px -> factor 1.9 / 2.97 = 0.64 -> tiles of 32 / 0.64 = 50 px -> 2 x 2
    assert [crop.box for crop in second.crops] == [(0, 0, 47, 47), (48, 0, 95, 47), (0, 48, 47, 95), (48, 48, 95, 95)]
    assert {crop.prompt for crop in second.crops} == {0}
    steps = []
    learner._train = steps.extend  # the batches handed to the optimiser: one per prompt, not per tile
    learner.learn(second, truth)
    assert len(steps) == 1 and steps[0][0].shape[0] == 4  # the queue (length 4) holds the 4 tiles

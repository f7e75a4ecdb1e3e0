"""The prequential stream runner, its outputs, and ``auxol stream``, with a stub foundation model.

The stub segments the dark core of synthetic lesions inside each box, while the truth also
holds a lighter rim: a base model that errs systematically, without running TinyViT. The
learner is the real AuxOL with a tiny network, or a recording fake where call order matters.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from auxol.commands import stream as stream_command
from auxol.errors import AuxolError, ConfigError, DataError
from auxol.evaluate.metrics import dice
from auxol.stream import StreamOptions, StreamRunner, StreamSettings, resolve_options, stream_part
from auxol.stream.clinician import degrade_mask, rectified_mask, shift_box, stream_prompts
from auxol.io import write_image_png, write_mask_png
from auxol.online import AuxOLConfig
from auxol.prompts import Prompt

TINY = AuxOLConfig(width=2, queue_length=2, crop_size=32, alpha_history=2, seed=3)
SIZE = 48
DARK = 60


class DarkCoreModel:
    """A stand-in foundation model: inside each prompt box, logit +4 where the image is darker than DARK, else -4."""

    device = torch.device("cpu")

    def __init__(self, stop_at: int | None = None, runtime: str = "torch") -> None:
        self.stop_at = stop_at  # raise KeyboardInterrupt when embedding this many images (an interrupted run)
        self.embedded = 0
        self.runtime = runtime  # what a real model reports it runs on (PromptableModel.runtime)

    def embed(self, image: np.ndarray) -> np.ndarray:
        if self.embedded == self.stop_at:
            raise KeyboardInterrupt
        self.embedded += 1
        return image

    def segment_many(self, embedding: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
        dark = np.where(embedding[:, :, 0] < DARK, 4.0, -4.0).astype(np.float32)
        logits = np.full((len(prompts), *dark.shape), -4.0, dtype=np.float32)
        for index, prompt in enumerate(prompts):
            x1, y1, x2, y2 = (int(round(v)) for v in prompt.box)
            logits[index, y1 : y2 + 1, x1 : x2 + 1] = dark[y1 : y2 + 1, x1 : x2 + 1]
        return logits


def lesion(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 (SIZE, SIZE, 3) with a dark disk in a lighter rim, and the truth (disk + rim); the rim widens with ``index``."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    distance = np.hypot(xs - 22 - index % 3, ys - 24)
    outer, inner = 14, 12 - index % 5
    gray = np.where(distance <= inner, 20, np.where(distance <= outer, 120, 200)).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2), distance <= outer


def write_part(folder: Path, n: int) -> Path:
    for index in range(n):
        image, mask = lesion(index)
        write_image_png(folder / "images" / f"case{index:02d}.png", image)
        write_mask_png(folder / "masks" / f"case{index:02d}.png", mask)
    return folder


def run(data: Path, out: Path, model=None, resume: bool = False, save_every: int = 10, **options) -> dict:
    settings = StreamSettings(
        data=str(data), model="stub", checkpoint=None, preset="tiny", auxol=TINY,
        stream=StreamOptions(**options), save_every=save_every,
    )
    return StreamRunner(model or DarkCoreModel(), settings, out).run(resume=resume).to_dict()


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the figures (matplotlib takes most of a small run's time) in tests that do not look at them."""
    monkeypatch.setattr("auxol.stream.report.write_plots", lambda *args: None)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- outputs and layout


def test_part_tree_writes_the_contract_paths(tmp_path):
    write_part(tmp_path / "data" / "a", 2)
    write_part(tmp_path / "data" / "b" / "c", 2)
    out = tmp_path / "out"
    summary = run(tmp_path / "data", out)

    for part in ("a", "b/c"):
        for kind in ("base", "auxol", "aux"):
            assert sorted(p.name for p in (out / kind / part).iterdir()) == ["case00.png", "case01.png"]
        assert (out / "session" / part / "learner.pt").is_file() and (out / "session" / part / "stream.json").is_file()
        for plot in ("running_dice", "gain", "alpha", "effort", "improved_1_case", "degraded_1_case"):
            assert any(path.name.startswith(plot) for path in (out / "plots" / part).iterdir())
    base = cv2.imread(str(out / "base" / "a" / "case00.png"), cv2.IMREAD_UNCHANGED)
    assert base.shape == (SIZE, SIZE) and set(np.unique(base)) == {0, 255}

    rows = read_rows(out / "results.csv")
    assert [(r["part"], r["image"]) for r in rows] == [(p, f"case{i:02d}") for p in ("a", "b/c") for i in range(2)]
    config = json.loads((out / "config.json").read_text())
    assert config["auxol"]["width"] == 2 and config["stream"]["interval"] == 1 and config["model"] == "stub"
    assert summary["parts"]["a"]["n"] == 2 and summary["overall"]["n"] == 4
    assert json.loads((out / "summary.json").read_text())["overall"]["n"] == 4
    alphas = read_rows(out / "alphas.csv")
    assert len(alphas) == 4 and {r["part"] for r in alphas} == {"a", "b/c"}  # one crop per rectified image


def test_single_part_writes_directly_under_each_folder(tmp_path):
    data = write_part(tmp_path / "data", 2)
    out = tmp_path / "out"
    run(data, out)
    assert (out / "base" / "case00.png").is_file() and (out / "auxol" / "case01.png").is_file()
    assert (out / "session" / "learner.pt").is_file() and (out / "plots" / "running_dice.png").is_file()
    assert read_rows(out / "results.csv")[0]["part"] == "."


def test_scores_compare_base_and_auxol_with_the_truth(tmp_path, no_plots):
    data = write_part(tmp_path / "data", 3)
    run(data, tmp_path / "out")
    row = read_rows(tmp_path / "out" / "results.csv")[0]
    image, truth = lesion(0)
    core = image[:, :, 0] < DARK  # what the stub segments
    expected = 2 * core.sum() / (core.sum() + truth.sum())
    assert float(row["base_dice"]) == pytest.approx(expected)
    assert float(row["base_dice_smooth1"]) == pytest.approx((2 * core.sum() + 1) / (core.sum() + truth.sum() + 1))
    assert row["alpha"] == ""  # the first image: no fusion weight yet, AuxOL is the base model
    assert float(row["auxol_dice"]) == pytest.approx(expected)


def test_effort_columns_and_summary_agree_with_the_written_masks(tmp_path, no_plots):
    data = write_part(tmp_path / "data", 6)
    out = tmp_path / "out"
    summary = run(data, out, interval=2)  # images 1, 3, 5 are not rectified: compared with the truth
    rows = read_rows(out / "results.csv")
    accepted = {key: [] for key in ("base_accept_90", "auxol_accept_90", "base_accept_95", "auxol_accept_95")}
    fractions = {"base": [], "auxol": []}
    for index, row in enumerate(rows):
        truth = lesion(index)[1]
        for shown in ("base", "auxol"):
            mask = cv2.imread(str(out / shown / f"case{index:02d}.png"), cv2.IMREAD_UNCHANGED) > 127
            changed = np.count_nonzero(mask ^ truth)
            assert int(row[f"{shown}_changed_px"]) == changed
            assert float(row[f"{shown}_changed_fraction"]) == pytest.approx(changed / truth.sum())
            assert float(row[f"{shown}_correction_dice"]) == pytest.approx(dice(mask, truth))
            fractions[shown].append(changed / truth.sum())
            for level in (90, 95):
                accepted[f"{shown}_accept_{level}"].append(dice(mask, truth) >= level / 100)
    overall = summary["overall"]
    for key, hits in accepted.items():
        assert overall[key] == pytest.approx(np.mean(hits)) and key in summary["parts"]["."]
    assert overall["base_changed_fraction"] == pytest.approx(np.mean(fractions["base"]))
    assert overall["auxol_changed_fraction"] == pytest.approx(np.mean(fractions["auxol"]))
    assert 0 < overall["base_changed_fraction"] < 1 and overall["base_accept_95"] < 1  # the stub misses the rim


# ---------------------------------------------------------------- who rectifies what


def test_interval_two_rectifies_exactly_half(tmp_path, no_plots):
    summary = run(write_part(tmp_path / "data", 10), tmp_path / "out", interval=2)
    rows = read_rows(tmp_path / "out" / "results.csv")
    assert [r["rectified"] for r in rows] == ["True", "False"] * 5
    assert summary["overall"]["fraction_rectified"] == 0.5


def test_dice_threshold_rectifies_only_images_at_or_below_it(tmp_path, no_plots):
    base_dice = [dice(image[:, :, 0] < DARK, truth) for image, truth in map(lesion, range(10))]  # what the stub scores
    threshold = sorted(base_dice)[3]  # four images at or below it (the rim cycles through 5 widths)
    summary = run(write_part(tmp_path / "data", 10), tmp_path / "out", dice_threshold=threshold)
    rows = read_rows(tmp_path / "out" / "results.csv")
    assert [float(r["base_dice"]) for r in rows] == pytest.approx(base_dice)
    assert [r["rectified"] == "True" for r in rows] == [d <= threshold for d in base_dice]
    assert summary["overall"]["fraction_rectified"] == np.mean([d <= threshold for d in base_dice]) < 1


class RecordingLearner:
    """A fake learner: records every call, predicts the base mask, never learns."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.alpha_log: list[dict] = []

    def predict(self, image, prompts, embedding=None, base_logits=None):
        self.calls.append(("predict", image.copy()))
        base_mask = (base_logits > 0).any(axis=0)
        fields = ["base_mask", "fm_mask", "boxcut_mask", "mask", "alpha", "crops", "click_extent"]
        return dataclasses.make_dataclass("P", fields)(base_mask, base_mask, base_mask, base_mask, None, [], None)

    def learn(self, prediction, rectified):
        self.calls.append(("learn", None if rectified is None else rectified.copy()))

    def flush(self):
        self.calls.append(("flush",))


def stream_with_recorder(options: StreamOptions, n: int = 4) -> list[tuple]:
    learner = RecordingLearner()
    images = [(f"case{i}", *lesion(i)) for i in range(n)]
    for _ in stream_part(DarkCoreModel(), learner, images, options, np.random.default_rng(0)):
        pass
    return learner.calls


def test_learner_never_receives_a_mask_before_predicting_its_image():
    calls = stream_with_recorder(StreamOptions(interval=2), n=4)
    assert [call[0] for call in calls] == ["predict", "learn", "flush"] * 4
    for index in range(4):
        image, truth = lesion(index)
        predicted, learned = calls[3 * index], calls[3 * index + 1]
        np.testing.assert_array_equal(predicted[1], image)  # predict(t) is image t ...
        if index % 2 == 0:  # ... and only after it does learn(t) get mask t
            np.testing.assert_array_equal(learned[1], truth)
        else:
            assert learned[1] is None


def test_dilation_noise_grows_rectified_masks_and_erosion_shrinks_them():
    dilated = [call[1] for call in stream_with_recorder(StreamOptions(annotation_noise="dilate", noise_ratio=0.1)) if call[0] == "learn"]
    eroded = [call[1] for call in stream_with_recorder(StreamOptions(annotation_noise="erode", noise_ratio=0.1)) if call[0] == "learn"]
    kernel = np.ones((3, 3), np.uint8)  # 0.1 * the 29 px lesion box, rounded
    for index in range(4):
        truth = lesion(index)[1]
        assert dilated[index].sum() > truth.sum() > eroded[index].sum()
        np.testing.assert_array_equal(dilated[index], cv2.dilate(truth.astype(np.uint8), kernel) > 0)
        np.testing.assert_array_equal(eroded[index], cv2.erode(truth.astype(np.uint8), kernel) > 0)


def test_either_noise_degrades_each_component_by_its_own_size():
    truth = np.zeros((80, 80), dtype=bool)
    truth[5:45, 5:45] = True  # 40 px box: kernel 4
    truth[60:70, 60:70] = True  # 10 px box: kernel 1, unchanged
    degraded = rectified_mask(truth, StreamOptions(annotation_noise="either", noise_ratio=0.1), np.random.default_rng(1))
    np.testing.assert_array_equal(degraded[55:, 55:], truth[55:, 55:])
    assert degraded[:50, :50].sum() != truth[:50, :50].sum()


def test_prompt_noise_shifts_boxes_by_the_ratio_keeping_their_size():
    truth = lesion(0)[1]
    (tight,) = stream_prompts(truth, StreamOptions(), np.random.default_rng(0))
    (shifted,) = stream_prompts(truth, StreamOptions(prompt_noise=0.1), np.random.default_rng(0))
    width, height = tight.box[2] - tight.box[0] + 1, tight.box[3] - tight.box[1] + 1
    dx, dy = shifted.box[0] - tight.box[0], shifted.box[1] - tight.box[1]
    assert abs(dx) == pytest.approx(0.1 * width) and abs(dy) == pytest.approx(0.1 * height)
    assert shifted.box[2] - shifted.box[0] == tight.box[2] - tight.box[0]


def test_box_margin_widens_each_side_by_the_fraction_of_the_long_side():
    truth = lesion(0)[1]
    (tight,) = stream_prompts(truth, StreamOptions(), np.random.default_rng(0))
    (wide,) = stream_prompts(truth, StreamOptions(box_margin=0.02), np.random.default_rng(0))
    pad = 0.02 * max(truth.shape)
    assert np.allclose(np.subtract(wide.box, tight.box), [-pad, -pad, pad, pad], atol=1)


def test_lrud_shift_keeps_size_and_stays_inside():
    rng = np.random.default_rng(1234)
    box = (40.0, 30.0, 59.0, 69.0)  # 20 wide, 40 high
    shifted = {shift_box(box, 0.1, rng, 200, 200) for _ in range(50)}
    assert shifted == {
        (40.0 + dx, 30.0 + dy, 59.0 + dx, 69.0 + dy) for dx in (-2.0, 2.0) for dy in (-4.0, 4.0)
    }
    for _ in range(20):
        x1, y1, x2, y2 = shift_box((0.0, 0.0, 99.0, 49.0), 0.2, rng, 50, 100)
        assert 0 <= x1 <= x2 <= 99 and 0 <= y1 <= y2 <= 49


def test_degrade_mask_kernel_size():
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    rng = np.random.default_rng(0)
    # ratio 0.1 of reference 30 -> 3x3 kernel: one pixel more (less) on each side
    assert degrade_mask(mask, "dilate", 0.1, rng, 30).sum() == 22 * 22
    assert degrade_mask(mask, "erode", 0.1, rng, 30).sum() == 18 * 18
    assert degrade_mask(mask, "dilate", 0.01, rng, 30).sum() == 400  # 1x1 kernel: unchanged
    sizes = {int(degrade_mask(mask, "either", 0.1, rng, 30).sum()) for _ in range(20)}
    assert sizes == {18 * 18, 22 * 22}
    with pytest.raises(ConfigError):
        degrade_mask(mask, "blur", 0.1, rng, 30)


def test_invalid_stream_options_raise_config_errors():
    with pytest.raises(ConfigError, match="--interval"):
        StreamOptions(interval=0)
    with pytest.raises(ConfigError, match="--box-margin"):
        StreamOptions(box_margin=-0.1)
    with pytest.raises(ConfigError, match="needs --prompt box"):
        StreamOptions(prompt="point", prompt_noise=0.05)


# ---------------------------------------------------------------- resume and bad input


def test_resume_after_an_interruption_gives_the_uninterrupted_outputs(tmp_path, no_plots):
    data = write_part(tmp_path / "data", 8)
    options = {"interval": 2, "annotation_noise": "either", "noise_ratio": 0.1, "prompt_noise": 0.05, "save_every": 3}
    run(data, tmp_path / "whole", **options)
    with pytest.raises(KeyboardInterrupt):
        run(data, tmp_path / "resumed", model=DarkCoreModel(stop_at=7), **options)
    assert len(read_rows(tmp_path / "resumed" / "results.csv")) == 6  # kept from the last save
    run(data, tmp_path / "resumed", resume=True, **options)

    def without_seconds(rows):
        return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert without_seconds(read_rows(resumed / "results.csv")) == without_seconds(read_rows(whole / "results.csv"))
    assert read_rows(resumed / "alphas.csv") == read_rows(whole / "alphas.csv")
    for kind in ("base", "auxol", "aux"):
        for path in sorted((whole / kind).iterdir()):
            assert (resumed / kind / path.name).read_bytes() == path.read_bytes(), path


def test_resume_with_other_options_is_refused(tmp_path, no_plots):
    data = write_part(tmp_path / "data", 2)
    run(data, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"options differ .*stream"):
        run(data, tmp_path / "out", resume=True, interval=2)
    with pytest.raises(ConfigError, match=r"options differ .*\(runtime\)"):
        run(data, tmp_path / "out", model=DarkCoreModel(runtime="onnx"), resume=True)


def test_config_and_summary_record_the_runtime_the_model_ran_on(tmp_path, no_plots):
    data = write_part(tmp_path / "data", 2)
    summary = run(data, tmp_path / "out", model=DarkCoreModel(runtime="openvino"))
    assert summary["runtime"] == "openvino"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["runtime"] == "openvino"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["runtime"] == "openvino"


def test_bad_pairs_are_skipped_and_counted(tmp_path, no_plots):
    data = write_part(tmp_path / "data", 3)
    (data / "images" / "broken.png").write_bytes(b"not a png")
    (data / "masks" / "broken.png").write_bytes(b"not a png")
    write_image_png(data / "images" / "lonely.png", lesion(0)[0])
    summary = run(data, tmp_path / "out")
    assert summary["overall"]["n"] == 3 and summary["overall"]["skipped"] == 2
    assert any("broken.png" in reason for reason in summary["skipped"])


def test_no_valid_pair_is_an_auxol_error(tmp_path, no_plots):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "images" / "a.png").write_bytes(b"garbage")
    (data / "masks" / "a.png").write_bytes(b"garbage")
    with pytest.raises(AuxolError, match="no valid image/mask pair"):
        run(data, tmp_path / "out")
    assert issubclass(DataError, AuxolError)


# ---------------------------------------------------------------- the command


def test_every_auxol_option_is_a_stream_flag():
    parameters = inspect.signature(stream_command.stream).parameters
    missing = [f.name for f in dataclasses.fields(AuxOLConfig) if f.name not in parameters]
    missing += [f.name for f in dataclasses.fields(StreamOptions) if f.name not in parameters]
    assert missing == []


def test_flags_override_the_config_file_which_overrides_the_preset(tmp_path, monkeypatch, no_plots):
    monkeypatch.setattr(stream_command, "load_model", lambda *args: DarkCoreModel())
    data = write_part(tmp_path / "data", 2)
    config_file = tmp_path / "options.json"
    config_file.write_text(json.dumps({"width": 4, "crop_size": 32, "queue_length": 2, "interval": 2}))
    app = typer.Typer()
    app.command()(stream_command.stream)
    result = CliRunner().invoke(
        app,
        [str(data), "--out", str(tmp_path / "out"), "--preset", "paper", "--config", str(config_file),
         "--width", "2", "--no-four-channel", "--dice-threshold", "0.95"],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["preset"] == "paper"
    assert config["auxol"]["width"] == 2 and config["auxol"]["four_channel"] is False  # flags
    assert config["auxol"]["crop_size"] == 32 and config["stream"]["interval"] == 2  # file
    assert config["auxol"]["lr"] == AuxOLConfig.preset("paper").lr  # preset
    assert config["stream"]["dice_threshold"] == 0.95 and config["stream"]["prompt"] == "box"
    assert "AuxOL changed the mean Dice" in result.output


def test_unknown_config_file_key_is_a_config_error(tmp_path):
    config_file = tmp_path / "options.json"
    config_file.write_text(json.dumps({"widht": 4}))
    with pytest.raises(ConfigError, match="unknown option.*widht"):
        resolve_options("paper", config_file, {})


@pytest.mark.slow
def test_demo_with_litemedsam_improves_on_the_base_model(tmp_path):
    app = typer.Typer()
    app.command()(stream_command.demo)
    result = CliRunner().invoke(app, ["--out", str(tmp_path), "--n", "12"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["overall"]["n"] == 12
    assert 0.7 < summary["overall"]["base_dice"] < 0.88  # LiteMedSAM outlines the dark core only
    assert summary["overall"]["gain"] > 0

"""The command line as a user meets it: outputs of evaluate and predict, and one-line errors."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from PIL import Image

from auxol.cli import main
from auxol.data import read_mask
from auxol.evaluate.metrics import dice
from conftest import disk_image, write_pair


def run_cli(monkeypatch, *args: str) -> int:
    """Run ``auxol ARGS`` in this process; returns the exit status."""
    monkeypatch.setattr(sys, "argv", ["auxol", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0


def test_evaluate_writes_the_contract_paths_and_scores(disk_dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run_cli(monkeypatch, "evaluate", disk_dataset, "--out", out) == 0
    for stem in ("case0", "case1", "case2"):
        prediction = read_mask(out / "predictions" / f"{stem}.png")
        truth = read_mask(disk_dataset / "masks" / f"{stem}.png")
        assert prediction.shape == truth.shape and dice(prediction, truth) > 0.9
        assert set(np.unique(np.array(Image.open(out / "predictions" / f"{stem}.png")))) <= {0, 255}
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [row["image"] for row in rows] == ["case0", "case1", "case2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["n"] == 3 and summary["overall"]["dice"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]))
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "litemedsam" and config["prompt"] == "box"
    assert len(list((out / "overlays").glob("*.png"))) == 3


def test_evaluate_names_parts_of_a_tree(tmp_path, monkeypatch):
    image, mask = disk_image((100, 100), (50, 50), 20)
    write_pair(tmp_path / "data" / "BUSI" / "benign", "b1", image, mask)
    write_pair(tmp_path / "data" / "BUSI" / "malignant", "m1", image, mask)
    out = tmp_path / "out"
    assert run_cli(monkeypatch, "evaluate", tmp_path / "data", "--out", out) == 0
    assert (out / "predictions" / "BUSI" / "benign" / "b1.png").is_file()
    assert (out / "predictions" / "BUSI" / "malignant" / "m1.png").is_file()
    assert set(json.loads((out / "summary.json").read_text())["parts"]) == {"BUSI/benign", "BUSI/malignant"}


def test_bad_pairs_only_exit_2_with_one_line_each(tmp_path, monkeypatch, capsys):
    root = tmp_path / "bad"
    image, mask = disk_image((100, 100), (50, 50), 20)
    write_pair(root, "mismatch", image, mask[:80])
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(root / "masks" / "corrupt.png")
    assert run_cli(monkeypatch, "evaluate", root, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "mismatch.png: mask is 100x80 but image" in err
    assert "corrupt.png: cannot read image" in err
    assert "no valid image/mask pair" in err


def test_missing_folder_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    assert run_cli(monkeypatch, "evaluate", tmp_path / "nowhere", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "nowhere: no such folder" in err and "Traceback" not in err


def test_predict_with_a_box_and_a_prompts_file(tmp_path, monkeypatch):
    image, truth = disk_image()
    Image.fromarray(image).save(tmp_path / "disk.png")
    assert run_cli(monkeypatch, "predict", tmp_path / "disk.png", "--out", tmp_path / "a", "--box", "55,45,125,115", "--overlay") == 0
    assert dice(read_mask(tmp_path / "a" / "disk.png"), truth) > 0.9
    assert (tmp_path / "a" / "disk_overlay.png").is_file()
    (tmp_path / "prompts.json").write_text(json.dumps({"disk.png": [{"box": [55, 45, 125, 115]}]}))
    assert run_cli(monkeypatch, "predict", tmp_path / "disk.png", "--out", tmp_path / "b", "--prompts", tmp_path / "prompts.json") == 0
    assert np.array_equal(read_mask(tmp_path / "a" / "disk.png"), read_mask(tmp_path / "b" / "disk.png"))


def test_predict_refuses_a_box_outside_the_image(tmp_path, monkeypatch, capsys):
    Image.fromarray(disk_image()[0]).save(tmp_path / "disk.png")
    assert run_cli(monkeypatch, "predict", tmp_path / "disk.png", "--out", tmp_path / "o", "--box", "10,10,250,90") == 2
    err = capsys.readouterr().err
    assert "disk.png: (250, 90) lies outside the 200x160 image" in err and "Traceback" not in err


def test_evaluate_slices_volumes_and_reports_3d_dice_per_volume(tmp_path, monkeypatch):
    import nibabel

    data, out = tmp_path / "volumes", tmp_path / "out"
    for folder in ("images", "masks"):
        (data / folder).mkdir(parents=True)
    zz, yy, xx = np.mgrid[0:5, 0:96, 0:96]  # (z, y, x); nibabel files hold (x, y, z)
    for name, radius in (("caseA", 24), ("caseB", 18)):
        labels = ((yy - 48) ** 2 + (xx - 44) ** 2 <= radius**2) & (zz >= 1) & (zz <= 3)  # slices 1-3 labelled
        image = np.where(labels, 180.0, 40.0) + np.random.default_rng(0).normal(0, 5, labels.shape)
        nibabel.save(nibabel.Nifti1Image(image.transpose(2, 1, 0).astype(np.float32), np.eye(4)), data / "images" / f"{name}.nii.gz")
        nibabel.save(nibabel.Nifti1Image(labels.transpose(2, 1, 0).astype(np.uint8), np.eye(4)), data / "masks" / f"{name}.nii.gz")
    assert run_cli(monkeypatch, "evaluate", data, "--out", out) == 0
    rows = list(csv.DictReader(open(out / "volumes.csv")))
    assert [(row["volume"], row["slices"]) for row in rows] == [("caseA", "3"), ("caseB", "3")]
    for row in rows:  # 3-D Dice recomputed from the written slice predictions
        stems = [f"{row['volume']}_a0_{index:04d}" for index in (1, 2, 3)]
        predicted = np.stack([read_mask(out / "predictions" / f"{stem}.png") for stem in stems])
        truth = np.stack([read_mask(out / "slices" / "masks" / f"{stem}.png") for stem in stems])
        expected = 2 * np.count_nonzero(predicted & truth) / (np.count_nonzero(predicted) + np.count_nonzero(truth))
        assert float(row["dice"]) == pytest.approx(expected) and float(row["dice"]) > 0.9
    summary = json.loads((out / "summary.json").read_text())
    assert summary["volumes"]["n"] == 2 and summary["overall"]["n"] == 6

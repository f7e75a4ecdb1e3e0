"""The stream on volumes: slices from the seed outward, propagation, per-volume outputs in the input's geometry."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from auxol.data.volumes import read_labels, read_volume
from auxol.stream.clinician import StreamOptions
from auxol.stream.volumes import VolumeStreamRunner, VolumeStreamSettings, seed_slice
from auxol.online import AuxOLConfig
from test_volume_cli import BrightInBox, _ball_ct
from volume_files import dicom_affine, write_dicom_series, write_nifti


class BrightInBoxOnCpu(BrightInBox):
    device = torch.device("cpu")


FAST_AUXOL = AuxOLConfig.from_dict({**AuxOLConfig.preset("cpu").to_dict(), "width": 8, "steps_per_image": 1})


def _ball_part(root, names=("ball1", "ball2")):
    """A volume part: DICOM series of a ball, and NIfTI label maps in RAS (ball = 5, a slab = 2), stored flipped."""
    for offset, name in enumerate(names):
        ct, truth = _ball_ct(centre=(5, 46 + 2 * offset, 50))
        write_dicom_series(root / "images" / name, ct)
        labels = np.where(truth, 5, 0).astype(np.uint8)
        labels[:, 85:90, 10:20] = 2
        stored = labels.transpose(2, 1, 0)  # (column, row, slice), the series' own grid...
        affine = dicom_affine((96, 96, 11))
        flip = np.eye(4)
        flip[1, 1], flip[1, 3] = -1, 95  # ...with rows stored bottom-up, as RAS NIfTI files often are
        (root / "masks").mkdir(parents=True, exist_ok=True)
        write_nifti(root / "masks" / f"{name}.nii.gz", stored[:, ::-1].copy(), affine @ flip)
    (root / "labels.json").write_text('{"2": "slab", "5": "liver"}')
    return root


def test_volume_stream_writes_label_volumes_that_overlay_the_labels(tmp_path, prompt="propagate"):
    data = _ball_part(tmp_path / "data")
    settings = VolumeStreamSettings(
        data=str(data), model="stub", checkpoint=None, preset="cpu", auxol=FAST_AUXOL,
        stream=StreamOptions(box_margin=0.02), prompt=prompt, label=5, label_name="liver",
    )
    out = tmp_path / "out"
    summary = VolumeStreamRunner(BrightInBoxOnCpu(), settings, out).run()
    import nibabel

    for name in ("ball1", "ball2"):
        image = read_volume(data / "images" / name)
        truth = read_labels(data / "masks" / f"{name}.nii.gz", image) == 5
        for folder in ("base", "auxol"):
            written = nibabel.load(out / folder / f"{name}.nii.gz")
            assert written.get_data_dtype() == np.uint8
            np.testing.assert_allclose(written.affine, image.file_affine, atol=1e-4)
            mask = read_labels(out / folder / f"{name}.nii.gz", image) > 0  # aligned by affine, like the labels
            overlap = 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum())
            assert overlap > 0.85
    volumes = list(csv.DictReader(open(out / "volumes.csv")))
    assert [row["volume"] for row in volumes] == ["ball1", "ball2"]
    slices = list(csv.DictReader(open(out / "results.csv")))
    first = [row for row in slices if row["volume"] == "ball1"]
    assert int(first[0]["slice"]) == seed_slice(truth) == 5
    visited = [int(row["slice"]) for row in first]
    # up from the seed to one slice past the ball's end (its truth is empty: the walk stops), then down
    assert visited == [5, 6, 7, 8, 9, 4, 3, 2, 1]
    assert summary["overall"]["slices_rectified"] == len(slices)
    assert summary["overall"]["volumes"] == 2 and 0.85 < summary["overall"]["base_dice_3d"] <= 1
    assert summary["overall"]["seconds_per_slice"]["total"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["prompt"] == prompt and config["runtime"] == summary["runtime"] == "torch"


def test_a_volume_without_the_structure_is_skipped_with_its_reason(tmp_path):
    data = _ball_part(tmp_path / "data", names=("ball1",))
    settings = VolumeStreamSettings(
        data=str(data), model="stub", checkpoint=None, preset="cpu", auxol=FAST_AUXOL, label=7,
    )
    from auxol.errors import DataError

    with pytest.raises(DataError, match=r"ball1\.nii\.gz: label 7 \(by id\) is absent from this volume"):
        VolumeStreamRunner(BrightInBoxOnCpu(), settings, tmp_path / "out").run()
    assert not (tmp_path / "out" / "base").exists() and not (tmp_path / "out" / "session").exists()


def test_auxol_stream_on_volume_data_takes_box_prompts_and_label_names(tmp_path, monkeypatch, capsys):
    from auxol.commands import stream as stream_command
    from test_cli import run_cli

    data = _ball_part(tmp_path / "data", names=("ball1",))
    monkeypatch.setattr(stream_command, "load_model", lambda *args: BrightInBoxOnCpu())
    out = tmp_path / "out"
    flags = ("--width", "8", "--steps-per-image", "1", "--box-margin", "0.02")
    assert run_cli(monkeypatch, "stream", data, "--out", out, "--prompt", "box", "--label", "liver", *flags) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [int(row["slice"]) for row in rows] == [5, 6, 7, 8, 4, 3, 2]  # slices holding the ball, seed outward
    config = json.loads((out / "config.json").read_text())
    assert config["label"] == 5 and config["prompt"] == "box" and config["auxol"]["width"] == 8
    assert (out / "base" / "ball1.nii.gz").is_file() and (out / "auxol" / "ball1.nii.gz").is_file()
    assert "3-D Dice" in capsys.readouterr().out
    assert run_cli(monkeypatch, "stream", data, "--out", tmp_path / "o2", "--prompt", "point") == 2
    assert "--prompt point: volumes take box or propagate" in capsys.readouterr().err

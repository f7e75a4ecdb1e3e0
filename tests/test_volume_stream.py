"""The stream on volumes: slices from the seed outward, propagation, per-volume outputs in the input's geometry.

Run as a script (``python tests/test_volume_stream.py DATA OUT KILL_AT [--resume]``) it is
the volume stream of the resume test, as a real subprocess that SIGKILLs itself.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from auxol.data.volumes import read_labels, read_volume
from auxol.stream.clinician import StreamOptions
from auxol.stream.volumes import VolumeStreamRunner, VolumeStreamSettings, seed_slice
from auxol.online import AuxOLConfig
from auxol.online.state_file import read_state_file
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


# ---------------------------------------------------------------- resume after SIGKILL

RESUMED = {"interval": 2, "annotation_noise": "either", "noise_ratio": 0.1, "box_margin": 0.02}


class KilledAtSlice(BrightInBoxOnCpu):
    """SIGKILLs its own process when asked to embed its ``kill_at``-th slice (counted from 0; negative: never)."""

    def __init__(self, kill_at: int) -> None:
        self.kill_at, self.embedded = kill_at, 0

    def embed(self, image):
        if self.embedded == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self.embedded += 1
        return super().embed(image)


def _resumable_stream(data: str, out: str, kill_at: int = -1, resume: bool = False) -> None:
    """The two-ball part streamed on one torch thread, with noise and every other slice rectified, saved every 4 slices."""
    torch.set_num_threads(1)
    settings = VolumeStreamSettings(
        data=data, model="stub", checkpoint=None, preset="cpu", auxol=FAST_AUXOL, stream=StreamOptions(**RESUMED),
        save_every=4, prompt="propagate", label=5,
    )
    VolumeStreamRunner(KilledAtSlice(kill_at), settings, out).run(resume=resume)


def _stream_process(data: Path, out: Path, kill_at: int = -1, resume: bool = False) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, __file__, str(data), str(out), str(kill_at), *(["--resume"] if resume else [])]
    return subprocess.run(command, env=env, capture_output=True, timeout=600).returncode


def _without_seconds(rows):
    return [{key: value for key, value in row.items() if "seconds" not in key} for row in rows]


def test_a_volume_stream_killed_inside_a_volume_and_between_volumes_resumes_to_the_uninterrupted_outputs(tmp_path, one_torch_thread):
    data = _ball_part(tmp_path / "data")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _resumable_stream(str(data), str(whole))  # uninterrupted, in this process
    # ball1's 9 slices, then ball2's: killed at its 7th slice (the checkpoint holds 4 slices of ball1) ...
    assert _stream_process(data, resumed, kill_at=6) == -signal.SIGKILL
    state = json.loads((resumed / "session" / "stream.json").read_text())
    assert (state["next"], state["volumes_done"], state["in_volume"]) == (4, 0, True)
    assert [path.name for path in (resumed / "session").glob("volume-*.npz")] == ["volume-4.npz"]
    # ... resumed from it and killed again on ball2's first slice (the checkpoint: ball1 finished) ...
    assert _stream_process(data, resumed, kill_at=5, resume=True) == -signal.SIGKILL
    state = json.loads((resumed / "session" / "stream.json").read_text())
    assert (state["next"], state["volumes_done"], state["in_volume"]) == (9, 1, False)
    assert not list((resumed / "session").glob("volume-*.npz"))
    # ... and resumed to the end
    assert _stream_process(data, resumed, resume=True) == 0

    slices, volumes = ([list(csv.DictReader(open(folder / table))) for folder in (whole, resumed)] for table in ("results.csv", "volumes.csv"))
    assert _without_seconds(slices[1]) == _without_seconds(slices[0]) and len(slices[0]) == 9 + 10  # ball2 is one slice longer
    assert _without_seconds(volumes[1]) == _without_seconds(volumes[0]) and len(volumes[0]) == 2
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (whole, resumed)]
    for summary in summaries:
        for part in (*summary["parts"].values(), summary["overall"]):
            del part["seconds_per_slice"]
    assert summaries[1] == summaries[0] and summaries[0]["overall"]["slices_rectified"] == 10  # every other slice of 19
    for name in ("base/ball1.nii.gz", "auxol/ball1.nii.gz", "base/ball2.nii.gz", "auxol/ball2.nii.gz"):
        assert gzip.decompress((resumed / name).read_bytes()) == gzip.decompress((whole / name).read_bytes()), name
    learners = [read_state_file(folder / "session" / "learner.pt", torch.device("cpu")) for folder in (whole, resumed)]
    assert learners[1]["images_seen"] == learners[0]["images_seen"] == 19 and learners[1]["alphas"] == learners[0]["alphas"]
    assert all(torch.equal(learners[1]["net"][key], value) for key, value in learners[0]["net"].items())
    assert (resumed / "plots" / "ball1.png").is_file() and (resumed / "plots" / "ball2.png").is_file()


if __name__ == "__main__":
    _resumable_stream(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--resume" in sys.argv[4:])

"""Volumes at the command line: predict by propagation, with NIfTI and DICOM SEG out, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from auxol.data.volumes import read_volume
from test_cli import run_cli
from volume_files import dicom_affine, sphere, write_dicom_series, write_nifti


def _ball_ct(shape=(11, 96, 96), centre=(5, 46, 50), radii=(3.5, 30, 30)):
    """A soft-tissue ellipsoid (60 HU) in fat-like background (-100 HU) with noise: (HU volume, bool truth)."""
    zz, yy, xx = np.indices(shape)
    truth = sum(((axis - c) / r) ** 2 for axis, c, r in zip((zz, yy, xx), centre, radii)) <= 1
    noise = np.random.default_rng(0).normal(0, 10, shape)
    return np.where(truth, 60.0, -100.0) + noise, truth


class BrightInBox:
    """A stand-in for a promptable model: the bright pixels (> 100) inside each box, else the box's central half."""

    runtime = "torch"

    def embed(self, image):
        return image[..., 0]

    def segment_many(self, pixels, prompts):
        maps = []
        for prompt in prompts:
            x1, y1, x2, y2 = (int(round(v)) for v in prompt.box)
            logits = np.full(pixels.shape, -1.0, np.float32)
            inside = np.zeros(pixels.shape, bool)
            inside[y1 : y2 + 1, x1 : x2 + 1] = True
            bright = inside & (pixels > 100)
            if not bright.any():  # like SAM, it outlines something in an empty box
                inside[: y1 + (y2 - y1) // 4] = inside[y2 - (y2 - y1) // 4 :] = False
                bright = inside
            logits[bright] = 1.0
            maps.append(logits)
        return np.stack(maps)


def test_propagation_through_a_volume_ends_where_the_tissue_ends(tmp_path):
    from auxol.commands.predict import predict_volume
    from auxol.prompts import Prompt

    ct, truth = _ball_ct()
    write_dicom_series(tmp_path / "ball", ct)
    volume = read_volume(tmp_path / "ball")
    mask = predict_volume(volume, [(5, Prompt.from_box((20, 16, 80, 76)))], BrightInBox(), None, None, 0.02)
    assert sorted(set(np.nonzero(mask)[0])) == list(range(2, 9))  # the empty slices' outlines were turned away
    assert 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum()) > 0.95


def test_predict_propagates_each_repeated_box_slice_and_unites_the_masks(tmp_path, monkeypatch, capsys):
    import nibabel

    from auxol.commands import predict as predict_command

    monkeypatch.setattr(predict_command, "load_model", lambda *args: BrightInBox())
    (first, first_ball), (second, second_ball) = (_ball_ct(centre=centre, radii=(2.5, 12, 12)) for centre in ((3, 25, 25), (7, 70, 70)))
    ct, balls = np.maximum(first, second), (first_ball, second_ball)  # two objects, on slices 1-5 and 5-9
    affine = np.array([[-0.8, 0, 0, 30], [0, 0.8, 0, -40], [0, 0, 2.5, 10], [0, 0, 0, 1]])
    write_nifti(tmp_path / "two.nii.gz", ct[:, ::-1].transpose(2, 1, 0).astype(np.float32), affine)

    def predicted(out, *seeds):
        assert run_cli(monkeypatch, "predict", tmp_path / "two.nii.gz", "--out", out, *seeds) == 0
        return np.asarray(nibabel.load(out / "two.nii.gz").dataobj).transpose(2, 1, 0)[:, ::-1] > 0

    def overlap(mask, ball):
        return 2 * np.count_nonzero(mask & ball) / (mask.sum() + ball.sum())

    one = predicted(tmp_path / "one", "--box-slice", "3", "10,10,40,40")
    assert overlap(one, balls[0]) > 0.85 and not (one & balls[1]).any()
    both = predicted(tmp_path / "both", "--box-slice", "3", "10,10,40,40", "--box-slice", "7", "55,55,85,85")
    assert overlap(both & balls[0], balls[0]) > 0.85 and overlap(both & balls[1], balls[1]) > 0.85
    assert overlap(both, balls[0] | balls[1]) > 0.85
    capsys.readouterr()
    assert run_cli(monkeypatch, "predict", tmp_path / "two.nii.gz", "--out", tmp_path / "bad", "--box-slice", "3", "10,10,40,40", "--box-slice", "7") == 2
    assert "--box-slice 7: expected two values, K x1,y1,x2,y2" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_predict_tracks_a_ball_through_a_dicom_series_and_writes_nifti_and_seg(tmp_path, monkeypatch):
    import highdicom
    import nibabel
    import pydicom

    ct, truth = _ball_ct()
    files = write_dicom_series(tmp_path / "ball", ct)
    out = tmp_path / "out"
    assert run_cli(monkeypatch, "predict", tmp_path / "ball", "--out", out, "--box-slice", "5", "20,16,80,76", "--structure", "liver") == 0
    written = nibabel.load(out / "ball.nii.gz")
    np.testing.assert_allclose(written.affine, dicom_affine((96, 96, 11)), atol=1e-4)  # the series' grid (column, row, slice)
    mask = np.asarray(written.dataobj).transpose(2, 1, 0) > 0  # back to (slice, row, column)
    assert sorted(set(np.nonzero(mask)[0])) == list(range(2, 9))  # exactly the slices holding the ball
    dice = 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum())
    assert dice > 0.85
    seg = highdicom.seg.segread(out / "ball.seg.dcm")
    series_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    assert int(seg.NumberOfFrames) == 7 and seg.SegmentSequence[0].SegmentLabel == "liver"


@pytest.mark.slow
def test_predict_on_a_nifti_volume_keeps_its_affine_and_refuses_bad_slice_prompts(tmp_path, monkeypatch, capsys):
    import nibabel

    ct, truth = _ball_ct()
    affine = np.array([[-0.8, 0, 0, 30], [0, 0.8, 0, -40], [0, 0, 2.5, 10], [0, 0, 0, 1]])
    write_nifti(tmp_path / "ball.nii.gz", ct[:, ::-1].transpose(2, 1, 0).astype(np.float32), affine)  # stored x toward L, y toward A
    out = tmp_path / "out"
    assert run_cli(monkeypatch, "predict", tmp_path / "ball.nii.gz", "--out", out, "--box-slice", "5", "20,16,80,76") == 0
    written = nibabel.load(out / "ball.nii.gz")
    np.testing.assert_array_equal(written.affine, nibabel.load(tmp_path / "ball.nii.gz").affine)
    assert not (out / "ball.seg.dcm").exists()  # SEG only for DICOM input
    mask = np.asarray(written.dataobj).transpose(2, 1, 0)[:, ::-1] > 0
    assert 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum()) > 0.85
    capsys.readouterr()
    assert run_cli(monkeypatch, "predict", tmp_path / "ball.nii.gz", "--out", tmp_path / "o2", "--box-slice", "11", "20,16,80,76") == 2
    assert "ball.nii.gz: slice 11 outside 0..10" in capsys.readouterr().err
    assert run_cli(monkeypatch, "predict", tmp_path / "ball.nii.gz", "--out", tmp_path / "o2", "--box", "20,16,80,76") == 2
    assert "a volume needs --box-slice" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def _volume_part(root, ct, labels, affine=None):
    """images/ct (a DICOM series of ``ct``) and masks/ct.nii.gz (``labels`` on the series grid, or on ``affine``)."""
    write_dicom_series(root / "images" / "ct", ct)
    (root / "masks").mkdir(parents=True)
    write_nifti(root / "masks" / "ct.nii.gz", labels.transpose(2, 1, 0).astype(np.uint8), dicom_affine(ct.shape[::-1]) if affine is None else affine)
    (root / "labels.json").write_text('{"5": "liver", "6": "stomach"}')
    return root


def test_slices_pick_a_structure_by_name_from_the_labels_json_beside_the_data(tmp_path, monkeypatch, capsys):
    from auxol.data import read_label_map

    ct, truth = _ball_ct(shape=(5, 40, 40), centre=(2, 20, 20), radii=(1.5, 10, 10))
    labels = np.where(truth, 5, 0)
    labels[:, 30:35, 30:35] = 6
    data = _volume_part(tmp_path / "data", ct, labels)
    out = tmp_path / "slices"
    assert run_cli(monkeypatch, "slices", "--images", data / "images", "--labels", data / "masks", "--out", out, "--label", "liver") == 0
    stems = sorted(p.stem for p in (out / "masks").iterdir())
    assert stems == ["ct_a0_0001", "ct_a0_0002", "ct_a0_0003"]
    assert read_label_map(out / "masks" / "ct_a0_0002.png").max() == 1  # the liver alone, 0/1
    assert run_cli(monkeypatch, "slices", "--images", data / "images", "--labels", data / "masks", "--out", tmp_path / "all") == 0
    assert "2 structures merged into one foreground; pick one with --label" in capsys.readouterr().err


@pytest.mark.parametrize("case, message", [
    ("name", "--label 'livr': no such structure in {data}/labels.json; did you mean liver?"),
    ("absent", "no voxel of label 6 (the structure is absent)"),
    ("geometry", "ct.nii.gz: geometry differs from the image ct (corner voxels up to 10.0 mm apart)"),
    ("gap", "images/ct: uneven slice spacing (2.50 to 5.00 mm); a slice is missing"),
])
def test_bad_volume_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, monkeypatch, capsys, case, message):
    ct, truth = _ball_ct(shape=(5, 40, 40), centre=(2, 20, 20), radii=(1.5, 10, 10))
    labels = np.where(truth, 5, 0)
    affine = dicom_affine((40, 40, 5))
    if case == "geometry":
        affine[0, 3] += 10.0
    data = _volume_part(tmp_path / "data", ct, labels, affine)
    if case == "gap":
        (data / "images" / "ct" / "IM0003.dcm").unlink()
    label = {"name": "livr", "absent": "stomach"}.get(case, "liver")
    out = tmp_path / "out"
    assert run_cli(monkeypatch, "evaluate", data, "--out", out, "--label", label) == 2
    err = capsys.readouterr().err
    assert message.format(data=data) in " ".join(err.split()) and "Traceback" not in err
    assert not (out / "predictions").exists() and not (out / "slices" / "slices.csv").exists()


def test_a_saved_learner_segments_a_volume_and_a_session_of_another_model_is_refused(tmp_path):
    import json

    import torch

    from auxol.commands.predict import load_learner, predict_volume
    from auxol.errors import ConfigError
    from auxol.online import AuxOL, AuxOLConfig
    from auxol.prompts import Prompt

    class OnCpu(BrightInBox):
        device = torch.device("cpu")

    model = OnCpu()
    AuxOL(model, AuxOLConfig.preset("cpu")).save(tmp_path / "session" / "session.pt")
    (tmp_path / "session" / "config.json").write_text(json.dumps({"model": "litemedsam"}))
    learner = load_learner(tmp_path / "session", model, "litemedsam")
    ct, truth = _ball_ct()
    write_dicom_series(tmp_path / "ball", ct)
    mask = predict_volume(read_volume(tmp_path / "ball"), [(5, Prompt.from_box((20, 16, 80, 76)))], model, learner, None, 0.02)
    assert sorted(set(np.nonzero(mask)[0])) == list(range(2, 9))
    with pytest.raises(ConfigError, match=r"session: the session learned with --model litemedsam, not sam_vit_b"):
        load_learner(tmp_path / "session", model, "sam_vit_b")

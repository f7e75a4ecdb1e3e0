"""NIfTI and DICOM volumes as 2-D slices, and per-volume 3-D Dice."""

from __future__ import annotations

import numpy as np
import pytest

from auxol.data import read_csv_list, read_image, read_label_map, read_mask
from auxol.data.volumes import (
    CT_WINDOW, default_window, iter_slices, parse_slice_name, per_volume_dice, read_label_names, read_labels, read_volume,
    resolve_label, slice_name, to_uint8, write_nifti, write_slices,
)
from auxol.errors import ConfigError, DataError
from volume_files import dicom_affine, write_dicom_series, write_nifti as save_nifti


def test_nifti_volume_is_read_in_the_axial_layout_and_sliced_into_a_dataset(tmp_path):
    image = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)  # nibabel order (x, y, z), RAS identity affine
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:4, 1:3, 2] = 1
    labels[2:5, 2:4, 3] = 2
    save_nifti(tmp_path / "case1.nii.gz", image, np.eye(4))
    save_nifti(tmp_path / "case1_seg.nii.gz", labels, np.eye(4))
    volume = read_volume(tmp_path / "case1.nii.gz")
    assert volume.array.shape == (4, 5, 6)  # (slices S, rows toward P, columns toward L): y and x flipped
    assert volume.array[3, 0, 0] == image[5, 4, 3]
    csv_path = write_slices([(tmp_path / "case1.nii.gz", tmp_path / "case1_seg.nii.gz")], tmp_path / "slices", axis=0, window=(0, 119))
    pairs = read_csv_list(csv_path)
    assert [p.stem for p in pairs] == ["case1_a0_0002", "case1_a0_0003"]  # empty slices 0 and 1 skipped
    assert read_image(pairs[0].image_path).shape == (5, 6, 3)
    assert read_label_map(pairs[1].mask_path).max() == 2 and read_mask(pairs[0].mask_path).sum() == 6
    # the window maps 0..119 to 0..255: voxel (x=5, y=4, z=3) holds 119, at row 0, column 0 of the axial slice
    assert read_image(pairs[1].image_path)[0, 0, 0] == 255


def test_dicom_series_is_stacked_in_position_order_with_rescale(tmp_path):
    volume = np.stack([np.full((8, 6), -1000 + 100 * k) for k in range(3)])
    write_dicom_series(tmp_path / "series", volume)
    read = read_volume(tmp_path / "series")
    assert read.array.shape == (3, 8, 6) and read.modality == "CT" and default_window(read) == CT_WINDOW
    np.testing.assert_array_equal(read.array[:, 0, 0], [-1000, -900, -800])
    assert read.spacing == pytest.approx((2.5, 0.8, 0.7))
    # voxel (slice 2, row 3, column 4) of an axial LPS series, in RAS mm
    np.testing.assert_allclose(read.affine @ [2, 3, 4, 1], [100 - 4 * 0.7, 80 - 3 * 0.8, -50 + 2 * 2.5, 1])


def test_slices_keep_empty_ones_on_request_and_window_or_percentiles():
    image = np.linspace(0, 1000, 2 * 3 * 4).reshape(2, 3, 4)
    labels = np.zeros((2, 3, 4))
    labels[1] = 1
    assert [index for index, _, _ in iter_slices(image, labels, axis=0)] == [1]
    assert [index for index, _, _ in iter_slices(image, labels, axis=2, empty="keep")] == [0, 1, 2, 3]
    assert to_uint8(np.array([-2000.0, 0.0, 140.0, 500.0]), window=(-160, 240)).tolist() == [0, 102, 191, 255]
    with pytest.raises(DataError, match="differ in shape"):
        next(iter_slices(image, labels[:1]))


def test_per_volume_dice_sums_over_the_slices_of_each_volume():
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True  # 4 px
    half = np.zeros((4, 4), bool)
    half[:2, :1] = True  # 2 px inside the truth
    slices = [
        (slice_name("a", 0, 3), truth, truth),
        (slice_name("a", 0, 4), half, truth),
        (slice_name("b", 0, 0), np.zeros((4, 4)), np.zeros((4, 4))),
    ]
    scores = per_volume_dice(slices)
    assert scores["a"] == pytest.approx(2 * (4 + 2) / ((4 + 2) + (4 + 4)))
    assert scores["b"] == 1.0
    assert parse_slice_name("liver_07_a2_0012") == ("liver_07", 2, 12)
    with pytest.raises(DataError, match="not a volume slice name"):
        per_volume_dice([("image1", truth, truth)])


def test_unreadable_volumes_are_one_line_errors(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(DataError, match=r"bad\.nii\.gz: cannot read NIfTI volume"):
        read_volume(tmp_path / "bad.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM images"):
        read_volume(tmp_path / "empty")
    (tmp_path / "x.png").write_bytes(b"x")
    with pytest.raises(DataError, match="not a volume"):
        read_volume(tmp_path / "x.png")


def _labels_marking(shape, affine, world_points):
    """A label volume of ``shape`` on ``affine`` (nibabel order) with label n+1 at the voxel nearest world point n."""
    labels = np.zeros(shape, np.uint8)
    inverse = np.linalg.inv(affine)
    for number, point in enumerate(world_points, start=1):
        index = np.round(inverse @ [*point, 1])[:3].astype(int)
        labels[tuple(index)] = number
    return labels


def test_labels_in_another_layout_align_by_geometry_with_a_dicom_series(tmp_path):
    """A DICOM series (LPS, rows toward posterior) and NIfTI labels stored RAS with permuted axes meet voxel for voxel."""
    volume = np.full((4, 6, 5), -1000.0)
    volume[1, 2, 3] = 500  # one bright voxel: slice 1, row 2, column 3
    write_dicom_series(tmp_path / "ct", volume)
    image = read_volume(tmp_path / "ct")
    bright = image.affine @ [1, 2, 3, 1]
    # labels stored (z, x, y) with x toward R, y toward A: a permutation and two flips of the series' grid
    dicom = dicom_affine((5, 6, 4))  # (column, row, slice) -> RAS
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = 4, 5  # x' = 4 - column, y' = 5 - row
    stored = dicom @ np.linalg.inv(flip)  # (x', y', slice) -> RAS
    permute = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # (z, x', y') -> (x', y', z)
    affine = stored @ permute
    labels = _labels_marking((4, 5, 6), affine, [bright[:3]])
    save_nifti(tmp_path / "ct_seg.nii.gz", labels, affine)
    aligned = read_labels(tmp_path / "ct_seg.nii.gz", image)
    assert aligned.shape == image.array.shape
    assert list(zip(*np.nonzero(aligned))) == [(1, 2, 3)]


def test_a_real_geometry_mismatch_is_one_line_naming_the_labels(tmp_path):
    write_dicom_series(tmp_path / "ct", np.zeros((3, 6, 5)))
    image = read_volume(tmp_path / "ct")
    shifted = dicom_affine((5, 6, 3))
    shifted[2, 3] += 5.0  # two slices off along z
    save_nifti(tmp_path / "shifted.nii.gz", np.zeros((5, 6, 3), np.uint8), shifted)
    with pytest.raises(DataError, match=r"shifted\.nii\.gz: geometry differs from the image ct \(corner voxels up to 5\.0 mm apart\)"):
        read_labels(tmp_path / "shifted.nii.gz", image)
    save_nifti(tmp_path / "small.nii.gz", np.zeros((5, 6, 2), np.uint8), dicom_affine((5, 6, 2)))
    with pytest.raises(DataError, match=r"small\.nii\.gz: geometry differs .*shape \(2, 6, 5\) vs \(3, 6, 5\)"):
        read_labels(tmp_path / "small.nii.gz", image)
    save_nifti(tmp_path / "float.nii.gz", np.full((5, 6, 3), 0.5, np.float32), dicom_affine((5, 6, 3)))
    with pytest.raises(DataError, match=r"float\.nii\.gz: a label volume must hold integers"):
        read_labels(tmp_path / "float.nii.gz", image)


def test_bad_dicom_series_are_one_line_errors_naming_the_folder(tmp_path):
    from pydicom.uid import generate_uid

    volume = np.zeros((4, 6, 5))
    uid = generate_uid()
    write_dicom_series(tmp_path / "mixed", volume[:2], series_uid=uid)
    write_dicom_series(tmp_path / "mixed" / "other", volume[:2])
    for path in (tmp_path / "mixed" / "other").iterdir():
        path.rename(tmp_path / "mixed" / f"b_{path.name}")
    with pytest.raises(DataError, match=r"mixed: mixed series \(2 SeriesInstanceUIDs\)"):
        read_volume(tmp_path / "mixed")
    write_dicom_series(tmp_path / "gap", volume, skip=(2,))
    with pytest.raises(DataError, match=r"gap: uneven slice spacing \(2\.50 to 5\.00 mm\); a slice is missing"):
        read_volume(tmp_path / "gap")
    write_dicom_series(tmp_path / "sagittal", volume, orientation=(0, 1, 0, 0, 0, -1))
    with pytest.raises(DataError, match=r"sagittal: non-axial acquisition \(sagittal"):
        read_volume(tmp_path / "sagittal")
    write_dicom_series(tmp_path / "coronal", volume, orientation=(1, 0, 0, 0, 0, -1))
    with pytest.raises(DataError, match=r"coronal: non-axial acquisition \(coronal"):
        read_volume(tmp_path / "coronal")


def test_nifti_round_trip_keeps_the_input_affine_and_layout(tmp_path):
    affine = np.array([[0, 0, -1.5, 40], [0.9, 0, 0, -20], [0, -0.9, 0, 10], [0, 0, 0, 1]], float)  # permuted + flipped
    stored = np.zeros((7, 8, 9), np.int16)
    stored[2:4, 3:6, 1:8] = 300
    save_nifti(tmp_path / "mr.nii.gz", stored, affine)
    volume = read_volume(tmp_path / "mr.nii.gz")
    assert volume.modality == "" and default_window(volume) is None  # no air at -1000: not CT
    written = write_nifti(tmp_path / "out" / "mask.nii.gz", volume.array > 100, volume)
    import nibabel

    back = nibabel.load(written)
    np.testing.assert_array_equal(back.affine, nibabel.load(tmp_path / "mr.nii.gz").affine)  # the same float32 header values
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(back.dataobj), (stored > 100).astype(np.uint8))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mask.nii.gz"]  # no temporary file left


def test_structures_are_picked_by_id_or_by_name_from_a_labels_json(tmp_path):
    (tmp_path / "labels.json").write_text('{"1": "spleen", "5": "liver", "6": "stomach"}')
    names = read_label_names(tmp_path / "labels.json")
    assert resolve_label("liver", names) == 5 and resolve_label("Liver", names) == 5 and resolve_label("6", names) == 6
    with pytest.raises(ConfigError, match=r"--label 'livr': no such structure in labels\.json; did you mean liver\?"):
        resolve_label("livr", names, "labels.json")
    with pytest.raises(ConfigError, match="needs --label-names"):
        resolve_label("liver", None)
    (tmp_path / "bad.json").write_text('{"liver": 5}')
    with pytest.raises(ConfigError, match=r"bad\.json: keys must be label ids"):
        read_label_names(tmp_path / "bad.json")


def test_dicom_seg_references_the_source_series_and_reads_back_on_its_frames(tmp_path):
    import highdicom
    import pydicom

    from auxol.data.dicom_seg import write_dicom_seg

    ct = np.full((5, 12, 10), -1000.0)
    files = write_dicom_series(tmp_path / "ct", ct)
    volume = read_volume(tmp_path / "ct")
    mask = np.zeros(volume.array.shape, bool)
    mask[1:3, 4:8, 2:5] = True  # slices 1 and 2 hold the structure
    path = write_dicom_seg(tmp_path / "seg.dcm", mask, volume, "liver")
    seg = pydicom.dcmread(path)
    sources = {pydicom.dcmread(file).SOPInstanceUID: pydicom.dcmread(file) for file in files}
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == next(iter(sources.values())).StudyInstanceUID
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(sources)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == next(iter(sources.values())).SeriesInstanceUID
    assert seg.SegmentSequence[0].SegmentLabel == "liver"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Liver"
    back = highdicom.seg.segread(path)
    assert int(seg.NumberOfFrames) == 2
    for frame, groups in zip(back.pixel_array, seg.PerFrameFunctionalGroupsSequence):
        source_uid = groups.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = float(groups.PlanePositionSequence[0].ImagePositionPatient[2])
        assert position == float(sources[source_uid].ImagePositionPatient[2])
        np.testing.assert_array_equal(frame > 0, mask[round((position + 50.0) / 2.5)])  # slice index of that position


def test_dicom_seg_of_an_anonymised_series_takes_the_file_meta_uids(tmp_path, capsys):
    import pydicom

    from auxol.data.dicom_seg import write_dicom_seg

    files = write_dicom_series(tmp_path / "ct", np.full((3, 8, 8), -1000.0))
    for file in files:  # blank the identifiers as anonymisers do; the file meta keeps the instance UID
        ds = pydicom.dcmread(file)
        ds.SOPInstanceUID = ds.SOPClassUID = ds.StudyInstanceUID = ds.SeriesInstanceUID = ""
        ds.save_as(file)
    volume = read_volume(tmp_path / "ct")
    mask = np.zeros(volume.array.shape, bool)
    mask[1, 2:6, 2:6] = True
    seg = pydicom.dcmread(write_dicom_seg(tmp_path / "seg.dcm", mask, volume))
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(file).file_meta.MediaStorageSOPInstanceUID for file in files}
    assert "has no StudyInstanceUID or SeriesInstanceUID" in capsys.readouterr().err

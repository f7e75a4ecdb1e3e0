"""NIfTI and DICOM volumes as 2-D slices, and per-volume 3-D Dice."""

from __future__ import annotations

import numpy as np
import pytest

from auxol.data import read_csv_list, read_image, read_label_map, read_mask
from auxol.data.volumes import iter_slices, parse_slice_name, per_volume_dice, read_volume, slice_name, to_uint8, write_slices
from auxol.errors import DataError


def _write_nifti(path, array):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)


def _write_dicom_series(folder, volume):
    """One CT-like DICOM file per slice (slice, row, column), written out of order, with rescale -1000."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir()
    for index in reversed(range(volume.shape[0])):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1000
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.5 * index]
        ds.InstanceNumber = volume.shape[0] - index
        ds.PixelData = (volume[index] + 1000).astype(np.uint16).tobytes()
        ds.save_as(folder / f"slice{volume.shape[0] - index:03d}.dcm", enforce_file_format=True)


def test_nifti_volume_is_read_as_z_y_x_and_sliced_into_a_dataset(tmp_path):
    image = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)  # nibabel order (x, y, z)
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:4, 1:3, 2] = 1
    labels[2:5, 2:4, 3] = 2
    _write_nifti(tmp_path / "case1.nii.gz", image)
    _write_nifti(tmp_path / "case1_seg.nii.gz", labels)
    assert read_volume(tmp_path / "case1.nii.gz").shape == (4, 5, 6)
    csv_path = write_slices([(tmp_path / "case1.nii.gz", tmp_path / "case1_seg.nii.gz")], tmp_path / "slices", axis=0, window=(0, 119))
    pairs = read_csv_list(csv_path)
    assert [p.stem for p in pairs] == ["case1_a0_0002", "case1_a0_0003"]  # empty slices 0 and 1 skipped
    assert read_image(pairs[0].image_path).shape == (5, 6, 3)
    assert read_label_map(pairs[1].mask_path).max() == 2 and read_mask(pairs[0].mask_path).sum() == 6
    # the window maps 0..119 to 0..255: voxel (x=5, y=4, z=3) holds 119
    assert read_image(pairs[1].image_path)[4, 5, 0] == 255


def test_dicom_series_is_stacked_in_position_order_with_rescale(tmp_path):
    volume = np.stack([np.full((8, 6), -1000 + 100 * k) for k in range(3)])
    _write_dicom_series(tmp_path / "series", volume)
    read = read_volume(tmp_path / "series")
    assert read.shape == (3, 8, 6)
    np.testing.assert_array_equal(read[:, 0, 0], [-1000, -900, -800])


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

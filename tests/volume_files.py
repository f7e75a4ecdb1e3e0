"""Synthetic volumes with known geometry, written as NIfTI (nibabel) and DICOM series (pydicom), for tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(array, affine), path)
    return path


def dicom_affine(shape: tuple[int, int, int], origin=(-100.0, -80.0, -50.0), pixel=(0.8, 0.7), step=2.5) -> np.ndarray:
    """RAS affine of a standard axial DICOM series stored (column, row, slice) as :func:`write_dicom_series` writes it."""
    lps = np.eye(4)
    lps[0, 0], lps[1, 1], lps[2, 2] = pixel[1], pixel[0], step
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def write_dicom_series(
    folder: Path, volume: np.ndarray, origin=(-100.0, -80.0, -50.0), pixel=(0.8, 0.7), step=2.5,
    orientation=(1, 0, 0, 0, 1, 0), series_uid: str | None = None, skip: tuple[int, ...] = (), modality: str = "CT",
) -> list[Path]:
    """One CT file per slice of ``volume`` (slices, rows, columns) in HU, written in reverse order, stored + 1024.

    Slice k sits at ``origin + k * step`` along the slice normal of ``orientation``
    (ImageOrientationPatient; default axial: rows toward posterior, columns toward the
    patient's left); ``pixel`` is PixelSpacing (row step, column step). Slices in ``skip``
    are not written (a missing slice). Returns the files written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    normal = np.cross(np.array(orientation[:3], float), np.array(orientation[3:], float))
    files = []
    for index in reversed(range(volume.shape[0])):
        if index in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = "Phantom^Test", "PH001", "O", "19700101"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "auxol-tests"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, index + 1
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = list(np.array(origin, float) + index * step * normal)
        ds.PixelSpacing, ds.SliceThickness = list(pixel), step
        ds.PixelData = (volume[index] + 1024).astype(np.uint16).tobytes()
        path = folder / f"IM{volume.shape[0] - index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def sphere(shape: tuple[int, int, int], centre: tuple[float, float, float], radius: float) -> np.ndarray:
    """bool (slices, rows, columns) ball of ``radius`` voxels around ``centre`` (slice, row, column)."""
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def zip_of(members: dict[str, bytes]) -> bytes:
    """A zip (deflated) of ``members``: name in the archive -> content, names taken as given (even ``../x``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def nifti_announcing(path: Path, shape: tuple[int, int, int]) -> bytes:
    """The bytes of a small .nii at ``path`` whose header announces ``shape`` (its voxels are not there)."""
    data = bytearray(write_nifti(path, np.zeros((4, 4, 4), np.int16), np.eye(4)).read_bytes())
    data[40:56] = np.array([3, *shape, 1, 1, 1, 1], "<i2").tobytes()  # the header's dim field
    return bytes(data)

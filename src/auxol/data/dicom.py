"""DICOM series in (pydicom) and DICOM Segmentation objects out (highdicom).

A series is a folder of single-frame image files of one SeriesInstanceUID. Its slices
are sorted by their position along the slice normal (ImagePositionPatient projected on
the cross product of the two ImageOrientationPatient directions), stored values become
RescaleSlope * value + RescaleIntercept (Hounsfield units for CT), and the geometry comes
from ImageOrientationPatient, PixelSpacing and the positions. The series is refused with
one line naming the folder when it cannot be one regular grid: several series, slices of
different orientations or sizes, uneven steps between positions (missing slices), or a
non-axial acquisition (sagittal, coronal: only axial series are supported).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auxol.data.geometry import LPS_TO_RAS
from auxol.errors import DataError

SPACING_TOLERANCE = 0.01
"""Largest relative deviation of a step between slice positions from the median step."""


@dataclass(frozen=True)
class DicomSeries:
    """A DICOM series read once.

    Attributes:
        array: float32 (columns, rows, slices) in rescaled units: the NIfTI-style order
            (i = column, j = row, k = slice, as dcm2niix writes it), slices in position order.
        affine: 4x4 float64, voxel (i, j, k, 1) -> RAS+ mm.
        files: the slice files in the order of ``k``.
        modality: the Modality attribute ("CT", "MR", ...).
    """

    array: np.ndarray
    affine: np.ndarray
    files: tuple[Path, ...]
    modality: str


def _read_datasets(folder: Path) -> list[tuple[Path, object]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            dataset = pydicom.dcmread(path)
        except (InvalidDicomError, OSError):
            continue
        if "PixelData" in dataset:
            found.append((path, dataset))
    return found


def _require(dataset, path: Path, *keywords: str) -> None:
    missing = [keyword for keyword in keywords if keyword not in dataset]
    if missing:
        raise DataError(f"{path}: DICOM file lacks {', '.join(missing)}; cannot place it in the series")


def read_dicom_series(folder: str | os.PathLike) -> DicomSeries:
    """Read the DICOM series in ``folder`` (files that are not DICOM images are ignored).

    Raises:
        DataError: no DICOM image, several series, multi-frame files, missing geometry,
            mixed orientations or sizes, duplicate positions, uneven slice spacing, or a
            non-axial acquisition; the message names ``folder`` (or the file).
    """
    folder = Path(folder)
    datasets = _read_datasets(folder)
    if not datasets:
        raise DataError(f"{folder}: no DICOM images in this folder")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series) > 1:
        raise DataError(f"{folder}: mixed series ({len(series)} SeriesInstanceUIDs); put one series per folder")
    for path, ds in datasets:
        _require(ds, path, "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DataError(f"{path}: multi-frame DICOM is not supported; expected one file per slice")
    orientation = np.array(datasets[0][1].ImageOrientationPatient, float)
    if any(not np.allclose(np.array(ds.ImageOrientationPatient, float), orientation, atol=1e-4) for _, ds in datasets):
        raise DataError(f"{folder}: slices of different orientations (ImageOrientationPatient); not one series")
    row_direction, column_direction = orientation[:3], orientation[3:]
    normal = np.cross(row_direction, column_direction)
    if int(np.argmax(np.abs(normal))) != 2:
        plane = "sagittal" if int(np.argmax(np.abs(normal))) == 0 else "coronal"
        raise DataError(f"{folder}: non-axial acquisition ({plane}, slice normal {np.round(normal, 3).tolist()}); only axial series are supported")
    datasets.sort(key=lambda item: float(np.dot(normal, np.array(item[1].ImagePositionPatient, float))))
    positions = np.array([np.dot(normal, np.array(ds.ImagePositionPatient, float)) for _, ds in datasets])
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in datasets}
    if len(shapes) > 1:
        raise DataError(f"{folder}: slices of different sizes {sorted(shapes)}")
    steps = np.diff(positions)
    if len(steps) and steps.min() <= 1e-3:
        raise DataError(f"{folder}: two slices at the same position {positions[int(np.argmin(steps))]:.2f} mm; not one series")
    if len(steps) and np.abs(steps - np.median(steps)).max() > SPACING_TOLERANCE * np.median(steps):
        raise DataError(
            f"{folder}: uneven slice spacing ({steps.min():.2f} to {steps.max():.2f} mm); a slice is missing or the series is irregular"
        )
    first = datasets[0][1]
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    if len(datasets) > 1:
        step = (np.array(datasets[-1][1].ImagePositionPatient, float) - np.array(first.ImagePositionPatient, float)) / (len(datasets) - 1)
    else:
        step = normal * float(first.get("SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_direction * column_spacing  # i: along a row, one column further
    lps[:3, 1] = column_direction * row_spacing  # j: down a column, one row further
    lps[:3, 2] = step
    lps[:3, 3] = np.array(first.ImagePositionPatient, float)
    slices = []
    for path, ds in datasets:
        try:
            pixels = ds.pixel_array
        except Exception as error:  # pydicom raises many types for undecodable pixel data
            raise DataError(f"{path}: cannot decode the pixel data ({type(error).__name__}: {error})") from None
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        slices.append(pixels.astype(np.float32) * slope + intercept)
    array = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, columns, slices) -> (columns, rows, slices)
    return DicomSeries(array, LPS_TO_RAS @ lps, tuple(path for path, _ in datasets), str(first.get("Modality", "")))

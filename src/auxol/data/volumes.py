"""3-D image and label volumes (NIfTI, DICOM series) as stacks of 2-D slices, and per-volume 3-D Dice.

Volumes are arrays (D0, D1, D2). A NIfTI file (``.nii``, ``.nii.gz``, read by nibabel)
is transposed from nibabel's (x, y, z) to (z, y, x); a DICOM series (a folder of
single-frame files, read by pydicom) is stacked in slice order (ImagePositionPatient
along the slice normal, else InstanceNumber) as (slice, row, column) with
RescaleSlope/Intercept applied. Axis 0 thus gives axial slices of a usual axial scan.

Slices are named ``<volume>_a<axis>_<index:04d>`` (:func:`slice_name`), so any result
keyed by slice stem can be grouped back by volume (:func:`parse_slice_name`).

Intensities become uint8 RGB by a window (``window=(low, high)``, e.g. CT soft tissue
(-160, 240)) or, by default, the volume's 0.5th-99.5th percentiles, clipped and scaled to
0..255 and repeated into three channels.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from auxol.errors import DataError
from auxol.io import write_csv, write_image_png

SLICE_NAME = re.compile(r"^(?P<volume>.+)_a(?P<axis>[012])_(?P<index>\d{4,})$")


def volume_stem(path: str | os.PathLike) -> str:
    """File or folder name without a ``.nii.gz``/``.nii`` suffix."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_dicom_series(folder: Path) -> np.ndarray:
    import pydicom

    datasets = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception:  # pydicom raises many types for non-DICOM files
            continue
    datasets = [ds for ds in datasets if "PixelData" in ds]
    if not datasets:
        raise DataError(f"{folder}: no DICOM images in this folder")

    def position(ds) -> float:
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            row, column = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
            return float(np.dot(np.cross(row, column), np.array(ds.ImagePositionPatient, float)))
        return float(getattr(ds, "InstanceNumber", 0))

    datasets.sort(key=position)
    shapes = {ds.pixel_array.shape for ds in datasets}
    if len(shapes) != 1:
        raise DataError(f"{folder}: DICOM images of different sizes {sorted(shapes)}")
    return np.stack([
        ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
        for ds in datasets
    ])


def is_volume(path: Path) -> bool:
    """Whether ``path`` is a NIfTI file or a folder (a DICOM series), judged by name and kind only."""
    return path.is_dir() or path.name.lower().endswith((".nii", ".nii.gz"))


def find_volume_pairs(images: str | os.PathLike, labels: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(image volume, label volume) pairs of two folders, matched by :func:`volume_stem`, sorted by name.

    Raises:
        DataError: a folder is missing, holds no volume, or an image volume has no label volume.
    """
    found = []
    for folder in (Path(images), Path(labels)):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
        found.append({volume_stem(p): p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and is_volume(p)})
    image_volumes, label_volumes = found
    if not image_volumes:
        raise DataError(f"{images}: no volumes (.nii, .nii.gz or DICOM series folders) found")
    missing = sorted(image_volumes.keys() - label_volumes.keys())
    if missing:
        raise DataError(f"{labels}: no label volume for {image_volumes[missing[0]].name}")
    return [(image_volumes[name], label_volumes[name]) for name in sorted(image_volumes)]


def holds_volumes(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a volume dataset: ``images/`` holds a NIfTI file or a DICOM series folder."""
    images = Path(folder) / "images"
    return images.is_dir() and any(is_volume(p) for p in images.iterdir() if not p.name.startswith("."))


def read_volume(path: str | os.PathLike) -> np.ndarray:
    """Read a NIfTI file or a DICOM series folder as float32 (D0, D1, D2); DataError if it cannot be read."""
    path = Path(path)
    if path.is_dir():
        return _read_dicom_series(path)
    if not path.is_file():
        raise DataError(f"{path}: no such volume file or DICOM folder")
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise DataError(f"{path}: not a volume; expected .nii, .nii.gz or a folder of DICOM files")
    import nibabel

    try:
        volume = np.asarray(nibabel.load(path).dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: cannot read NIfTI volume ({type(error).__name__})") from None
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {volume.shape}")
    return volume.transpose(2, 1, 0)


def to_uint8(volume: np.ndarray, window: tuple[float, float] | None = None, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Intensities of ``volume`` clipped to ``window`` (or its ``percentiles``) and scaled to uint8 0..255."""
    low, high = window if window is not None else np.percentile(volume, percentiles)
    if high <= low:
        return np.zeros(volume.shape, np.uint8)
    return np.round((np.clip(volume, low, high) - low) * (255.0 / (high - low))).astype(np.uint8)


def slice_name(volume: str, axis: int, index: int) -> str:
    return f"{volume}_a{axis}_{index:04d}"


def parse_slice_name(stem: str) -> tuple[str, int, int] | None:
    """(volume, axis, index) of a slice stem made by :func:`slice_name`, or None for another stem."""
    match = SLICE_NAME.match(stem)
    return None if match is None else (match["volume"], int(match["axis"]), int(match["index"]))


def iter_slices(
    image: np.ndarray, labels: np.ndarray, axis: int = 0, window: tuple[float, float] | None = None, empty: str = "skip"
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (index, image uint8 (H, W, 3), labels int64 (H, W)) along ``axis``; ``empty="skip"`` leaves out label-free slices."""
    if image.shape != labels.shape:
        raise DataError(f"image volume {image.shape} and label volume {labels.shape} differ in shape")
    if axis not in (0, 1, 2):
        raise DataError(f"slice axis must be 0, 1 or 2, got {axis}")
    pixels = to_uint8(image, window)
    for index in range(image.shape[axis]):
        label_slice = np.take(labels, index, axis=axis).astype(np.int64)
        if empty == "skip" and not label_slice.any():
            continue
        yield index, np.repeat(np.take(pixels, index, axis=axis)[..., None], 3, axis=2), label_slice


def write_slices(
    volumes: Iterable[tuple[str | os.PathLike, str | os.PathLike]], out: str | os.PathLike, axis: int = 0,
    window: tuple[float, float] | None = None, empty: str = "skip",
) -> Path:
    """Cut (image volume, label volume) pairs into a dataset part ``out`` (images/, masks/) plus ``out/slices.csv``.

    Masks are written with their label values (0 background, 1..K) as 8-bit PNG, which
    :func:`auxol.data.read_mask` reads as binary and :func:`auxol.data.read_label_map` as
    labels. Returns the CSV list's path.
    """
    out = Path(out)
    rows = []
    for image_path, label_path in volumes:
        image, labels = read_volume(image_path), read_volume(label_path)
        if labels.min() < 0 or labels.max() > 255 or not np.array_equal(labels, np.round(labels)):
            raise DataError(f"{label_path}: label volume must hold integers 0..255")
        name = volume_stem(image_path)
        for index, pixels, label_slice in iter_slices(image, labels, axis, window, empty):
            stem = slice_name(name, axis, index)
            write_image_png(out / "images" / f"{stem}.png", pixels)
            write_image_png(out / "masks" / f"{stem}.png", label_slice.astype(np.uint8))
            rows.append({"image_path": f"images/{stem}.png", "mask_path": f"masks/{stem}.png"})
    if not rows:
        raise DataError(f"{out}: no slice with labels in the given volumes")
    write_csv(out / "slices.csv", rows)
    return out / "slices.csv"


def per_volume_dice(slices: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """3-D Dice per volume from its slices: 2 sum|P & T| / (sum|P| + sum|T|) over the volume's slices.

    ``slices`` yields (slice stem from :func:`slice_name`, prediction (H, W), truth (H, W)),
    nonzero = foreground. Slices left out (e.g. empty slices skipped, where a prompted
    model has no prompt and so predicts nothing) count as empty in both. A volume empty
    in both scores 1. Stems not made by :func:`slice_name` raise DataError.
    """
    sums: dict[str, np.ndarray] = {}
    for stem, prediction, truth in slices:
        parsed = parse_slice_name(stem)
        if parsed is None:
            raise DataError(f"{stem}: not a volume slice name (<volume>_a<axis>_<index>)")
        prediction, truth = np.asarray(prediction) > 0, np.asarray(truth) > 0
        counts = np.array([np.count_nonzero(prediction & truth), np.count_nonzero(prediction), np.count_nonzero(truth)])
        sums[parsed[0]] = sums.get(parsed[0], np.zeros(3, np.int64)) + counts
    return {volume: 1.0 if p + t == 0 else float(2 * both / (p + t)) for volume, (both, p, t) in sums.items()}

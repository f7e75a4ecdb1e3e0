"""3-D image and label volumes (NIfTI, DICOM series) with their geometry, as stacks of 2-D slices.

:func:`read_volume` reads a NIfTI file (``.nii``, ``.nii.gz``, nibabel) or a DICOM series
folder (:mod:`auxol.data.dicom`) into a :class:`Volume`: its voxels in the axial layout of
:mod:`auxol.data.geometry` (slice, row, column), the affine of that layout, and what it
takes to write a result back in the file's own grid. :func:`read_labels` reads a label
volume from another file and aligns it to an image volume by their geometry (a transpose
and flips when both grids hold the same voxels in other layouts; any other difference is
an error, never a guess). :func:`select_structure` picks one structure of a label map by
id or by name (:func:`resolve_label`, names from a ``labels.json``-style map).

Slices are named ``<volume>_a<axis>_<index:04d>`` (:func:`slice_name`), so any result
keyed by slice stem can be grouped back by volume (:func:`parse_slice_name`). Axis 0 of
the axial layout gives axial slices, 1 coronal, 2 sagittal.

Intensities become uint8 by a window (``window=(low, high)``): by default the CT
soft-tissue window :data:`CT_WINDOW` for CT (DICOM Modality CT, or values that look like
Hounsfield units), else the volume's 0.5th-99.5th percentiles; clipped and scaled to
0..255 and repeated into three channels.
"""

from __future__ import annotations

import difflib
import gzip
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auxol.data import geometry
from auxol.errors import ConfigError, DataError
from auxol.io import atomic_open, read_json_object, write_csv, write_image_png

SLICE_NAME = re.compile(r"^(?P<volume>.+)_a(?P<axis>[012])_(?P<index>\d{4,})$")
CT_WINDOW = (-160.0, 240.0)
"""Abdominal soft-tissue window in HU (level 40, width 400): liver, spleen, kidneys, vessels."""
LABEL_NAMES_FILE = "labels.json"


@dataclass(frozen=True)
class Volume:
    """A 3-D image on its grid in patient space.

    Attributes:
        array: float32 (slices, rows, columns) in the axial layout (:data:`geometry.AXIAL`);
            CT in Hounsfield units, label volumes hold their integer labels.
        affine: 4x4 float64, voxel (slice, row, column, 1) of ``array`` -> RAS+ mm.
        source: the NIfTI file or DICOM folder read.
        modality: DICOM Modality ("CT", "MR", ...), "" when unknown (NIfTI).
        file_affine: the affine of the file's own array (NIfTI: the file's; DICOM:
            (column, row, slice) as dcm2niix writes it).
        to_file: nibabel orientation transform from ``array``'s layout to the file's.
        dicom_files: DICOM input: the slice files in the order of the file's slice axis.
    """

    array: np.ndarray
    affine: np.ndarray
    source: Path
    modality: str
    file_affine: np.ndarray
    to_file: np.ndarray
    dicom_files: tuple[Path, ...] = ()

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (slice step, row step, column step) in mm."""
        return geometry.spacing(self.affine)

    def in_file_layout(self, array: np.ndarray) -> np.ndarray:
        """``array`` of this volume's shape, moved to the file's own layout (the grid of ``file_affine``)."""
        if array.shape != self.array.shape:
            raise DataError(f"{self.source}: array of shape {array.shape} is not on this volume's grid {self.array.shape}")
        return np.ascontiguousarray(geometry.reorient(array, self.affine, self.to_file)[0])


def volume_stem(path: str | os.PathLike) -> str:
    """File or folder name without a ``.nii.gz``/``.nii`` suffix."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


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


def _read_file_grid(path: Path) -> tuple[np.ndarray, np.ndarray, str, tuple[Path, ...]]:
    """(array in the file's layout, its affine, modality, DICOM files) of a NIfTI file or DICOM folder."""
    if path.is_dir():
        from auxol.data.dicom import read_dicom_series

        series = read_dicom_series(path)
        return series.array, series.affine, series.modality, series.files
    if not path.is_file():
        raise DataError(f"{path}: no such volume file or DICOM folder")
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise DataError(f"{path}: not a volume; expected .nii, .nii.gz or a folder of DICOM files")
    import nibabel

    try:
        image = nibabel.load(path)
        array = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: cannot read NIfTI volume ({type(error).__name__})") from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {array.shape} (4-D series are not supported)")
    affine = np.asarray(image.affine, float)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise DataError(f"{path}: NIfTI affine is singular; the file has no usable geometry")
    return array, affine, "", ()


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI file or a DICOM series folder as a :class:`Volume` in the axial layout.

    Raises:
        DataError: unreadable file, not 3-D, no geometry, or a DICOM folder that is not one
            regular axial series (see :func:`auxol.data.dicom.read_dicom_series`).
    """
    path = Path(path)
    array, file_affine, modality, files = _read_file_grid(path)
    transform = geometry.orientation_to(file_affine)
    axial, affine = geometry.reorient(array, file_affine, transform)
    return Volume(axial.astype(np.float32, copy=False), affine, path, modality, file_affine, geometry.inverse(transform), files)


def read_labels(path: str | os.PathLike, image: Volume) -> np.ndarray:
    """The label volume at ``path`` on the grid of ``image``: int64 (slices, rows, columns), 0 = background.

    The two files may store their voxels in different layouts (axes permuted, flipped,
    RAS vs LPS); they are matched through their affines, without resampling.

    Raises:
        DataError: naming ``path``, for values that are not integers 0..65535 or a grid
            that is not the image's (other shape, spacing, position or orientation).
    """
    labels = read_volume(path)
    values = labels.array
    if values.min() < 0 or values.max() > 65535 or not np.array_equal(values, np.round(values)):
        raise DataError(f"{path}: a label volume must hold integers 0..65535")
    if not geometry.same_grid(labels.affine, values.shape, image.affine, image.array.shape):
        distance = geometry.grid_distance(labels.affine, values.shape, image.affine, image.array.shape)
        detail = f"shape {values.shape} vs {image.array.shape}" if np.isinf(distance) else f"corner voxels up to {distance:.1f} mm apart"
        raise DataError(
            f"{path}: geometry differs from the image {image.source.name} ({detail}); resample the labels onto the image grid"
        )
    return values.astype(np.int64)


def read_label_names(path: str | os.PathLike) -> dict[int, str]:
    """A JSON map of label ids to structure names (``{"1": "spleen", "5": "liver"}``, as TotalSegmentator's labels.json)."""
    data = read_json_object(path, "label ids and names")
    try:
        return {int(key): str(value) for key, value in data.items()}
    except ValueError:
        raise ConfigError(f"{path}: keys must be label ids (integers), e.g. {{\"5\": \"liver\"}}") from None


def find_label_names(*folders: str | os.PathLike) -> Path | None:
    """The first ``labels.json`` in ``folders`` (a dataset folder, its masks/ folder), or None."""
    for folder in folders:
        candidate = Path(folder) / LABEL_NAMES_FILE
        if candidate.is_file():
            return candidate
    return None


def resolve_label(label: str | int, names: dict[int, str] | None, names_source: str | None = None) -> int:
    """The label id ``label`` stands for: an integer id as given, or a structure name looked up in ``names``.

    Raises:
        ConfigError: a name with no map to look it up in, or a name not in the map
            (naming ``names_source`` and the closest names).
    """
    text = str(label).strip()
    if text.isdigit():
        return int(text)
    if not names:
        raise ConfigError(f"--label {text!r}: a structure name needs --label-names FILE.json (or a labels.json beside the data)")
    by_name = {name.lower(): key for key, name in names.items()}
    if text.lower() in by_name:
        return by_name[text.lower()]
    close = difflib.get_close_matches(text.lower(), by_name, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"--label {text!r}: no such structure in {names_source or 'the label names'}{hint}")


def select_structure(labels: np.ndarray, label: int | None) -> np.ndarray:
    """bool mask of structure ``label`` in the label map (None: every nonzero label, merged)."""
    return labels > 0 if label is None else labels == label


def default_window(volume: Volume) -> tuple[float, float] | None:
    """:data:`CT_WINDOW` for CT (Modality CT, or values reaching air at about -1000 HU), else None (percentiles)."""
    if volume.modality.upper() == "CT":
        return CT_WINDOW
    if not volume.modality and volume.array.min() <= -900 and np.percentile(volume.array, 99) >= 0:
        return CT_WINDOW
    return None


def parse_window(text: str | None, option: str = "--window") -> tuple[float, float] | None:
    """A window ``LOW,HIGH`` (finite numbers, HIGH > LOW) as floats; None stays None; ConfigError naming ``option`` otherwise."""
    if text is None:
        return None
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError:
        raise ConfigError(f"{option}: expected LOW,HIGH, got {text!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ConfigError(f"{option}: expected finite LOW,HIGH with HIGH above LOW, got {text!r}")
    return low, high


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


def slice_rgb(pixels: np.ndarray, index: int, axis: int = 0) -> np.ndarray:
    """Slice ``index`` along ``axis`` of a uint8 volume as a uint8 (H, W, 3) image (gray in three channels)."""
    return np.repeat(np.take(pixels, index, axis=axis)[..., None], 3, axis=2)


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
        yield index, slice_rgb(pixels, index, axis), label_slice


def write_slices(
    volumes: Iterable[tuple[str | os.PathLike, str | os.PathLike]], out: str | os.PathLike, axis: int = 0,
    window: tuple[float, float] | None = None, empty: str = "skip", label: int | None = None,
    warnings: list[str] | None = None,
) -> Path:
    """Cut (image volume, label volume) pairs into a dataset part ``out`` (images/, masks/) plus ``out/slices.csv``.

    Labels are aligned to their image by geometry (:func:`read_labels`). With ``label``
    the masks hold that structure alone (0/1), else every label value (0 background,
    1..K) as 8-bit PNG, which :func:`auxol.data.read_mask` reads as binary and
    :func:`auxol.data.read_label_map` as labels. ``window`` None: :func:`default_window`
    per volume. A volume that cannot be read or aligned, or lacks the structure, is
    left out with a one-line reason appended to ``warnings`` (so is a note that several
    structures were merged, without ``label``). Returns the CSV list's path.

    Raises:
        DataError: no slice with labels in any volume (naming the first reason).
    """
    out = Path(out)
    warnings = [] if warnings is None else warnings
    rows = []
    for image_path, label_path in volumes:
        try:
            image = read_volume(image_path)
            labels = read_labels(label_path, image)
        except DataError as error:
            warnings.append(f"skipped {error}")
            continue
        structures = np.unique(labels[labels > 0])
        if label is not None:
            if label not in structures:
                warnings.append(f"skipped {label_path}: no voxel of label {label} (the structure is absent)")
                continue
            labels = select_structure(labels, label).astype(np.int64)
        elif structures.size > 1:
            warnings.append(f"{label_path}: {structures.size} structures merged into one foreground; pick one with --label")
        if labels.max() > 255:
            warnings.append(f"skipped {label_path}: labels above 255 do not fit a PNG mask; pick one structure with --label")
            continue
        name = volume_stem(image_path)
        _remove_slices(out, name)
        volume_window = window if window is not None else default_window(image)
        for index, pixels, label_slice in iter_slices(image.array, labels, axis, volume_window, empty):
            stem = slice_name(name, axis, index)
            write_image_png(out / "images" / f"{stem}.png", pixels)
            write_image_png(out / "masks" / f"{stem}.png", label_slice.astype(np.uint8))
            rows.append({"image_path": f"images/{stem}.png", "mask_path": f"masks/{stem}.png"})
    if not rows:
        reason = f" ({warnings[-1]})" if warnings else ""
        raise DataError(f"{out}: no slice with labels in the given volumes{reason}")
    write_csv(out / "slices.csv", rows)
    return out / "slices.csv"


def _remove_slices(out: Path, volume: str) -> None:
    """Delete the slice PNGs of ``volume`` an earlier run left in ``out``, so they cannot mix with this run's."""
    for folder in (out / "images", out / "masks"):
        for path in folder.glob("*.png") if folder.is_dir() else ():
            parsed = parse_slice_name(path.stem)
            if parsed is not None and parsed[0] == volume:
                path.unlink()


def write_nifti(path: str | os.PathLike, mask: np.ndarray, volume: Volume) -> Path:
    """Write bool/0-1 ``mask`` (the volume's (slices, rows, columns)) as a uint8 0/1 NIfTI in the file's own grid.

    The written array has the layout and the affine (sform and qform, scanner frame) of the
    input file: for NIfTI input the same affine as the input, so a viewer overlays the two.
    Written atomically (a ``.nii.gz`` path is gzip-compressed).
    """
    import nibabel

    data = (volume.in_file_layout(np.asarray(mask)) > 0).astype(np.uint8)
    image = nibabel.Nifti1Image(data, volume.file_affine)
    image.set_qform(volume.file_affine, code=1)
    image.set_sform(volume.file_affine, code=1)
    image.header.set_data_dtype(np.uint8)
    payload = image.to_bytes()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        handle.write(gzip.compress(payload, compresslevel=6) if path.name.lower().endswith(".gz") else payload)
    return path


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

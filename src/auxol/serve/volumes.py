"""The volumes of a served session: each slice an image of the session, and a small record per volume.

An uploaded volume (:mod:`auxol.serve.volume_upload`) is windowed to uint8
(:func:`auxol.data.volumes.default_window`: -160,240 HU for CT, else percentiles) and
each axial slice, as the model sees it (gray in three channels), is added to the session
as an ordinary image (:meth:`ServeSession.add_image`): predicting, correcting, the
journal, learning order and durability are the session's own. What the volume adds:

==================================  =========================================================
``volumes/<id>/volume.json``        the record: slice index -> image id, the grid (shape,
                                    affines, layout of the file), name, modality, window
``volumes/<id>/shown/<k>.png``      the last mask shown for slice k (0/255)
``volumes/<id>/corrected/<k>.png``  the last correction of slice k, written (and its folder
                                    fsynced) after the session journaled it, before the 2xx
``volumes/<id>/dicom/``             a DICOM upload's slice files (numbered), which a DICOM
                                    SEG of the volume references
``volumes/<id>/labels.nii.gz``      the last label volume downloaded (``labels.seg.dcm``:
                                    as a DICOM SEG)
==================================  =========================================================

The volume id is the first 16 hex digits of the SHA-256 of the windowed voxels and the
affine: the same upload gives the same id. A slice's *accepted* mask is its correction
if it has one, else the mask shown for it; the label volume holds the accepted masks
(0 where a slice has none), as NIfTI or, for a DICOM series, as a DICOM SEG
referencing its slices; and ``propagate`` prompts a slice with the boxes of its
neighbour's accepted mask (:func:`auxol.propagation.neighbour_prompts`), as
``auxol stream --prompt propagate`` does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from auxol.data import read_mask
from auxol.data.geometry import spacing as geometry_spacing
from auxol.data.volumes import Volume, default_window, slice_rgb, to_uint8, volume_stem, write_nifti
from auxol.errors import DataError
from auxol.io import fsync_folder, read_json_object, write_json, write_mask_png
from auxol.online import Prediction
from auxol.propagation import neighbour_prompts
from auxol.prompts import DEFAULT_BOX_MARGIN, Prompt
from auxol.serve.encoding import IMAGE_ID
from auxol.serve.limits import Limits
from auxol.serve.session import ServeSession, UnknownImageError
from auxol.serve.volume_upload import read_uploaded_volume

Neighbour = Literal["previous", "next"]
"""Which neighbour a slice's prompts are propagated from: slice k - 1 or k + 1."""

PROPAGATION_MIN_SIZE = 16
"""Smallest component (px) of a neighbour's mask that gives a box, as in the stream."""

_ADDING = threading.Lock()
"""Volumes are added one at a time (the same volume uploaded twice at once is added once)."""


class UnknownVolumeError(UnknownImageError):
    """A volume id this session never received."""


class NothingToPropagateError(DataError):
    """The neighbour slice has no accepted mask (or only specks) to take boxes from."""


@dataclass(frozen=True)
class VolumeRecord:
    """What ``volume.json`` holds.

    Attributes:
        volume_id: 16 hex digits.
        name: the uploaded file's name.
        image_ids: the session's image id of each axial slice, by slice index.
        shape: (slices, rows, columns) of the axial layout.
        affine: 4x4, voxel (slice, row, column, 1) -> RAS+ mm.
        file_affine: 4x4, the affine of the input file's own grid.
        to_file: nibabel orientation (3, 2) from the axial layout to the file's.
        modality: DICOM Modality, "" for NIfTI.
        window: (low, high) of the intensities mapped to 0..255; None: 0.5-99.5th percentiles.
        dicom_files: a DICOM upload's slice files under ``volumes/<id>/dicom/``, in the
            order of the file's slice axis; () for NIfTI.
    """

    volume_id: str
    name: str
    image_ids: tuple[str, ...]
    shape: tuple[int, int, int]
    affine: np.ndarray
    file_affine: np.ndarray
    to_file: np.ndarray
    modality: str
    window: tuple[float, float] | None
    dicom_files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "volume_id": self.volume_id, "name": self.name, "image_ids": list(self.image_ids), "shape": list(self.shape),
            "affine": self.affine.tolist(), "file_affine": self.file_affine.tolist(), "to_file": self.to_file.tolist(),
            "modality": self.modality, "window": None if self.window is None else list(self.window),
            "dicom_files": list(self.dicom_files),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VolumeRecord:
        return cls(
            data["volume_id"], data["name"], tuple(data["image_ids"]), tuple(data["shape"]), np.array(data["affine"], float),
            np.array(data["file_affine"], float), np.array(data["to_file"], float), data["modality"],
            None if data["window"] is None else tuple(data["window"]), tuple(data.get("dicom_files", [])),
        )

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (slice step, row step, column step) in mm."""
        return geometry_spacing(self.affine)

    def grid(self, folder: Path) -> Volume:
        """A :class:`Volume` of this grid without its voxels (all zero, no memory), its DICOM files in ``folder``/dicom.

        What :func:`write_nifti` and :func:`~auxol.data.dicom_seg.write_dicom_seg` need.
        """
        files = tuple(folder / "dicom" / name for name in self.dicom_files)
        zeros = np.broadcast_to(np.float32(0), self.shape)
        return Volume(zeros, self.affine, Path(self.name), self.modality, self.file_affine, self.to_file, files)

    def labels_name(self, suffix: str) -> str:
        """File name of a downloaded label volume: ``<upload name without .nii/.nii.gz/.zip>_labels<suffix>``."""
        stem = volume_stem(self.name)
        return f"{stem[:-4] if stem.lower().endswith('.zip') else stem}_labels{suffix}"

    def image_id(self, index: int) -> str:
        """The image id of slice ``index``; DataError for an index outside the volume."""
        if not 0 <= index < len(self.image_ids):
            raise DataError(f"slice {index} outside 0..{len(self.image_ids) - 1} of volume {self.volume_id}")
        return self.image_ids[index]


UPLOAD_SCRATCH_PREFIX = ".upload-"
"""Name prefix of an upload's scratch folder in ``volumes/`` (gone once the upload is read)."""


def remove_interrupted_uploads(session_root: Path) -> list[str]:
    """Delete the scratch folders that uploads left in ``session_root/volumes`` when their server was killed; returns their names.

    Call it when the session is opened, before this process can receive an upload into it.
    """
    scratches = sorted((session_root / "volumes").glob(f"{UPLOAD_SCRATCH_PREFIX}*"))
    for scratch in scratches:
        shutil.rmtree(scratch, ignore_errors=True)
    return [scratch.name for scratch in scratches]


def volume_id(pixels: np.ndarray, affine: np.ndarray) -> str:
    """The id of a windowed uint8 (slices, rows, columns) volume on ``affine``: 16 hex digits of their SHA-256."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(affine, np.float64).tobytes())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:16]


class SessionVolumes:
    """The volumes of ``session``, under its folder's ``volumes/`` (see the module docstring)."""

    def __init__(self, session: ServeSession) -> None:
        self.session = session
        self.root = session.folder.root / "volumes"

    def _folder(self, key: str) -> Path:
        return self.root / key

    def _mask_path(self, key: str, kind: str, index: int) -> Path:
        return self._folder(key) / kind / f"{index:04d}.png"

    # ---------------------------------------------------------------- volumes

    def receive(self, handle: BinaryIO, name: str, limits: Limits, window: tuple[float, float] | None = None) -> tuple[VolumeRecord, bool]:
        """Read an uploaded volume file (:func:`read_uploaded_volume`) and :meth:`add` it; returns (record, whether it is new)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=UPLOAD_SCRATCH_PREFIX, dir=self.root) as scratch:  # beside volumes/<id>/: moved, not copied
            return self.add(read_uploaded_volume(handle, name, limits, Path(scratch)), name, window)

    def add(self, volume: Volume, name: str, window: tuple[float, float] | None = None) -> tuple[VolumeRecord, bool]:
        """Window ``volume`` (``window`` None: its default), add its slices as images; returns (record, whether it is new).

        A DICOM volume's files (all in one folder) are moved to ``volumes/<id>/dicom/``.
        The record is written last and fsynced with the slices' folder: a volume is listed
        once all its slices are on disk.
        """
        window = window if window is not None else default_window(volume)
        pixels = to_uint8(volume.array, window)
        key = volume_id(pixels, volume.affine)
        with _ADDING:
            if (self._folder(key) / "volume.json").is_file():
                return self.get(key), False
            return self._add(volume, name, window, pixels, key), True

    def _add(self, volume: Volume, name: str, window: tuple[float, float] | None, pixels: np.ndarray, key: str) -> VolumeRecord:
        folder = self._folder(key)
        image_ids = tuple(self.session.add_image(slice_rgb(pixels, index)) for index in range(pixels.shape[0]))
        if volume.dicom_files:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(folder / "dicom", ignore_errors=True)  # left by an upload interrupted before its record
            os.replace(volume.dicom_files[0].parent, folder / "dicom")
        record = VolumeRecord(
            key, name, image_ids, pixels.shape, volume.affine, volume.file_affine, volume.to_file, volume.modality, window,
            tuple(path.name for path in volume.dicom_files),
        )
        write_json(folder / "volume.json", record.to_dict())
        for written in (self.session.folder.root / "images", folder):  # the 2xx: on disk
            fsync_folder(written)
        return record

    def get(self, key: str) -> VolumeRecord:
        """The record of volume ``key``; :class:`UnknownVolumeError` for an id never received (or malformed)."""
        path = self._folder(key) / "volume.json"
        if not IMAGE_ID.fullmatch(key) or not path.is_file():
            raise UnknownVolumeError(f"unknown volume id {key!r}: upload the volume first (POST /api/volumes)")
        return VolumeRecord.from_dict(read_json_object(path, "volume record"))

    def keys(self) -> list[str]:
        """The ids of the session's volumes, sorted."""
        return sorted(path.parent.name for path in self.root.glob("*/volume.json") if IMAGE_ID.fullmatch(path.parent.name))

    def summary(self, record: VolumeRecord) -> dict[str, Any]:
        """What the routes answer about a volume: its format (``dicom``, ``nifti``), size, spacing, window and how many slices are shown / corrected."""
        states = self.slice_states(record)
        slices, rows, columns = record.shape
        return {
            "volume_id": record.volume_id, "name": record.name, "format": "dicom" if record.dicom_files else "nifti",
            "slices": slices, "rows": rows, "columns": columns,
            "spacing_mm": list(record.spacing), "modality": record.modality,
            "window": None if record.window is None else list(record.window),
            "slices_shown": sum(state != "none" for state in states), "slices_corrected": states.count("corrected"),
        }

    def slice_states(self, record: VolumeRecord) -> list[str]:
        """Per slice: ``corrected``, ``shown`` (a prediction, no correction) or ``none``."""
        return [self._state(record.volume_id, index) for index in range(record.shape[0])]

    def _state(self, key: str, index: int) -> str:
        for kind in ("corrected", "shown"):
            if self._mask_path(key, kind, index).is_file():
                return kind
        return "none"

    def accepted(self, record: VolumeRecord, index: int) -> np.ndarray | None:
        """bool (rows, columns) accepted mask of slice ``index``: its correction, else the mask shown, else None."""
        record.image_id(index)
        state = self._state(record.volume_id, index)
        return None if state == "none" else read_mask(self._mask_path(record.volume_id, state, index))

    # ------------------------------------------------------- slice by slice

    def propagated_prompts(self, record: VolumeRecord, index: int, neighbour: Neighbour) -> list[Prompt]:
        """Box prompts for slice ``index`` from the accepted mask of its ``neighbour`` (one box per component)."""
        record.image_id(index)
        source = index - 1 if neighbour == "previous" else index + 1
        if not 0 <= source < record.shape[0]:
            raise DataError(f"slice {index} of volume {record.volume_id} has no {neighbour} slice to propagate from")
        mask = self.accepted(record, source)
        if mask is None:
            raise NothingToPropagateError(f"slice {source} of volume {record.volume_id} has no mask to propagate from: predict or correct it first")
        prompts = neighbour_prompts(mask, PROPAGATION_MIN_SIZE, DEFAULT_BOX_MARGIN)
        if not prompts:
            raise NothingToPropagateError(
                f"the mask of slice {source} of volume {record.volume_id} holds no component of {PROPAGATION_MIN_SIZE} px or more: "
                "the structure has ended"
            )
        return prompts

    def predict(self, record: VolumeRecord, index: int, prompts: list[Prompt]) -> Prediction:
        """Segment slice ``index`` with ``prompts`` (slice pixels); the mask shown is kept as the slice's."""
        prediction = self.session.predict(record.image_id(index), prompts)
        write_mask_png(self._mask_path(record.volume_id, "shown", index), prediction.mask)
        return prediction

    def learn(self, record: VolumeRecord, index: int, corrected: np.ndarray) -> dict[str, Any]:
        """Journal the correction of slice ``index`` (:meth:`ServeSession.learn`), then keep it as the slice's, fsynced.

        Returns the session's answer with ``volume_id`` and ``slice``.
        """
        answer = self.session.learn(record.image_id(index), corrected)
        path = self._mask_path(record.volume_id, "corrected", index)
        write_mask_png(path, corrected)
        fsync_folder(path.parent)
        return {**answer, "volume_id": record.volume_id, "slice": index}

    # --------------------------------------------------------------- labels

    def label_volume(self, record: VolumeRecord) -> np.ndarray:
        """bool (slices, rows, columns): each slice's accepted mask, False where it has none."""
        labels = np.zeros(record.shape, bool)
        for index in range(record.shape[0]):
            mask = self.accepted(record, index)
            if mask is not None:
                labels[index] = mask
        return labels

    def write_labels(self, record: VolumeRecord) -> Path:
        """Write ``labels.nii.gz``: the label volume as uint8 0/1 in the input file's grid and affine; returns its path."""
        folder = self._folder(record.volume_id)
        return write_nifti(folder / "labels.nii.gz", self.label_volume(record), record.grid(folder))

    def write_labels_seg(self, record: VolumeRecord, structure: str) -> Path:
        """Write ``labels.seg.dcm``: the label volume as a DICOM SEG (one segment named ``structure``) referencing the series.

        Raises:
            DataError: the volume is not a DICOM series, or no slice has a mask yet.
        """
        from auxol.data.dicom_seg import write_dicom_seg

        if not record.dicom_files:
            raise DataError(f"volume {record.volume_id} ({record.name}) is not a DICOM series: a DICOM SEG needs one; download labels.nii.gz")
        labels = self.label_volume(record)
        if not labels.any():
            raise DataError(f"volume {record.volume_id}: no slice has a mask yet; nothing to write as a DICOM SEG")
        folder = self._folder(record.volume_id)
        return write_dicom_seg(folder / "labels.seg.dcm", labels, record.grid(folder), structure)

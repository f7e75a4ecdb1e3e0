"""An uploaded volume's bytes in: a NIfTI file, or a zip of one DICOM series, read by the package's own reader.

The upload is unpacked into a folder the caller gives (and later deletes, or keeps: a
DICOM series' files are what a DICOM SEG references) and read with
:func:`auxol.data.volumes.read_volume` (geometry, axial layout, rescale), so an upload
obeys the rules of a volume on disk. Before anything
costly, its size is checked against :class:`~auxol.serve.limits.Limits`: a NIfTI's
shape from its header, a zip's central directory and unpacked size from its directory,
each DICOM slice's Rows x Columns from its header before any pixel is decoded.

A zip member is never written under its own name: members are unpacked as numbered
files of one flat folder, and a name that is absolute or climbs out of the archive
(``..``) refuses the whole upload. Errors name the upload (and the member), never the
folder's files.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from auxol.data.volumes import Volume, read_volume
from auxol.errors import DataError
from auxol.serve.limits import LimitError, Limits

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_MEMBERS = 10_000
"""Most files in an uploaded zip (a CT series has a few hundred slices)."""
MAX_DIRECTORY_BYTES = MAX_MEMBERS * 1024
"""Most bytes of a zip's central directory: parsing it costs memory per entry, before any member is read."""
_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = b"PK\x06\x07"


def upload_kind(name: str) -> str:
    """``"nifti"`` or ``"zip"`` by the uploaded file's name; DataError for anything else."""
    lowered = name.lower()
    if lowered.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lowered.endswith(".zip"):
        return "zip"
    raise DataError(f"{name}: not a volume upload; send a .nii or .nii.gz file, or a .zip of one DICOM series")


def read_uploaded_volume(handle: BinaryIO, name: str, limits: Limits, folder: Path) -> Volume:
    """The :class:`Volume` in an uploaded file (a seekable binary file), named ``name`` in errors, unpacked into empty ``folder``.

    A NIfTI file is copied to ``folder/upload.nii[.gz]``; a zip's files are unpacked into
    ``folder/series/`` (the volume's ``dicom_files``).

    Raises:
        DataError: not a NIfTI file or a zip of one regular DICOM series (as
            :func:`~auxol.data.volumes.read_volume` refuses them), a zip member outside
            the archive, a corrupt or encrypted zip.
        LimitError: a slice, the volume, the zip's directory or its unpacked size over a limit.
    """
    if upload_kind(name) == "nifti":
        path = folder / ("upload.nii.gz" if name.lower().endswith(".gz") else "upload.nii")
        with open(path, "wb") as out:
            shutil.copyfileobj(handle, out)
        _check_nifti_header(path, name, limits)
        renames = {str(path): name}
    else:
        path = folder / "series"
        members = _unpack_zip(handle, name, path, limits)
        _check_dicom_headers(path, name, members, limits)
        renames = {str(path / f"{index:05d}"): f"{name}:{member}" for index, member in enumerate(members)} | {str(path): name}
    try:
        volume = read_volume(path)
    except DataError as error:
        raise DataError(_rename(str(error), renames)) from None
    limits.check_volume(*volume.array.shape, name)
    return volume


def _rename(text: str, renames: dict[str, str]) -> str:
    """``text`` with each temporary path replaced by what the user sent (longest paths first)."""
    pattern = "|".join(re.escape(path) for path in sorted(renames, key=len, reverse=True))
    return re.sub(pattern, lambda match: renames[match.group(0)], text)


def _check_nifti_header(path: Path, name: str, limits: Limits) -> None:
    """Refuse a NIfTI file whose header announces more than the limits, before its voxels are read."""
    import nibabel

    try:
        shape = nibabel.load(path).shape  # reads the header only
    except Exception as error:  # nibabel raises many types for corrupt files
        raise DataError(f"{name}: cannot read NIfTI volume ({type(error).__name__})") from None
    columns, rows = (*shape, 1, 1)[:2]  # the file's own first two axes, whatever they are in patient space
    limits.check_volume(math.prod(shape[2:]), rows, columns, name)


def _check_directory(handle: BinaryIO, name: str) -> None:
    """Refuse a zip whose central directory is too large to parse, or that is zip64, from its end record alone."""
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(max(0, size - _END_OF_DIRECTORY.size - 65535))
    tail = handle.read()
    handle.seek(0)
    start = tail.rfind(b"PK\x05\x06")  # where zipfile finds it: the last end record
    if start < 0 or len(tail) - start < _END_OF_DIRECTORY.size:
        raise DataError(f"{name}: not a zip file")
    _, _, _, _, entries, directory_bytes, _, _ = _END_OF_DIRECTORY.unpack_from(tail, start)
    if tail[max(0, start - 20) : start].startswith(_ZIP64_LOCATOR) or entries == 0xFFFF or directory_bytes == 0xFFFFFFFF:
        raise DataError(f"{name}: zip64 archives are not supported; zip the series' slice files in an ordinary zip")
    if entries > MAX_MEMBERS or directory_bytes > MAX_DIRECTORY_BYTES:
        raise LimitError(f"{name}: {entries} files in the zip, over the limit of {MAX_MEMBERS} files")


def _member_name(info: zipfile.ZipInfo, name: str) -> str:
    """The member's name, if it stays inside the archive (no absolute path, drive or ``..``); DataError otherwise."""
    parts = PurePosixPath(info.filename.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts or re.match(r"^[A-Za-z]:", info.filename):
        raise DataError(f"{name}: member {info.filename!r} points outside the archive (absolute path or '..'); refused")
    return info.filename


def _unpack_zip(handle: BinaryIO, name: str, folder: Path, limits: Limits) -> list[str]:
    """Unpack the files of an uploaded zip into ``folder`` as ``00000``, ``00001``, ...; returns their member names in that order."""
    _check_directory(handle, name)
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise DataError(f"{name}: not a zip file (or a corrupt one)") from None
    with archive:
        files = [info for info in archive.infolist() if not info.is_dir()]
        if len(files) > MAX_MEMBERS:
            raise LimitError(f"{name}: {len(files)} files in the zip, over the limit of {MAX_MEMBERS} files")
        members = [_member_name(info, name) for info in files]
        limits.check_unpacked(sum(info.file_size for info in files), name)
        folder.mkdir()
        for index, info in enumerate(files):
            try:
                with archive.open(info) as source, open(folder / f"{index:05d}", "wb") as out:
                    shutil.copyfileobj(source, out)  # zipfile stops at the declared size and checks the CRC
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as error:
                raise DataError(f"{name}: cannot unpack {info.filename!r} ({error})") from None
    return members


def _check_dicom_headers(folder: Path, name: str, members: list[str], limits: Limits) -> None:
    """Refuse a series whose slices announce more pixels than the limits, before any pixel is decoded."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    voxels = 0
    for index, member in enumerate(members):
        try:
            header = pydicom.dcmread(folder / f"{index:05d}", stop_before_pixels=True, specific_tags=["Rows", "Columns", "NumberOfFrames"])
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue  # not DICOM: the series reader ignores it too
        rows, columns = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
        limits.check_pixels(columns, rows, f"{name}:{member}")
        voxels += rows * columns * max(1, int(header.get("NumberOfFrames", 1) or 1))
        if voxels > limits.max_voxels:
            raise LimitError(f"{name}: the series holds more than {limits.max_voxels / 1e6:g} M voxels, the limit of 4 x --max-megapixels")

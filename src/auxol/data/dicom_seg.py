"""A label volume written as a DICOM Segmentation object (highdicom) that references its source series.

The SEG is binary, one segment, one frame per source slice that holds the structure
(empty frames are left out, as highdicom does by default), and carries the source's
patient, study and frame of reference, with every source slice referenced by its SOP
Instance UID, so a PACS or viewer shows it over the series it was made from.

Anonymised series often lack identifiers in the data set itself: a missing SOP Class or
SOP Instance UID is taken from the file's meta header (where DICOM keeps a copy), and a
missing Study or Series Instance UID is derived from the slices' instance UIDs (the same
series always gets the same one), with a warning, since nothing else can name it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from auxol.data.volumes import Volume
from auxol.errors import DataError
from auxol.io import atomic_open


def _property_type(name: str):
    """The SNOMED CT code of a structure name ("liver" -> Liver), else the generic "Tissue"."""
    from pydicom.sr.codedict import codes

    camel = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
    try:
        return getattr(codes.SCT, camel)
    except AttributeError:
        return codes.SCT.Tissue


def _source_headers(volume: Volume) -> list:
    """The source slices' headers (no pixel data), missing identifiers completed (see the module notes)."""
    import pydicom
    from pydicom.uid import generate_uid

    from auxol.progress import warn

    sources = [pydicom.dcmread(file, stop_before_pixels=True) for file in volume.dicom_files]
    for source in sources:
        meta = getattr(source, "file_meta", None)
        if not source.get("SOPClassUID") and meta is not None and meta.get("MediaStorageSOPClassUID"):
            source.SOPClassUID = meta.MediaStorageSOPClassUID
        if not source.get("SOPInstanceUID") and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
            source.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        if not source.get("SOPInstanceUID"):
            raise DataError(f"{volume.source}: a slice has no SOP Instance UID; a DICOM SEG cannot reference it")
    instances = [str(source.SOPInstanceUID) for source in sources]
    derived = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not all(source.get(keyword) for source in sources):
            uid = generate_uid(entropy_srcs=[keyword, *instances])
            for source in sources:
                setattr(source, keyword, uid)
            derived.append(keyword)
    if derived:
        warn(f"{volume.source}: the series has no {' or '.join(derived)} (anonymised?); the DICOM SEG uses one derived from its slices")
    return sources


def write_dicom_seg(path: str | os.PathLike, mask: np.ndarray, volume: Volume, structure: str = "structure") -> Path:
    """Write bool ``mask`` (the volume's (slices, rows, columns)) as a binary DICOM SEG of DICOM-series ``volume``.

    ``structure`` names the segment (its label, and its SNOMED CT property type where
    one exists by that name). Written atomically.

    Raises:
        DataError: ``volume`` was not read from a DICOM series.
    """
    import highdicom
    from pydicom.sr.codedict import codes

    from auxol import __version__

    if not volume.dicom_files:
        raise DataError(f"{volume.source}: a DICOM SEG needs a DICOM series as its source")
    sources = _source_headers(volume)
    frames = volume.in_file_layout(np.asarray(mask) > 0).transpose(2, 1, 0)  # (column, row, slice) -> (slice, row, column)
    algorithm = highdicom.AlgorithmIdentificationSequence(
        name="auxol", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    segment = highdicom.seg.SegmentDescription(
        segment_number=1,
        segment_label=structure,
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=_property_type(structure),
        algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = highdicom.seg.Segmentation(
        source_images=sources,
        pixel_array=frames.astype(np.uint8),
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=highdicom.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
        manufacturer="auxol",
        manufacturer_model_name="auxol",
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"auxol {structure}",
    )
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        seg.save_as(handle)
    return path

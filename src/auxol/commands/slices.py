"""``auxol slices``: cut 3-D image and label volumes into a 2-D dataset that every command reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auxol.commands.options import LabelNamesOption, LabelOption, SliceAxisOption, WindowOption, choices, parse_window, resolve_structure
from auxol.data.volumes import find_volume_pairs, write_slices
from auxol.progress import warn

EmptyPolicy = choices("EmptyPolicy", ("skip", "keep"))


def slices(
    images: Annotated[Path, typer.Option(help="Folder of image volumes: .nii/.nii.gz files or one sub-folder per DICOM series.")],
    labels: Annotated[Path, typer.Option(help="Folder of label volumes with the same names as the images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder (images/, masks/, slices.csv).")],
    axis: SliceAxisOption = 0,
    window: WindowOption = None,
    empty: Annotated[EmptyPolicy, typer.Option(help="Slices without labels: skip or keep.")] = "skip",
    label: LabelOption = None,
    label_names: LabelNamesOption = None,
) -> None:
    """Cut 3-D image and label volumes into a 2-D dataset for 'auxol finetune' and 'auxol evaluate'.

    Labels are aligned to the images by their geometry; slices are axial (--axis 0),
    coronal (1) or sagittal (2), whatever the files' own layout.
    """
    structure = resolve_structure(label, label_names, labels, labels.parent)
    notes: list[str] = []
    pairs = find_volume_pairs(images, labels)
    csv_path = write_slices(pairs, out, axis, parse_window(window), getattr(empty, "value", empty), structure, notes)
    for note in notes:
        warn(note)
    typer.echo(f"wrote {csv_path}")

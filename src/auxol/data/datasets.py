"""Dataset folders and CSV lists of image/mask pairs.

Folder layout: a *part* is a folder holding ``images/`` and ``masks/`` with files of
matching stems (``images/case1.jpg`` pairs with ``masks/case1.png``). A dataset root is
either one part itself (named ``"."``) or a tree whose sub-folders are parts, each named
by its POSIX path relative to the root (``BUSI/benign``). Pairs of a folder are ordered
by stem; pairs of a CSV list keep the list's order.

CSV layout (as in the SAM fine-tuning study, mazurowski-lab/finetune-SAM): one
``image_path,mask_path`` per line, relative to a root folder; a leading ``/`` is
ignored as in the study's own lists, unless the path is an existing absolute path.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from auxol.data.images import IMAGE_SUFFIXES, read_image, read_mask
from auxol.errors import DataError

NOT_IMAGE_SUFFIXES: tuple[str, ...] = (".txt", ".json", ".csv", ".tsv", ".md", ".xml", ".yaml", ".yml", ".ini", ".log", ".db")
"""Suffixes of files that may sit beside images and are skipped without a warning."""


@dataclass(frozen=True)
class Part:
    """A folder of pairs: ``root`` holds ``images_dir`` (root/images) and ``masks_dir`` (root/masks)."""

    name: str
    root: Path
    images_dir: Path
    masks_dir: Path


@dataclass(frozen=True)
class Pair:
    """One image and its mask; ``mask_path`` is None for an image that has no mask."""

    part: str
    stem: str
    image_path: Path
    mask_path: Path | None


class Listing(NamedTuple):
    """The pairs of one part (or CSV list) and the warnings met while listing them."""

    name: str
    pairs: list[Pair]
    warnings: list[str]


def _part_at(folder: Path, name: str) -> Part | None:
    images_dir, masks_dir = folder / "images", folder / "masks"
    return Part(name, folder, images_dir, masks_dir) if images_dir.is_dir() and masks_dir.is_dir() else None


def find_parts(root: str | os.PathLike) -> list[Part]:
    """Find the parts under ``root``: ``root`` itself, or every sub-folder holding images/ and masks/.

    Sub-folders are searched recursively (hidden ones skipped, a part's own sub-folders
    not searched) and returned sorted by name.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    single = _part_at(root, ".")
    if single is not None:
        return [single]
    parts = []
    for folder, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        part = _part_at(Path(folder), Path(folder).relative_to(root).as_posix())
        if part is not None:
            parts.append(part)
            subfolders.clear()
    if not parts:
        raise DataError(
            f"{root}: no dataset found; expected images/ and masks/ with files of matching stems, "
            "in this folder or in each of its sub-folders"
        )
    return sorted(parts, key=lambda part: part.name)


def _files_by_stem(folder: Path, warnings: list[str]) -> dict[str, Path]:
    """Image files of ``folder`` by stem; odd files and duplicate stems are reported in ``warnings``."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or path.is_dir() or suffix in NOT_IMAGE_SUFFIXES:
            continue
        if suffix in IMAGE_SUFFIXES:
            found.setdefault(path.stem, []).append(path)
        else:
            warnings.append(f"{path}: skipped, not an image suffix ({' '.join(IMAGE_SUFFIXES)})")
    for stem, paths in found.items():
        if len(paths) > 1:
            warnings.append(f"{paths[0]}: skipped, {len(paths)} files share stem '{stem}' in {folder}")
    return {stem: paths[0] for stem, paths in found.items() if len(paths) == 1}


def list_pairs(part: Part) -> tuple[list[Pair], list[str]]:
    """Return the pairs of ``part`` sorted by stem, and one warning line per file left out.

    Left out, with a warning: an image without a mask, a mask without an image, files
    sharing a stem, and files with an unknown suffix. Left out silently: hidden files,
    folders and files whose suffix is in :data:`NOT_IMAGE_SUFFIXES`.
    """
    warnings: list[str] = []
    images = _files_by_stem(part.images_dir, warnings)
    masks = _files_by_stem(part.masks_dir, warnings)
    warnings += [f"{images[stem]}: skipped, no mask with this stem in {part.masks_dir}" for stem in sorted(images.keys() - masks.keys())]
    warnings += [f"{masks[stem]}: skipped, no image with this stem in {part.images_dir}" for stem in sorted(masks.keys() - images.keys())]
    pairs = [Pair(part.name, stem, images[stem], masks[stem]) for stem in sorted(images.keys() & masks.keys())]
    if not pairs:
        warnings.append(f"{part.root}: no image/mask pairs")
    return pairs, warnings


def load_pair(pair: Pair, require_foreground: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair as (image uint8 (H, W, 3) RGB, mask bool (H, W)); see read_image and read_mask.

    Raises DataError if a file cannot be read, the pair has no mask, the sizes differ, or
    (with ``require_foreground``) the mask is empty.
    """
    if pair.mask_path is None:
        raise DataError(f"{pair.image_path}: no mask for this image")
    image = read_image(pair.image_path)
    mask = read_mask(pair.mask_path)
    if mask.shape != image.shape[:2]:
        raise DataError(
            f"{pair.mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} "
            f"but image {pair.image_path} is {image.shape[1]}x{image.shape[0]}"
        )
    if require_foreground and not mask.any():
        raise DataError(f"{pair.mask_path}: mask has no foreground")
    return image, mask


def _resolve(value: str, root: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() and path.exists() else root / value.lstrip("/\\")


def read_csv_list(csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Pair]:
    """Read a CSV list of pairs, in file order; paths are relative to ``root`` (default: the CSV's folder).

    Blank lines are skipped. The first line is a header, and skipped, if neither of its
    two fields ends in an image suffix. Pairs are named by the image file's stem; their
    part is the CSV's stem. Raises DataError naming the CSV line for a malformed line,
    a missing file, or a stem listed twice.
    """
    csv_path = Path(csv_path)
    root = csv_path.parent if root is None else Path(root)
    try:
        lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{csv_path}: cannot read CSV list (not UTF-8 text)") from None
    except OSError as exc:
        raise DataError(f"{csv_path}: cannot read CSV list ({exc.strerror or exc})") from None
    rows = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    pairs: list[Pair] = []
    seen: dict[str, int] = {}
    for index, (number, line) in enumerate(rows):
        fields = [field.strip() for field in next(csv.reader([line]))]
        if len(fields) != 2 or not all(fields):
            raise DataError(f"{csv_path}:{number}: expected 'image_path,mask_path', got {line!r}")
        if index == 0 and not any(Path(field).suffix.lower() in IMAGE_SUFFIXES for field in fields):
            continue  # header line
        image_path, mask_path = (_resolve(field, root) for field in fields)
        for kind, path in (("image", image_path), ("mask", mask_path)):
            if not path.is_file():
                raise DataError(f"{csv_path}:{number}: {kind} {path} does not exist (paths are relative to {root})")
        stem = image_path.stem
        if stem in seen:
            raise DataError(f"{csv_path}:{number}: image stem '{stem}' already listed on line {seen[stem]}")
        seen[stem] = number
        pairs.append(Pair(csv_path.stem, stem, image_path, mask_path))
    return pairs


def load_dataset(path: str | os.PathLike) -> list[Listing]:
    """List a dataset given as a folder of parts (see find_parts) or a ``.csv`` list (see read_csv_list).

    Returns one :class:`Listing` per part, in order; a CSV list is one part named by the
    CSV's stem, without warnings (its problems raise DataError).
    """
    path = Path(path)
    if path.suffix.lower() == ".csv" and not path.is_dir():
        return [Listing(path.stem, read_csv_list(path), [])]
    if path.is_file():
        raise DataError(f"{path}: expected a dataset folder or a .csv list")
    return [Listing(part.name, *list_pairs(part)) for part in find_parts(path)]


def valid_pairs(listing: Listing, skipped: list[str]) -> Iterator[tuple[Pair, np.ndarray, np.ndarray]]:
    """Yield (pair, image uint8 (H, W, 3), mask bool (H, W)) for every usable pair of a part.

    Pairs that cannot be used (unreadable file, size mismatch, empty mask) are skipped;
    their one-line reasons are appended to ``skipped``, after the listing's own warnings.
    """
    skipped.extend(listing.warnings)
    for pair in listing.pairs:
        try:
            image, mask = load_pair(pair)
        except DataError as error:
            skipped.append(str(error))
            continue
        yield pair, image, mask

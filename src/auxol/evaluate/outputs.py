"""The folder layout every command writes, and the pictures it draws.

Prediction masks go to ``<root>/<part>/<stem>.png``; a dataset that is itself one part
(named ``"."``) writes ``<root>/<stem>.png``. Scripts rely on these paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from auxol.data import Listing, Pair, load_pair
from auxol.errors import DataError

STDERR = Console(stderr=True, soft_wrap=True, highlight=False)
"""Where warnings go, so that stdout keeps only results."""

TRUTH_COLOUR = (0, 200, 0)
PREDICTION_COLOUR = (255, 40, 40)


def mask_path(root: Path, part: str, stem: str) -> Path:
    """``root/part/stem.png``, or ``root/stem.png`` for the part ``"."``."""
    return (root if part == "." else root / part) / f"{stem}.png"


def overlay(image: np.ndarray, contours: list[tuple[np.ndarray, tuple[int, int, int]]], thickness: int = 2) -> np.ndarray:
    """Draw mask outlines on an image.

    Args:
        image: uint8 (H, W, 3) RGB.
        contours: (bool mask (H, W), RGB colour) pairs, drawn in order.
    Returns:
        A new uint8 (H, W, 3) image.
    """
    canvas = image.copy()
    for mask, colour in contours:
        found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, found, -1, colour, thickness)
    return canvas


def progress(console: Console | None = None, disable: bool = False) -> Progress:
    """The progress bar used by long commands; add tasks with a ``status`` field for live figures.

    ``disable``: show nothing (e.g. on every rank but 0 of a distributed run).
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=disable,
    )


def warn(message: str) -> None:
    """Print a one-line warning to stderr."""
    STDERR.print(f"[yellow]warning:[/yellow] {message}")


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

"""What long commands show a person while they run: a progress bar, and one-line warnings on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

STDERR = Console(stderr=True, soft_wrap=True, highlight=False)
"""Where warnings go, so that stdout keeps only results."""


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

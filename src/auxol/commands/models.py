"""``auxol models list`` and ``auxol models fetch NAME``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from auxol.errors import ConfigError
from auxol.models import MODELS, default_checkpoint
from auxol.models.weights import CHECKPOINT_FILES, cached_path, fetch as fetch_checkpoint

app = typer.Typer(help="List the foundation models and fetch their weights.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """Show every model and whether its weights are present."""
    table = Table(title="auxol models")
    for column in ("name", "model", "weights"):
        table.add_column(column)
    for name, spec in MODELS.items():
        path = default_checkpoint(name)
        status = f"[green]present[/green] {path}" if path else f"[red]missing[/red] (auxol models fetch {name})"
        table.add_row(name, spec.description, status)
    Console().print(table)


@app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(CHECKPOINT_FILES)}.")],
    url: Annotated[str | None, typer.Option(help="A mirror of the official file; its digest is still checked.")] = None,
) -> None:
    """Download NAME's official checkpoint into the cache and verify its digest."""
    if name not in CHECKPOINT_FILES:
        if name in MODELS:
            raise ConfigError(f"{name}: its weights are embedded; nothing to fetch")
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(CHECKPOINT_FILES)}")
    with Progress(*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(), TransferSpeedColumn()) as bar:
        task = bar.add_task(f"fetch {name}", total=None)
        path = fetch_checkpoint(name, progress=lambda done, total: bar.update(task, completed=done, total=total or None), url=url)
    typer.echo(f"{name}: verified {path} (cache {cached_path(name).parent})")

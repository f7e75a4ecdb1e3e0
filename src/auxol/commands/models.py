"""``auxol models list``, ``auxol models fetch NAME`` and ``auxol models export NAME``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from auxol.errors import ConfigError
from auxol.commands.options import CheckpointOption
from auxol.loading import load_model
from auxol.models import MODELS, default_checkpoint
from auxol.models.export import export_onnx
from auxol.models.weights import CHECKPOINT_FILES, cached_path, fetch as fetch_checkpoint

app = typer.Typer(help="List the foundation models, fetch their weights, export them to ONNX.", no_args_is_help=True)


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


@app.command("export")
def export(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(MODELS)}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file of the image encoder; the mask decoder goes beside it as <stem>.decoder.onnx.")],
    checkpoint: CheckpointOption = None,
) -> None:
    """Export NAME's frozen image encoder and mask decoder to ONNX (opset 17, float32).

    The encoder takes the preprocessed image (1, 3, S, S) and gives features (1, 256, 64, 64);
    the decoder takes features, sparse (N, k, 256) and dense (N, 256, 64, 64) prompt
    embeddings and gives low-resolution logits (N, 1, 256, 256). 'auxol evaluate' and the
    other commands export and cache these graphs themselves; this writes them where you say.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out}: expected a .onnx file name")
    model = load_model(name, checkpoint, device="cpu")
    decoder = out.with_name(f"{out.stem}.decoder.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as staging:
        typer.echo(f"{name}: exporting (about a minute for the ViT models) ...")
        export_onnx(model, Path(staging) / out.name, Path(staging) / decoder.name)
        for path in Path(staging).iterdir():  # the two graphs, and the weight files of graphs over 2 GB
            os.replace(path, out.parent / path.name)
    typer.echo(f"{name}: wrote {out} (image encoder) and {decoder} (mask decoder)")

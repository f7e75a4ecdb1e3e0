"""``auxol serve``: one AuxOL session behind a browser page, a JSON API and a Label Studio ML backend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from auxol.commands.options import CheckpointOption, DeviceOption, ModelName, RuntimeOption
from auxol.commands.stream import PresetName
from auxol.io import read_options_file
from auxol.loading import load_model
from auxol.models import DEFAULT_MODEL
from auxol.online import DEFAULT_PRESET
from auxol.online.config import AUXOL_KEYS
from auxol.serve.app import create_app
from auxol.serve.cache import DEFAULT_CACHE_SIZE
from auxol.serve.session import ServeSession
from auxol.serve.settings import resolve_settings
from auxol.serve.sources import API_KEY_VARIABLE, TaskImages
from auxol.serve.store import SessionFolder


def serve(
    session: Annotated[Path, typer.Option("--session", help="Session folder: created, or resumed where it stopped.")],
    model: Annotated[
        ModelName | None, typer.Option("--model", "-m", help=f"Foundation model (new session: {DEFAULT_MODEL}; resumed: its own).")
    ] = None,
    checkpoint: CheckpointOption = None,
    preset: Annotated[PresetName | None, typer.Option(help=f"AuxOL preset (new session: {DEFAULT_PRESET}; resumed: its own).")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="JSON file of AuxOL options over the preset (the keys of 'auxol stream --config').")
    ] = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = "auto",
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 serves this machine only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    label_studio_url: Annotated[
        str | None,
        typer.Option(help=f"Label Studio's address, to fetch task images from it (API token: ${API_KEY_VARIABLE})."),
    ] = None,
    cache_size: Annotated[int, typer.Option(help="Images kept in memory with their embedding.", min=1)] = DEFAULT_CACHE_SIZE,
) -> None:
    """Serve an AuxOL session: correct masks in the browser or in Label Studio, and every correction is learned."""
    folder = SessionFolder(session)
    auxol_options = read_options_file(config, AUXOL_KEYS) if config else None
    settings = resolve_settings(folder, getattr(model, "value", model), checkpoint, getattr(preset, "value", preset), auxol_options)
    net = load_model(settings.model, settings.checkpoint, device, getattr(runtime, "value", runtime))
    served = ServeSession.open(folder, net, settings, cache_size)
    app = create_app(served, TaskImages(label_studio_url, os.environ.get(API_KEY_VARIABLE)))
    typer.echo(f"auxol serve: session {folder.root} ({settings.model}, preset {settings.preset}); open http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port)

"""``auxol serve``: AuxOL sessions behind a browser page, a JSON API and a Label Studio ML backend."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from auxol.commands.options import CheckpointOption, DeviceOption, ModelName, RuntimeOption
from auxol.commands.stream import PresetName
from auxol.errors import ConfigError
from auxol.io import read_options_file
from auxol.loading import load_model
from auxol.models import DEFAULT_MODEL
from auxol.online import DEFAULT_PRESET
from auxol.online.config import AUXOL_KEYS
from auxol.serve.cache import DEFAULT_CACHE_SIZE
from auxol.serve.limits import Limits
from auxol.serve.settings import ServeSettings, resolve_settings
from auxol.serve.sources import TOKEN_VARIABLE, TaskImages
from auxol.serve.store import SessionFolder

API_KEY_VARIABLE = "AUXOL_API_KEY"
DEFAULTS = Limits()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    root: Annotated[
        Path, typer.Option("--root", help="Folder of the sessions: one folder per session, created or resumed where it stopped.")
    ],
    model: Annotated[
        ModelName | None, typer.Option("--model", "-m", help=f"Foundation model of every session (default: {DEFAULT_MODEL}).")
    ] = None,
    checkpoint: CheckpointOption = None,
    preset: Annotated[PresetName | None, typer.Option(help=f"AuxOL preset of new sessions (default: {DEFAULT_PRESET}).")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="JSON file of AuxOL options over the preset, for new sessions (the keys of 'auxol stream --config')."),
    ] = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = "auto",
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 serves this machine only, another needs --api-key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(envvar=API_KEY_VARIABLE, show_envvar=True, help="Key every route but /health needs (Bearer, or Basic password)."),
    ] = None,
    label_studio_url: Annotated[
        str | None,
        typer.Option(help=f"Label Studio's address, to fetch task images from it (its token: ${TOKEN_VARIABLE})."),
    ] = None,
    files_root: Annotated[
        list[Path] | None, typer.Option("--files-root", help="Folder whose files tasks may name as images (repeatable).")
    ] = None,
    max_megapixels: Annotated[float, typer.Option(help="Largest image or mask, in megapixels.", min=0.001)] = DEFAULTS.max_pixels / 1e6,
    max_prompts: Annotated[int, typer.Option(help="Most prompts in one request.", min=1)] = DEFAULTS.max_prompts,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, in MiB.", min=0.001)] = DEFAULTS.max_body_bytes / 2**20,
    cache_size: Annotated[int, typer.Option(help="Images each session keeps in memory with their embedding.", min=1)] = DEFAULT_CACHE_SIZE,
) -> None:
    """Serve AuxOL sessions: correct masks in the browser or in Label Studio, and every correction is learned."""
    import uvicorn  # the server's stack loads here, not with every auxol command (~0.9 s)

    from auxol.serve.app import create_app
    from auxol.serve.sessions import Sessions

    if not is_loopback(host) and not api_key:
        raise ConfigError(f"--host {host} serves other machines: give --api-key (or ${API_KEY_VARIABLE}) so that only its holders can")
    if (root / "config.json").is_file():
        raise ConfigError(f"{root} is one session's folder; give its parent as --root (it is the session {root.name!r})")
    model_name = getattr(model, "value", model) or DEFAULT_MODEL
    auxol_options = read_options_file(config, AUXOL_KEYS) if config else None
    preset_name = getattr(preset, "value", preset)

    def settings_for(folder: SessionFolder) -> ServeSettings:
        if folder.read_config() is None:
            return resolve_settings(folder, model_name, checkpoint, preset_name, auxol_options)
        return resolve_settings(folder, model_name, checkpoint)

    limits = Limits(round(max_megapixels * 1e6), max_prompts, round(max_body_mb * 2**20))
    images = TaskImages(label_studio_url, os.environ.get(TOKEN_VARIABLE), files_root or [], limits)
    net = load_model(model_name, checkpoint, device, getattr(runtime, "value", runtime))
    sessions = Sessions(root, net, settings_for, cache_size, images.read)
    resumed: list[dict[str, Any]] = [{"name": name, **sessions.get(name).status()} for name in sessions.names()]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for status in resumed:
        typer.echo(f"auxol serve: session {status['name']}: {status['images_learned']} images learned, "
                   f"{status['learning_queue']} corrections to learn from the journal")
    app = create_app(sessions, images, limits, api_key)
    typer.echo(f"auxol serve: sessions in {root} ({model_name}); open http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port)

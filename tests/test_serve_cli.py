"""``auxol serve`` on the command line: new vs resumed sessions, and the wiring to the web server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from auxol.errors import ConfigError
from auxol.online import AuxOLConfig
from auxol.serve import SessionFolder, resolve_settings
from test_cli import run_cli
from test_serve_support import EllipseModel


def test_settings_of_a_new_and_of_a_resumed_session(tmp_path):
    folder = SessionFolder(tmp_path / "session")
    new = resolve_settings(folder, checkpoint="weights.pth", preset="paper")
    assert (new.model, new.checkpoint, new.preset) == ("litemedsam", str(Path("weights.pth").resolve()), "paper")
    assert new.auxol == AuxOLConfig.preset("paper")
    folder.write_config(new.to_dict())
    assert resolve_settings(folder) == new == resolve_settings(folder, model="litemedsam", preset="paper")
    with pytest.raises(ConfigError, match="holds a session with --preset paper, not cpu; leave the option out to resume it"):
        resolve_settings(folder, preset="cpu")
    with pytest.raises(ConfigError, match="holds a session with --model litemedsam, not sam_vit_b"):
        resolve_settings(folder, model="sam_vit_b")


def test_config_file_options_go_over_the_preset_and_must_match_on_resume(tmp_path):
    folder = SessionFolder(tmp_path / "session")
    new = resolve_settings(folder, auxol_options={"width": 8, "queue_length": 4})
    assert new.auxol == dataclasses.replace(AuxOLConfig.preset("cpu"), width=8, queue_length=4)
    folder.write_config(new.to_dict())
    assert resolve_settings(folder, auxol_options={"width": 8}) == new
    with pytest.raises(ConfigError, match="differ from --config in queue_length, width"):
        resolve_settings(folder, auxol_options={"width": 16, "queue_length": 2})


def test_the_command_serves_the_sessions_folder(tmp_path, monkeypatch, capsys):
    served = {}

    def run(app, host, port):  # instead of uvicorn.run: a few requests, then "stop the server"
        with TestClient(app) as client:
            served.update(client.get("/api/status", headers=served.get("headers", {})).json(), host=host, port=port)
            served["sessions"] = client.get("/api/sessions", headers=served.get("headers", {})).json()

    monkeypatch.setattr("auxol.commands.serve.load_model", lambda *args: EllipseModel())
    monkeypatch.setattr("uvicorn.run", run)
    root = tmp_path / "sessions"
    assert run_cli(monkeypatch, "serve", "--root", root, "--preset", "paper", "--port", "8123") == 0
    assert (served["host"], served["port"], served["preset"], served["model"]) == ("127.0.0.1", 8123, "paper", "litemedsam")
    config = json.loads((root / "default" / "config.json").read_text())
    assert config["preset"] == "paper" and config["auxol"]["width"] == 64 and config["checkpoint"] is None
    assert run_cli(monkeypatch, "serve", "--root", root) == 0  # resumed: the preset comes from the folder
    assert served["preset"] == "paper" and [entry["name"] for entry in served["sessions"]["sessions"]] == ["default"]
    capsys.readouterr()
    assert run_cli(monkeypatch, "serve", "--root", root / "default") == 2
    assert "is one session's folder; give its parent as --root" in capsys.readouterr().err


def test_another_host_needs_an_api_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("auxol.commands.serve.load_model", lambda *args: EllipseModel())
    monkeypatch.setattr("uvicorn.run", lambda app, host, port: None)
    monkeypatch.delenv("AUXOL_API_KEY", raising=False)
    assert run_cli(monkeypatch, "serve", "--root", tmp_path, "--host", "0.0.0.0") == 2
    error = capsys.readouterr().err.strip()
    assert "--host 0.0.0.0 serves other machines: give --api-key" in error and len(error.splitlines()) == 1
    assert run_cli(monkeypatch, "serve", "--root", tmp_path, "--host", "0.0.0.0", "--api-key", "k3y") == 0
    monkeypatch.setenv("AUXOL_API_KEY", "k3y")
    assert run_cli(monkeypatch, "serve", "--root", tmp_path, "--host", "0.0.0.0") == 0
    for host in ("127.0.0.1", "localhost", "::1"):
        monkeypatch.delenv("AUXOL_API_KEY")
        assert run_cli(monkeypatch, "serve", "--root", tmp_path, "--host", host) == 0
        monkeypatch.setenv("AUXOL_API_KEY", "k3y")

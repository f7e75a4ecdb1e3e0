"""What a served session is: its model, weights and AuxOL configuration, and how a restart finds them.

A new session folder takes the options given (defaults: LiteMedSAM, its embedded
weights, the ``cpu`` preset, whose AuxOL options a ``--config`` file may override). A folder that already holds a session (its
``config.json``) resumes it: options left out are read from the folder, and an option
given with another value is an error, since the saved learner belongs to its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auxol.errors import ConfigError
from auxol.models import DEFAULT_MODEL
from auxol.online import DEFAULT_PRESET, AuxOLConfig
from auxol.online.config import AUXOL_KEYS
from auxol.options import resolve
from auxol.serve.store import SessionFolder


@dataclass(frozen=True)
class ServeSettings:
    """The resolved settings of a session, as ``config.json`` holds them.

    Attributes:
        model: foundation model name (a key of :data:`auxol.models.MODELS`).
        checkpoint: absolute path of the weights file, or None for the model's default weights.
        preset: the AuxOL preset the configuration came from.
        auxol: the AuxOL learner's configuration.
    """

    model: str
    checkpoint: str | None
    preset: str
    auxol: AuxOLConfig

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "checkpoint": self.checkpoint, "preset": self.preset, "auxol": self.auxol.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeSettings:
        return cls(data["model"], data["checkpoint"], data["preset"], AuxOLConfig.from_dict(data["auxol"]))


def resolve_settings(
    folder: SessionFolder,
    model: str | None = None,
    checkpoint: str | Path | None = None,
    preset: str | None = None,
    auxol_options: dict[str, Any] | None = None,
) -> ServeSettings:
    """The settings of the session in ``folder``: the saved ones, or new ones from the options (None = default).

    ``auxol_options``: AuxOL options (:class:`~auxol.online.AuxOLConfig` fields, e.g. a
    ``--config`` file's) over the preset's, layered as every command layers its options
    (:func:`auxol.options.resolve`).
    """
    checkpoint = None if checkpoint is None else str(Path(checkpoint).resolve())
    saved = folder.read_config()
    if saved is None:
        preset = preset or DEFAULT_PRESET
        auxol = AuxOLConfig.from_dict(resolve(AuxOLConfig.preset(preset).to_dict(), None, auxol_options or {}, AUXOL_KEYS))
        return ServeSettings(model or DEFAULT_MODEL, checkpoint, preset, auxol)
    try:
        settings = ServeSettings.from_dict(saved)
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{folder.config_path}: not the settings of an auxol serve session ({error})") from None
    given = {"model": model, "checkpoint": checkpoint, "preset": preset}
    for option, value in given.items():
        kept = getattr(settings, option)
        if value is not None and value != kept:
            raise ConfigError(
                f"{folder.root} holds a session with --{option} {kept}, not {value}; "
                "leave the option out to resume it, or use another session (a new name under --root)"
            )
    differing = sorted(key for key, value in (auxol_options or {}).items() if settings.auxol.to_dict()[key] != value)
    if differing:
        raise ConfigError(
            f"{folder.root} holds a session whose AuxOL options differ from --config in {', '.join(differing)}; "
            "leave --config out to resume it, or use another session (a new name under --root)"
        )
    return settings

"""What a stream run depends on, and how its options resolve.

Options resolve in three layers (:func:`auxol.options.resolve`): the AuxOL ``preset`` (and
the :class:`~auxol.stream.clinician.StreamOptions` defaults), then the keys of a JSON
config file, then the options given on the command line. The file is one JSON object
whose keys are those of :class:`~auxol.online.AuxOLConfig` and of ``StreamOptions``
(``{"width": 32, "interval": 2}``). Every run writes its resolved settings to
``OUT/config.json``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from auxol.online import AuxOLConfig
from auxol.online.config import AUXOL_KEYS
from auxol.options import resolve
from auxol.stream.clinician import StreamOptions

STREAM_KEYS = frozenset(option.name for option in dataclasses.fields(StreamOptions))
"""The option names of :class:`StreamOptions`: the stream keys a config file may hold."""


@dataclass(frozen=True)
class StreamSettings:
    """Everything a run depends on; written to ``config.json`` and checked on resume."""

    data: str
    model: str
    checkpoint: str | None
    preset: str
    auxol: AuxOLConfig
    stream: StreamOptions = field(default_factory=StreamOptions)
    save_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "auxol": self.auxol.to_dict()}


def resolve_options(
    preset: str, config_file: str | os.PathLike | None, given: Mapping[str, Any]
) -> tuple[AuxOLConfig, StreamOptions]:
    """The AuxOL config and the stream options: ``preset``, then ``config_file``, then the ``given`` options.

    ``given`` maps AuxOL and stream option names to the values the user typed.
    """
    values = resolve({**AuxOLConfig.preset(preset).to_dict(), **asdict(StreamOptions())}, config_file, given, AUXOL_KEYS | STREAM_KEYS)
    auxol = AuxOLConfig.from_dict({key: value for key, value in values.items() if key in AUXOL_KEYS})
    return auxol, StreamOptions(**{key: value for key, value in values.items() if key in STREAM_KEYS})

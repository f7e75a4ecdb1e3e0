"""Options in layers, the same way for every command: defaults, then a config file, then the flags given.

``auxol stream`` starts from an AuxOL preset, ``auxol serve`` from a preset for a new
session, ``auxol finetune`` from :class:`~auxol.finetune.config.FinetuneConfig`'s defaults;
each then applies the keys of its ``--config FILE.json`` (one JSON object), then the
options the user typed on the command line (only those: a flag left at its default does
not undo the file). The commands find the typed options with
:func:`auxol.commands.options.given_options`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from auxol.io import read_options_file


def resolve(
    base: Mapping[str, Any], config_file: str | os.PathLike | None, given: Mapping[str, Any], known: Iterable[str]
) -> dict[str, Any]:
    """``base``, overridden by the keys of ``config_file``, overridden by ``given``.

    Args:
        base: the starting values (a preset's, or a config type's defaults).
        config_file: a JSON object of options, or None; a key not in ``known`` raises
            :class:`~auxol.errors.ConfigError` naming the file.
        given: the options the user gave explicitly; enum members count as their value.
        known: every option name the file may hold.
    """
    values = dict(base)
    if config_file is not None:
        values.update(read_options_file(config_file, known))
    values.update({key: value.value if isinstance(value, Enum) else value for key, value in given.items()})
    return values

"""The ``auxol`` command: one Typer app, one module per sub-command under :mod:`auxol.commands`.

Errors caused by the user's input (:class:`auxol.errors.AuxolError`) are printed as one
line and end the process with status 2, without a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from auxol.errors import AuxolError

app = typer.Typer(
    name="auxol",
    help="Make Segment Anything and its medical variants segment medical images well.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from auxol.commands import evaluate, finetune, models, predict, serve, slices, stream

    app.command("evaluate")(evaluate.evaluate)
    app.command("predict", cls=predict.PredictCommand)(predict.predict)
    app.command("stream")(stream.stream)
    app.command("demo")(stream.demo)
    app.command("finetune")(finetune.finetune)
    app.command("pretrain")(finetune.pretrain)
    app.command("split")(finetune.split)
    app.command("slices")(slices.slices)
    app.command("serve")(serve.serve)
    app.add_typer(models.app, name="models")


_register()


def main() -> None:
    """Entry point of the ``auxol`` script and of ``python -m auxol``."""
    try:
        app()
    except AuxolError as error:
        Console(stderr=True).print(f"[red]auxol: error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("auxol: interrupted; results written so far are complete files")
        sys.exit(130)

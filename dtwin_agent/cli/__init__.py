"""The ``dtwin`` command line: one module per command group, each translating options into library calls.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, no traceback, usage errors
included: :class:`~dtwin_agent.cli._common.OneLineGroup`); 1 anything else.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dtwin_agent.cli._common import OneLineGroup
from dtwin_agent.cli.cache import cache_app
from dtwin_agent.cli.chat import chat
from dtwin_agent.cli.eval import eval_command
from dtwin_agent.cli.mcp import mcp
from dtwin_agent.cli.models import models_app
from dtwin_agent.cli.segment import segment, twin
from dtwin_agent.cli.twins import twins_app
from dtwin_agent.cli.ui import ui

app = typer.Typer(
    cls=OneLineGroup,
    name="dtwin",
    help="Reasoning segmentation with digital twin representations (DTwinSeger).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain Click help: no "<bool>" type column, readable in logs
)


def _version(value: bool) -> None:
    if value:
        from dtwin_agent import __version__

        typer.echo(f"dtwin-agent {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Reasoning segmentation with digital twin representations (DTwinSeger)."""


app.command("twin")(twin)
app.command("segment")(segment)
app.command("chat")(chat)
app.command("mcp")(mcp)
app.command("eval")(eval_command)
app.command("ui")(ui)
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")
app.add_typer(twins_app, name="twins")


def main() -> None:  # pragma: no cover - console entry point
    """Run the app."""
    app()

"""``dtwin mcp``: serve the segment and describe_twin tools over MCP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dtwin_agent.cli._common import handle_errors
from dtwin_agent.cli.options import pipeline_options
from dtwin_agent.config import Settings


@handle_errors
@pipeline_options
def mcp(
    http: Annotated[
        bool, typer.Option("--http", help="streamable HTTP on 127.0.0.1 instead of stdio")
    ] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port")] = 8765,
    root: Annotated[
        list[Path] | None, typer.Option("--root", help="allowed image folder (repeatable)")
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Serve the segment tools over MCP (stdio or HTTP).

    The tools are segment and describe_twin; --http listens on 127.0.0.1 only. The model and
    pipeline options apply to every call.
    """
    from dtwin_agent.integrations.mcp_server import serve

    try:
        serve(http=http, port=port, roots=root or None, settings=settings)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None

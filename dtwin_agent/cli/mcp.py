"""``dtwin mcp``: serve the segment and describe_twin tools over MCP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dtwin_agent.cli._common import ConfigOpt, handle_errors, settings_from_cli


@handle_errors
def mcp(
    http: Annotated[
        bool, typer.Option("--http", help="streamable HTTP on 127.0.0.1 instead of stdio")
    ] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port")] = 8765,
    root: Annotated[
        list[Path] | None, typer.Option("--root", help="allowed image folder (repeatable)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the segment and describe_twin tools over MCP (stdio, or --http on 127.0.0.1 only)."""
    from dtwin_agent.integrations.mcp_server import serve

    try:
        serve(http=http, port=port, roots=root or None, settings=settings_from_cli(config))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None

"""The MCP server (``dtwin mcp``): the segmentation tool for any MCP client.

Tools:

- ``segment(image_path, query, session_id=None)``: the same arguments and answer as the LangChain
  tool (:class:`~dtwin_agent.integrations.tool.DTwinSegmentTool`). Content: the short text, then the mask as a
  PNG image (L mode, 0/255, original size); structured content: ids, mask RLE, file paths, twin id.
- ``describe_twin(image_path)``: the twin's objects (id, semantic, spatial text, bbox, area %, parent).

Errors come back as tool results with ``is_error`` set and a hint, never as a crash (the cause of
an unexpected one is logged). Transports: stdio (default) and streamable HTTP bound to 127.0.0.1
only; a port in use is one clear error before anything starts.

Images are read only under the roots given (``--root DIR``, repeatable, else the setting
``access.image_roots``); with none the server starts but reads no image, and says so. A path
outside the roots gets the same answer whether or not it exists.

Run as ``dtwin mcp`` or ``python -m dtwin_agent.integrations.mcp_server [--http] [--port N] [--root DIR]...``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from langchain_core.tools import ToolException
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations

from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.errors import DTwinError, InputError
from dtwin_agent.images import NO_ROOTS, check_roots
from dtwin_agent.integrations.tool import DTwinSegmentTool

logger = logging.getLogger(__name__)
HOST = "127.0.0.1"
INSTRUCTIONS = (
    "Reasoning segmentation over an image's digital twin. Call `segment` with an image path and a "
    "request (explicit or implicit, e.g. 'what would I cut bread with?'); reuse `session_id` for "
    "follow-ups about the same image. `describe_twin` lists the numbered objects."
)


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def build_server(
    tool: DTwinSegmentTool | None = None,
    *,
    settings: Settings | None = None,
    roots: Sequence[str | Path] | None = None,
) -> MCPServer:
    """An MCP server exposing ``segment`` and ``describe_twin``.

    Args:
        tool: the LangChain tool doing the work (its settings, cache and roots apply).
        settings: used when ``tool`` is None (default: resolved from file and environment).
        roots: allowed image folders when ``tool`` is None (default: the setting
            ``access.image_roots``; none: the server reads no image).

    """
    if tool is None:
        tool = DTwinSegmentTool(
            settings=settings or resolve_settings(),
            allowed_roots=[Path(r) for r in roots] if roots else None,
        )
    server = MCPServer(name="dtwin", instructions=INSTRUCTIONS)
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(
        name="segment",
        description=tool.description,
        annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True, open_world_hint=False),
    )
    def segment(image_path: str, query: str, session_id: str | None = None) -> CallToolResult:
        """Segment what the query asks for; the mask comes back as a PNG image and as RLE.

        Args:
            image_path: path of the image file (inside the allowed folders).
            query: what to segment, in plain words; may be implicit.
            session_id: reuse for follow-up questions about the same image.

        """
        try:
            content, artifact = tool.segment_image(image_path, query, session_id)
        except ToolException as exc:
            return _error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must still reach the client as an answer
            logger.error("segment failed unexpectedly", exc_info=exc)
            return _error(f"internal error in segment: {type(exc).__name__}: {exc}")
        png = Path(artifact["files"]["mask"]).read_bytes()
        return CallToolResult(
            content=[
                TextContent(type="text", text=content),
                ImageContent(type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png"),
            ],
            structured_content=artifact,
        )

    @server.tool(name="describe_twin", annotations=read_only)
    def describe_twin(image_path: str) -> CallToolResult:
        """List the numbered objects of an image's digital twin: what each is and where.

        Args:
            image_path: path of the image file (inside the allowed folders).

        """
        try:
            described: dict[str, Any] = tool.describe_twin(image_path)
        except ToolException as exc:
            return _error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must still reach the client as an answer
            logger.error("describe_twin failed unexpectedly", exc_info=exc)
            return _error(f"internal error in describe_twin: {type(exc).__name__}: {exc}")
        lines = [f"#{o['id']} {o['semantic']}: {o['spatial']}" for o in described["objects"]]
        text = f"{described['summary']}\n" + "\n".join(lines)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=described)

    return server


BACKLOG = 2048
"""Pending connections queued before uvicorn accepts (uvicorn's own default backlog)."""


def bind_port(port: int, host: str = HOST) -> socket.socket:
    """A listening TCP socket on ``host:port`` (what uvicorn would bind, bound first here).

    It listens before the server prints its start line, so a client that connects as soon as it reads
    that line is queued until uvicorn accepts, never refused (uvicorn listens on it again with its own
    backlog).

    Raises:
        InputError: a port outside 1..65535.
        DTwinError: the port is in use (or cannot be bound), as one line naming it.

    """
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port} is not a TCP port (1..65535)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no obstacle
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise DTwinError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server?); "
            "choose another port with --port"
        ) from exc
    return sock


def serve(
    *,
    http: bool = False,
    port: int = 8765,
    roots: Sequence[str | Path] | None = None,
    settings: Settings | None = None,
) -> None:
    """Run the server: stdio, or streamable HTTP on ``127.0.0.1:port`` (path ``/mcp``).

    Raises:
        InputError: a bad port.
        DTwinError: the port is in use; nothing was started.

    """
    if http and not 1 <= port <= 65535:
        raise InputError(f"--port {port} is not a TCP port (1..65535)")
    tool_roots = check_roots(roots or (settings or resolve_settings()).access.image_roots)
    server = build_server(settings=settings, roots=roots)
    if not tool_roots:
        logger.warning("no --root given: %s", NO_ROOTS)
    if not http:
        # stdout carries the protocol: the one start line goes to stderr, for a person at a terminal
        print(
            "MCP server on stdio, for an MCP client (Ctrl-C stops it)",
            file=sys.stderr,
            flush=True,
        )
        server.run("stdio")
        return
    import anyio
    import uvicorn

    sock = bind_port(port)
    try:
        config = uvicorn.Config(server.streamable_http_app(host=HOST), log_level="warning")
        print(f"MCP server on http://{HOST}:{port}/mcp (Ctrl-C stops it)", file=sys.stderr, flush=True)
        anyio.run(uvicorn.Server(config).serve, [sock])
    finally:
        sock.close()


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m dtwin_agent.integrations.mcp_server``: the same options and exit codes as ``dtwin mcp``."""
    parser = _OneLineParser(prog="dtwin-mcp", description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="streamable HTTP on 127.0.0.1 instead of stdio")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    parser.add_argument("--root", action="append", default=None, help="allowed image folder (repeatable)")
    args = parser.parse_args(argv)
    from dtwin_agent.cli._common import show_warnings

    show_warnings()
    try:
        serve(http=args.http, port=args.port, roots=args.root)
    except DTwinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, InputError) else 1)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()

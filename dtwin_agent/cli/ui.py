"""``dtwin ui``: serve the web page (a Gradio app) on 127.0.0.1; options in, one library call out.

Registered by :mod:`dtwin_agent.cli` as ``app.command("ui")(ui)``. Exit codes: 0 stopped with
Ctrl-C, 2 bad input (a missing ``ui`` extra, an unreadable IMAGE, a --root that is not a folder),
1 any other failure (e.g. no free port), each as one line on stderr. The folders images may be
picked from are ``--root`` (repeatable), else the setting ``access.image_roots``, as for ``dtwin mcp``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dtwin_agent.cli._common import err, fail, handle_errors
from dtwin_agent.cli.options import pipeline_options
from dtwin_agent.config import Settings

EXTRA_HINT = "dtwin ui needs the 'ui' extra (Gradio): pip install 'dtwin-agent[ui]'"


def _gradio_environment(settings: Settings) -> None:
    """Gradio's settings read from the environment, set before it is imported (a user's own win)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    # uploads arrive in Gradio's folder before they are moved into their session's folder
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(settings.cache.dir) / "ui-tmp"))


@handle_errors
@pipeline_options
def ui(
    image: Annotated[
        Path | None,
        typer.Argument(metavar="[IMAGE]", help="open this image (one session, shared by every tab)"),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="port (default: the first free one from 7860)"),
    ] = None,
    root: Annotated[
        list[Path] | None,
        typer.Option(
            "--root", help="folder images may be picked from (repeatable; default: access.image_roots)"
        ),
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Serve the web page: open an image, chat about it, see the answers, reopen sessions.

    Sessions are the same as dtwin chat's (continue one on the page or in the terminal). Prints
    the page's address; stop with Ctrl-C.
    """
    from dtwin_agent.images import check_roots, load_image

    roots = check_roots(root or settings.access.image_roots)
    if image is not None:
        load_image(image)  # the CLI's checks, before the server starts
    _gradio_environment(settings)
    try:
        import gradio  # noqa: F401
    except ImportError:
        fail(EXTRA_HINT, 2)
    from dtwin_agent.integrations.ui.app import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"warning: listening on {host}: whoever reaches it can run models and read the images under the "
            "roots",
            markup=False,
            highlight=False,
        )

    if not roots:
        err.print(
            "warning: no --root (nor access.image_roots): images can be uploaded, not picked from a folder",
            markup=False,
            highlight=False,
        )

    def ready(url: str) -> None:
        folders = ", ".join(str(r) for r in roots) or "none"
        typer.echo(f"dtwin ui: {url} (folders to pick images from: {folders}; Ctrl-C stops)")
        sys.stdout.flush()

    try:
        serve(settings, roots, image=image, host=host, port=port, on_ready=ready)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None

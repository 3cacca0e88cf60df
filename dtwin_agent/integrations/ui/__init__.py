"""The web page (``dtwin ui``): chat-driven segmentation sessions in a browser.

- :mod:`~dtwin_agent.integrations.ui.intake`: images entering the page (uploads into the
  session's folder, picks confined to the allowed roots, the CLI's size and type checks);
- :mod:`~dtwin_agent.integrations.ui.pool`: the open chat sessions (the same SQLite sessions as
  ``dtwin chat``; turns serialised by the session layer);
- :mod:`~dtwin_agent.integrations.ui.views`: what the page shows, as plain data (no Gradio);
- :mod:`~dtwin_agent.integrations.ui.app`: the Gradio page and :func:`serve` (needs the ``ui``
  extra: ``pip install 'dtwin-agent[ui]'``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_page", "serve"]


def __getattr__(name: str) -> Any:  # Gradio is imported only when the page is wanted
    if name in __all__:
        from dtwin_agent.integrations.ui import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

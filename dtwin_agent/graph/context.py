"""Run context: every provider and limit a node may read, passed per run (``graph.invoke(context=...)``).

One compiled graph serves every configuration because nodes read settings only from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dtwin_agent.config import Settings, resolve_settings

_FROM_SETTINGS = "from settings"


@dataclass
class Context:
    """Per-run dependencies.

    Attributes:
        settings: the resolved settings of the run (a dict is resolved like every other override:
            environment and ``dtwin.toml`` below the given values).
        proposer: an already-built mask proposer to use instead of the one settings name
            (tests and long-lived services pass one to keep model weights loaded).
        cache: a twin/label cache (:class:`~dtwin_agent.cache.SqliteCache`), None to disable caching;
            by default the one ``settings.cache`` names, opened by :meth:`get_cache` on first use
            (inside a node: LangGraph servers build contexts on their event loop, where file work
            blocks).
    """

    settings: Settings = field(default_factory=resolve_settings)
    proposer: Any = None
    cache: Any = _FROM_SETTINGS

    def __post_init__(self) -> None:
        # LangGraph servers build the context from a JSON dict: settings arrive as a dict (or absent)
        if not isinstance(self.settings, Settings):
            self.settings = resolve_settings(overrides=dict(self.settings or {}))

    def get_cache(self) -> Any:
        """The run's cache: the one given, None when disabled, else the one ``settings.cache`` names."""
        if isinstance(self.cache, str) and self.cache == _FROM_SETTINGS:
            from dtwin_agent.cache import open_cache

            self.cache = open_cache(self.settings)
        return self.cache

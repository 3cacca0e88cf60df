"""Run context: every provider and limit a node may read, passed per run (``graph.invoke(context=...)``).

One compiled graph serves every configuration because nodes read settings only from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dtwin_agent.config import Settings, resolve_settings


@dataclass
class Context:
    """Per-run dependencies.

    Attributes:
        settings: the resolved settings of the run.
        proposer: an already-built mask proposer to use instead of the one settings name
            (tests and long-lived services pass one to keep model weights loaded).
        cache: a twin/label cache (``dtwin_agent.cache.TwinCache``) or None to disable caching.
    """

    settings: Settings = field(default_factory=resolve_settings)
    proposer: Any = None
    cache: Any = None

    def __post_init__(self) -> None:
        # LangGraph servers build the context from a JSON dict: settings arrive as a dict (or absent)
        # and are resolved like everywhere else (environment and dtwin.toml below the given values).
        if not isinstance(self.settings, Settings):
            self.settings = resolve_settings(overrides=dict(self.settings or {}))

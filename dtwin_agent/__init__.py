"""dtwin-agent: DTwinSeger reasoning segmentation over digital twin representations.

The public API. Everything is importable from here; heavy parts (the graph, torch, LangChain)
load on first use, so ``import dtwin_agent`` stays light.

Example:
    >>> import dtwin_agent  # doctest: +SKIP
    >>> result = dtwin_agent.segment("kitchen.jpg", "what would you cut bread with?")  # doctest: +SKIP
    >>> result.mask.shape, result.ids  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from dtwin_agent.errors import (
    ChecksumError,
    ConfigError,
    DTwinError,
    FetchError,
    ImageError,
    InputError,
    ModelNotFetchedError,
    NetworkError,
    ParseError,
    ProviderCallError,
    ProviderError,
    SessionBusyError,
    SessionError,
    SessionStoreError,
    UnknownModelError,
)

_LAZY = {
    "build_twin": "dtwin_agent.api",
    "segment": "dtwin_agent.api",
    "SegmentationResult": "dtwin_agent.api",
    "DigitalTwin": "dtwin_agent.twin",
    "TwinObject": "dtwin_agent.twin",
    "Relation": "dtwin_agent.twin",
    "ReasoningStep": "dtwin_agent.twin",
    "ObjectDecision": "dtwin_agent.twin",
    "ImageInfo": "dtwin_agent.twin",
    "RLE": "dtwin_agent.twin",
    "Settings": "dtwin_agent.config",
    "resolve_settings": "dtwin_agent.config",
    "DTwinSegmentTool": "dtwin_agent.integrations.tool",
    "ChatSession": "dtwin_agent.integrations.chat",
    "build_graph": "dtwin_agent.graph",
}

if TYPE_CHECKING:
    from dtwin_agent.api import SegmentationResult, build_twin, segment
    from dtwin_agent.config import Settings, resolve_settings
    from dtwin_agent.graph import build_graph
    from dtwin_agent.integrations.chat import ChatSession
    from dtwin_agent.integrations.tool import DTwinSegmentTool
    from dtwin_agent.twin import (
        RLE,
        DigitalTwin,
        ImageInfo,
        ObjectDecision,
        ReasoningStep,
        Relation,
        TwinObject,
    )


def __getattr__(name: str) -> Any:
    """Load a heavy public name on first use (PEP 562); ``__version__`` from the installed metadata."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("dtwin-agent")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0+unknown"
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dtwin_agent' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


__all__ = [
    "RLE",
    "ChatSession",
    "ChecksumError",
    "ConfigError",
    "DTwinError",
    "DTwinSegmentTool",
    "DigitalTwin",
    "FetchError",
    "ImageError",
    "ImageInfo",
    "InputError",
    "ModelNotFetchedError",
    "NetworkError",
    "ObjectDecision",
    "ParseError",
    "ProviderCallError",
    "ProviderError",
    "ReasoningStep",
    "Relation",
    "SegmentationResult",
    "SessionBusyError",
    "SessionError",
    "SessionStoreError",
    "Settings",
    "TwinObject",
    "UnknownModelError",
    "__version__",
    "build_graph",
    "build_twin",
    "resolve_settings",
    "segment",
]

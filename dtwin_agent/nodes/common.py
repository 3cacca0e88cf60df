"""Helpers shared by the graph nodes."""

from __future__ import annotations

import os
from functools import lru_cache

from langgraph.runtime import Runtime

from dtwin_agent.config import OFFLINE, Settings
from dtwin_agent.context import Context
from dtwin_agent.imageio import LoadedImage, load_image


def settings_of(runtime: Runtime[Context] | None) -> Settings:
    """The run's settings (defaults when the graph runs without a context)."""
    return context_of(runtime).settings


def context_of(runtime: Runtime[Context] | None) -> Context:
    """The run's context object (a default one when none was given)."""
    context = getattr(runtime, "context", None)
    if isinstance(context, Context):
        return context
    if isinstance(context, dict):  # a plain dict from a LangGraph server
        return Context(settings=context.get("settings") or {})
    return Context()


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> LoadedImage:
    return load_image(path)


def image_of(state: dict) -> LoadedImage:
    """Decode the state's image reference (decoded images are cached per file version)."""
    path = state["image"]
    try:
        stat = os.stat(path)
    except OSError:
        return load_image(path)  # raises ImageError with a clear message
    return _load(path, stat.st_mtime_ns, stat.st_size)


def is_offline(spec: object) -> bool:
    """True when a model setting names the embedded offline component (or nothing)."""
    return spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", OFFLINE))


def model_name(spec: object) -> str:
    """A short printable name of a model setting (the offline LLM says what it is)."""
    if is_offline(spec):
        from dtwin_agent.offline_models import NAME

        return f"{NAME} (keyword matcher, not an LLM)"
    if isinstance(spec, str):
        return spec
    return getattr(spec, "model_name", None) or getattr(spec, "model", None) or type(spec).__name__

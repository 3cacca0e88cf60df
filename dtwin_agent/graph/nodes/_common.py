"""Helpers shared by the graph nodes."""

from __future__ import annotations

from langgraph.runtime import Runtime

from dtwin_agent.config import Settings
from dtwin_agent.graph.context import Context
from dtwin_agent.images import LoadedImage, load_image


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


def image_of(state: dict) -> LoadedImage:
    """Decode the state's image reference (``load_image`` keeps it per file version)."""
    return load_image(state["image"])

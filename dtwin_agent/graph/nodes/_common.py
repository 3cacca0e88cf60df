"""Helpers shared by the graph nodes."""

from __future__ import annotations

from langgraph.runtime import Runtime

from dtwin_agent.config import OFFLINE, Settings
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


def is_offline(spec: object) -> bool:
    """True when a model setting names the embedded offline component (or nothing)."""
    return spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", OFFLINE))


def model_name(spec: object, settings: Settings | None = None) -> str:
    """A short printable name of a model setting; ``"offline"`` says what it resolves to here."""
    if is_offline(spec):
        from dtwin_agent.offline.lexical import NAME
        from dtwin_agent.offline.profile import offline_llm_name

        local = offline_llm_name(settings) if settings is not None else None
        if local:
            return f"local:{local} (offline profile)"
        return f"{NAME} (keyword matcher, not an LLM)"
    if isinstance(spec, str):
        return spec
    return getattr(spec, "model_name", None) or getattr(spec, "model", None) or type(spec).__name__

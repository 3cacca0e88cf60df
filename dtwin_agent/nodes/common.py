"""Helpers shared by the graph nodes."""

from __future__ import annotations

import os
from collections import OrderedDict

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


_IMAGES: OrderedDict[tuple[str, int, int], LoadedImage] = OrderedDict()
_MAX_IMAGES = 4


def _file_key(path: str) -> tuple[str, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def remember_image(path: str, image: LoadedImage) -> None:
    """Keep an already-decoded image for the nodes (the API decodes it once to validate it)."""
    key = _file_key(path)
    if key is not None:
        _IMAGES[key] = image
        _IMAGES.move_to_end(key)
        while len(_IMAGES) > _MAX_IMAGES:
            _IMAGES.popitem(last=False)


def image_of(state: dict) -> LoadedImage:
    """Decode the state's image reference (decoded images are kept per file version)."""
    path = state["image"]
    key = _file_key(path)
    if key is None:
        return load_image(path)  # raises ImageError with a clear message
    if key not in _IMAGES:
        remember_image(path, load_image(path))
    _IMAGES.move_to_end(key)
    return _IMAGES[key]


def is_offline(spec: object) -> bool:
    """True when a model setting names the embedded offline component (or nothing)."""
    return spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", OFFLINE))


def model_name(spec: object, settings: Settings | None = None) -> str:
    """A short printable name of a model setting; ``"offline"`` says what it resolves to here."""
    if is_offline(spec):
        from dtwin_agent.offline_models import NAME
        from dtwin_agent.profile import offline_llm_name

        local = offline_llm_name(settings) if settings is not None else None
        if local:
            return f"local:{local} (offline profile)"
        return f"{NAME} (keyword matcher, not an LLM)"
    if isinstance(spec, str):
        return spec
    return getattr(spec, "model_name", None) or getattr(spec, "model", None) or type(spec).__name__

"""lookup_twin and store_twin: the twin cache around proposal, labelling and the spatial layer.

A twin is cached per image pixels, perception and spatial settings, granularity and labeller
(:func:`twin_cache_key`), not per query: a follow-up query on the same image skips proposal and
labelling and goes straight to reasoning. A damaged entry is dropped and rebuilt, never trusted.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from dtwin_agent.cache import content_key
from dtwin_agent.config import Settings, is_offline, model_name
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import context_of
from dtwin_agent.graph.nodes.semantics import offline_labeller_name
from dtwin_agent.perception import resolve_settings_for_proposer
from dtwin_agent.twin import TWIN_VERSION, DigitalTwin

CACHE_NOTE = "twin reused from the cache"


def twin_cache_key(state: dict[str, Any], settings: Settings) -> str:
    """Key of a cached twin: twin version, image pixels, perception + spatial settings, granularity, labeller.

    The query is not part of the key: a follow-up query on the same image reuses the twin (its
    labels were written for the first query).
    """
    # "auto" proposer and store names resolved: fetching MobileSAM later must not reuse old twins
    perception = resolve_settings_for_proposer(settings).perception.model_dump(
        exclude={"granularity", "device"}
    )
    vlm = settings.models.vlm
    labeller = [
        offline_labeller_name(settings) if is_offline(vlm) else model_name(vlm),
        settings.semantics.strategy,
        settings.semantics.examples_file,
    ]
    return content_key(
        "twin",
        TWIN_VERSION,  # the T_i and S_i wording changes with it
        state["image_sha256"],
        perception,
        settings.spatial.model_dump(),
        state.get("granularity"),
        labeller,
    )


def lookup_twin(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Find this image's twin in the context's cache (validated as it is read).

    Sets ``twin_key``, and ``twin_from_cache``; on a hit also ``twin`` (and a fresh reasoning path).
    """
    context = context_of(runtime)
    key = twin_cache_key(state, context.settings)
    cache = context.get_cache()
    cached = None if cache is None else cache.get("twin", key, validate=DigitalTwin.model_validate)
    if cached is None:
        return {"twin_key": key, "twin_from_cache": False}
    kept = {k: v for k, v in cached.components.items() if k in ("proposer", "semantics")}
    return {
        "twin_key": key,
        "twin_from_cache": True,
        "twin": cached,
        "steps": [],
        "components": kept | {"cache": CACHE_NOTE},
    }


def route_after_lookup(state: dict[str, Any]) -> Literal["cached", "build"]:
    """``cached`` when :func:`lookup_twin` found the twin, else ``build``."""
    return "cached" if state.get("twin_from_cache") else "build"


def store_twin(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Put the twin just built into the context's cache (nothing to do without one)."""
    cache = context_of(runtime).get_cache()
    if cache is not None and state.get("twin_key"):
        cache.put("twin", state["twin_key"], state["twin"].model_dump(mode="json"))
    return {}

"""build_spatial: geometry and relations of every object, then the twin D is assembled (paper 3.2)."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import context_of, settings_of
from dtwin_agent.llm.usage import Usage
from dtwin_agent.spatial import build_spatial as compute_spatial
from dtwin_agent.twin import RLE, DigitalTwin, ImageInfo, TwinObject


def assemble_twin(state: dict[str, Any], spatial_settings: Any) -> DigitalTwin:
    """Build the :class:`DigitalTwin` from the state's proposals, semantics and image record."""
    records = state.get("proposals", [])
    rles = [RLE.model_validate(r["mask"]) for r in records]
    ids = [int(r["id"]) for r in records]
    width, height = int(state["width"]), int(state["height"])
    geometry = compute_spatial(rles, ids, width, height, spatial_settings)
    semantics = state.get("semantics", {})
    objects = [
        TwinObject(
            id=object_id,
            mask=rle,
            bbox=geo.bbox,
            area_pct=geo.area_pct,
            centroid=geo.centroid,
            predicted_iou=record.get("predicted_iou"),
            stability=record.get("stability"),
            semantic=semantics.get(str(object_id), ""),
            relations=geo.relations,
            spatial=geo.text,
        )
        for object_id, rle, record, geo in zip(ids, rles, records, geometry, strict=True)
    ]
    info = ImageInfo(width=width, height=height, sha256=state["image_sha256"], source=state.get("source", ""))
    return DigitalTwin(
        image=info,
        granularity=state.get("granularity", "object"),
        objects=objects,
        components=dict(state.get("components", {})),
    )


def build_spatial(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Compute bbox, area %, centroid, relations and T_i; store the twin (and cache it)."""
    started = time.perf_counter()
    if state.get("cached_twin"):
        twin = DigitalTwin.model_validate(state["cached_twin"])
    else:
        twin = assemble_twin(state, settings_of(runtime).spatial)
        cache = context_of(runtime).cache
        if cache is not None and state.get("twin_key"):
            cache.put("twin", state["twin_key"], twin.model_dump(mode="json"))
    usage = Usage().add("spatial", calls=0, seconds=time.perf_counter() - started)
    return {"twin": twin.model_dump(mode="json"), "current_ids": twin.ids, "usage": usage.model_dump()}

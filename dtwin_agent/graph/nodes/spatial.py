"""build_spatial: geometry and relations of every object, then the twin D is assembled (paper 3.2)."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import settings_of
from dtwin_agent.llm.usage import Usage
from dtwin_agent.spatial import build_spatial as compute_spatial
from dtwin_agent.twin import DigitalTwin, ImageInfo, TwinObject


def _assemble_twin(state: dict[str, Any], spatial_settings: Any) -> DigitalTwin:
    """Build (and so validate) the :class:`DigitalTwin` from the state's proposals, semantics and image."""
    records = state.get("proposals", [])
    rles = [r.mask for r in records]
    width, height = int(state["width"]), int(state["height"])
    parents = [r.parent for r in records]
    geometry = compute_spatial(rles, [r.id for r in records], width, height, spatial_settings, parents)
    semantics = state.get("semantics", {})
    objects = [
        TwinObject(
            id=record.id,
            mask=record.mask,
            bbox=geo.bbox,
            area_pct=geo.area_pct,
            centroid=geo.centroid,
            predicted_iou=record.predicted_iou,
            stability=record.stability,
            semantic=semantics.get(str(record.id), ""),
            relations=geo.relations,
            spatial=geo.text,
            parent=record.parent,
        )
        for record, geo in zip(records, geometry, strict=True)
    ]
    info = ImageInfo(width=width, height=height, sha256=state["image_sha256"], source=state.get("source", ""))
    return DigitalTwin(
        image=info,
        granularity=state.get("granularity", "object"),
        objects=objects,
        components=dict(state.get("components", {})),
    )


def build_spatial(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Compute bbox, area %, centroid, relations and T_i; the twin enters the state here.

    A new twin starts a new reasoning path (``steps`` emptied, for threads that run again).
    """
    started = time.perf_counter()
    twin = _assemble_twin(state, settings_of(runtime).spatial)
    usage = Usage().add("spatial", calls=0, seconds=time.perf_counter() - started)
    return {"twin": twin, "steps": [], "usage": usage.model_dump()}

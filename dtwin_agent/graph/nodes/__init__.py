"""One function per graph node."""

from dtwin_agent.graph.nodes.finalize import finalize
from dtwin_agent.graph.nodes.granularity import select_granularity
from dtwin_agent.graph.nodes.propose import propose_masks
from dtwin_agent.graph.nodes.refine import refine, route_after_refine
from dtwin_agent.graph.nodes.semantics import assign_semantics
from dtwin_agent.graph.nodes.spatial import build_spatial

__all__ = [
    "assign_semantics",
    "build_spatial",
    "finalize",
    "propose_masks",
    "refine",
    "route_after_refine",
    "select_granularity",
]

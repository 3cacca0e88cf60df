"""One function per graph node (routes beside the node they follow)."""

from dtwin_agent.graph.nodes.finalize import finalize
from dtwin_agent.graph.nodes.granularity import select_granularity
from dtwin_agent.graph.nodes.image import confine_image, load_image
from dtwin_agent.graph.nodes.propose import propose_masks
from dtwin_agent.graph.nodes.refine import refine, route_after_refine
from dtwin_agent.graph.nodes.semantics import assign_semantics
from dtwin_agent.graph.nodes.spatial import build_spatial
from dtwin_agent.graph.nodes.twin_cache import lookup_twin, route_after_lookup, store_twin

__all__ = [
    "assign_semantics",
    "build_spatial",
    "confine_image",
    "finalize",
    "load_image",
    "lookup_twin",
    "propose_masks",
    "refine",
    "route_after_lookup",
    "route_after_refine",
    "select_granularity",
    "store_twin",
]

"""The spatial layer (paper 3.2): masks -> polygons -> relations -> the T_i text.

:func:`build_spatial` is the entry point (one :class:`ObjectGeometry` per mask). The rooms:
``geometry`` (exact pixel-edge polygons), ``relations`` (the pair table and the budget of k
relations per object), ``text`` (the T_i template), ``objects`` (per-object records).
"""

from dtwin_agent.spatial.geometry import filled, mask_to_polygon
from dtwin_agent.spatial.objects import MaskLike, ObjectGeometry, build_spatial, pairwise_relations
from dtwin_agent.spatial.relations import CONVERSE, INSIDE_FRACTION, KIND_ORDER, PairTable, pair_table
from dtwin_agent.spatial.text import spatial_text

__all__ = [
    "CONVERSE",
    "INSIDE_FRACTION",
    "KIND_ORDER",
    "MaskLike",
    "ObjectGeometry",
    "PairTable",
    "build_spatial",
    "filled",
    "mask_to_polygon",
    "pair_table",
    "pairwise_relations",
    "spatial_text",
]

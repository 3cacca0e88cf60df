"""Per-object spatial records: masks -> bbox, area %, centroid, budgeted relations R_i,j and T_i.

Paper 3.2: every object of the twin is described to the LLM by ``T_i = F_spatial(b_i, A_i,
{R_i,j})``, with ``b_i`` its bounding box, ``A_i`` its area as a percentage of the image and
``R_i,j = T(m_i, m_j, x_img)`` positional descriptors between masks. :func:`build_spatial`
computes all of it with shapely 2 (vectorised predicates and an ``STRtree``), in time roughly
linear in the number of objects.

Conventions
------------------
* ``bbox = (x_min, y_min, x_max, y_max)``: inclusive pixel indices of the mask (paper's ``b_i``).
* ``area_pct``: mask pixels / image pixels x 100 (paper's ``A_i``).
* ``centroid``: mean ``(x, y)`` of the mask's pixel indices (paper Eq. 2's ``c_i``).
* T_i carries ordinal facts over all N' objects (rank by area, by centroid x and y), computed
  here because they need every object (:func:`~dtwin_agent.spatial.text.ordinal_facts`); in a
  hierarchy twin over the objects, and over each object's parts.

The polygon conventions are in :mod:`~dtwin_agent.spatial.geometry`, the relation rules and the
budget in :mod:`~dtwin_agent.spatial.relations`, the T_i template in :mod:`~dtwin_agent.spatial.text`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from dtwin_agent.config import Settings, SpatialSettings
from dtwin_agent.spatial.geometry import crop_polygon
from dtwin_agent.spatial.relations import hierarchy_targets, pair_table, select_relations
from dtwin_agent.spatial.text import ordinal_facts, spatial_text
from dtwin_agent.twin import RLE, Relation, RelationKind, misplaced_parents

__all__ = ["MaskLike", "ObjectGeometry", "build_spatial", "pairwise_relations"]

MaskLike = RLE | Mapping[str, Any] | np.ndarray


@dataclass
class ObjectGeometry:
    """The spatial record of one object, ready to fill a :class:`~dtwin_agent.twin.TwinObject`.

    Attributes:
        id: the object id.
        bbox: ``(x_min, y_min, x_max, y_max)``, inclusive pixel indices.
        area_pct: mask area as a percentage of the image.
        centroid: mean ``(x, y)`` of the mask's pixels.
        relations: the budgeted relations R_i,j, most salient first.
        text: T_i, the spatial text shown to the LLM.
        area_px: mask area in pixels.
        polygon: the exact pixel-edge (Multi)Polygon.

    """

    id: int
    bbox: tuple[int, int, int, int]
    area_pct: float
    centroid: tuple[float, float]
    relations: list[Relation] = field(default_factory=list)
    text: str = ""
    area_px: int = 0
    polygon: Polygon | MultiPolygon = field(default_factory=Polygon, repr=False)


def _decode(item: MaskLike, height: int, width: int, index: int) -> np.ndarray:
    from dtwin_agent import masks as mask_ops

    if isinstance(item, RLE):
        mask = mask_ops.decode(item)
    elif isinstance(item, np.ndarray):
        mask = item.astype(bool, copy=False)
    elif isinstance(item, Mapping):
        mask = mask_ops.decode(RLE.model_validate(item))
    else:
        raise ValueError(
            f"mask {index}: expected an RLE, a COCO RLE dict or an array, got {type(item).__name__}"
        )
    if mask.shape != (height, width):
        raise ValueError(f"mask {index}: shape {mask.shape} is not the image shape {(height, width)}")
    return mask


def _measure(mask: np.ndarray, index: int) -> tuple[tuple[int, int, int, int], int, tuple[float, float], Any]:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        raise ValueError(f"mask {index} is empty: an object needs at least one pixel")
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    crop = mask[y0 : y1 + 1, x0 : x1 + 1]
    ys, xs = np.nonzero(crop)
    centroid = (float(xs.mean() + x0), float(ys.mean() + y0))
    return (x0, y0, x1, y1), int(xs.size), centroid, crop_polygon(crop, x0, y0)


def _spatial_settings(settings: Settings | SpatialSettings | None) -> SpatialSettings:
    if settings is None:
        return SpatialSettings()
    if isinstance(settings, Settings):
        return settings.spatial
    if isinstance(settings, SpatialSettings):
        return settings
    raise ValueError(f"settings must be Settings or SpatialSettings, got {type(settings).__name__}")


def build_spatial(
    masks: Sequence[MaskLike],
    ids: Sequence[int] | None,
    width: int,
    height: int,
    settings: Settings | SpatialSettings | None = None,
    parents: Sequence[int | None] | None = None,
) -> list[ObjectGeometry]:
    """Geometry, relations and T_i of every object (paper 3.2), in input order.

    Args:
        masks: one mask per object at the image size: :class:`~dtwin_agent.twin.RLE`, a COCO RLE dict
            (``size``, ``counts``) or a boolean ``H x W`` array.
        ids: object ids (unique, >= 1) in the same order; ``None`` numbers them 1..N.
        width: image width in pixels.
        height: image height in pixels.
        settings: :class:`~dtwin_agent.config.Settings` or its ``spatial`` section (default values
            when ``None``): ``max_relations`` is the budget k, ``near_fraction`` the ``near``
            threshold as a fraction of the image diagonal.
        parents: hierarchy twins: for each object, the id of the object it is a part of (or
            None); T_i then says ``part of #id``, objects are ranked among objects and parts
            among their object's parts, and relations skip what ``part of`` says
            (:func:`~dtwin_agent.spatial.relations.hierarchy_targets`).

    Returns:
        One :class:`ObjectGeometry` per mask.

    Raises:
        ValueError: for an empty mask, a mask of the wrong size, bad ids, or a parent that is not
            the id of a top-level object.

    """
    spatial = _spatial_settings(settings)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    ids = list(range(1, len(masks) + 1)) if ids is None else [int(i) for i in ids]
    if len(ids) != len(masks):
        raise ValueError(f"got {len(masks)} masks but {len(ids)} ids")
    if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
        raise ValueError(f"ids must be unique and >= 1, got {ids}")
    parents = [None] * len(ids) if parents is None else list(parents)
    if len(parents) != len(ids):
        raise ValueError(f"got {len(ids)} ids but {len(parents)} parents")
    bad = misplaced_parents(ids, parents)
    if bad:
        raise ValueError(f"parents must be ids of top-level objects; got (id, parent) {bad}")
    total = float(width * height)
    records = []
    for index, item in enumerate(masks):
        mask = _decode(item, height, width, index)
        records.append(_measure(mask, index))
    n = len(records)
    if n == 0:
        return []
    boxes = np.array([r[0] for r in records], dtype=np.int64).reshape(n, 4)
    areas = np.array([r[1] for r in records], dtype=float)
    centroids = np.array([r[2] for r in records], dtype=float).reshape(n, 2)
    geoms = np.empty(n, dtype=object)
    geoms[:] = [r[3] for r in records]
    near = spatial.near_fraction * float(np.hypot(width, height))
    table = pair_table(list(geoms), centroids, near)
    allowed = hierarchy_targets(parents, ids)  # without parents: every other object
    relations = select_relations(table, boxes, areas, ids, spatial.max_relations, geoms, allowed)
    facts = ordinal_facts(areas.tolist(), [tuple(c) for c in centroids.tolist()], parents)
    out = []
    for index in range(n):
        bbox = tuple(int(v) for v in boxes[index])
        area_pct = round(min(100.0, 100.0 * areas[index] / total), 4)
        centroid = (round(float(centroids[index, 0]), 2), round(float(centroids[index, 1]), 2))
        out.append(
            ObjectGeometry(
                id=ids[index],
                bbox=bbox,  # type: ignore[arg-type]
                area_pct=area_pct,
                centroid=centroid,
                relations=relations[index],
                text=spatial_text(
                    bbox,  # type: ignore[arg-type]
                    area_pct,
                    centroid,  # type: ignore[arg-type]
                    relations[index],
                    width,
                    height,
                    facts[index],
                    parent=parents[index],
                ),
                area_px=int(areas[index]),
                polygon=geoms[index],
            )
        )
    return out


def pairwise_relations(
    masks: Sequence[MaskLike],
    width: int,
    height: int,
    settings: Settings | SpatialSettings | None = None,
) -> dict[tuple[int, int], list[RelationKind]]:
    """Every relation of every ordered pair, unbudgeted, keyed by 0-based mask indices.

    For inspection and tests of the rules; :func:`build_spatial` is what the pipeline uses.
    Pairs with no relation are left out.

    Raises:
        ValueError: for an empty mask or a mask of the wrong size.

    """
    spatial = _spatial_settings(settings)
    records = [_measure(_decode(m, height, width, i), i) for i, m in enumerate(masks)]
    if not records:
        return {}
    centroids = np.array([r[2] for r in records], dtype=float)
    near = spatial.near_fraction * float(np.hypot(width, height))
    table = pair_table([r[3] for r in records], centroids, near)
    out: dict[tuple[int, int], list[RelationKind]] = {}
    for a in range(len(records)):
        for b in range(len(records)):
            if a != b:
                kinds = table.kinds(a, b)
                if kinds:
                    out[(a, b)] = kinds
    return out

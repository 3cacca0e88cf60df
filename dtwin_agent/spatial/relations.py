"""The spatial layer: masks -> polygons -> bbox, area %, centroid, relations R_i,j and text T_i.

Paper 3.2: every object of the twin is described to the LLM by ``T_i = F_spatial(b_i, A_i,
{R_i,j})``, with ``b_i`` its bounding box, ``A_i`` its area as a percentage of the image and
``R_i,j = T(m_i, m_j, x_img)`` positional descriptors between masks. This module computes all of
it with shapely 2 (vectorised predicates and an ``STRtree``), in time roughly linear in the number
of objects, and renders ``T_i`` with a fixed template.

Geometry conventions
--------------------
* ``bbox = (x_min, y_min, x_max, y_max)``: inclusive pixel indices of the mask (paper's ``b_i``).
* ``area_pct``: mask pixels / image pixels x 100 (paper's ``A_i``).
* ``centroid``: mean ``(x, y)`` of the mask's pixel indices (paper Eq. 2's ``c_i``).
* Polygons (:func:`mask_to_polygon`) follow exact pixel edges, in edge coordinates: pixel
  ``(x, y)`` is the unit square ``[x, x + 1] x [y, y + 1]``. Their area equals the pixel count,
  and masks that share a pixel edge give polygons that ``touch``. They are built from
  ``cv2.findContours`` on a 2x nearest-upscaled crop, mapping contour coordinate ``u`` to edge
  coordinate ``(u + 1) // 2`` (left/top boundary pixels land on even ``u``, right/bottom ones on
  odd ``u``), so no 1-px gap appears between neighbours; rings that pinch at a corner are repaired
  with ``buffer(0)`` (checked against the pixel count) or else ``shapely.make_valid``.
* ``filled(P)``: the polygon with its holes filled (the region its outline encloses).

Relations (``twin.RelationKind``), for an ordered pair (A, B), A != B
---------------------------------------------------------------------
Each pair gets at most one *topological* relation, the first that applies in this order:

1. ``inside``: at least :data:`INSIDE_FRACTION` (90%) of A's area lies in ``filled(B)`` and
   ``area(filled(A)) < area(filled(B))``. A fish in a lake with a fish-shaped hole, a wheel on a
   car, a part inside its object.
2. ``surrounding``: B is ``inside`` A (exactly the converse of 1).
3. ``overlapping``: A and B share area (their interiors meet: at least one common pixel).
4. ``touching``: they share boundary but no area (shapely ``touches``: a common edge or, for
   diagonal neighbours, a single corner).
5. ``near``: disjoint, with boundary distance <= ``near_fraction`` x image diagonal
   (``SpatialSettings.near_fraction``).

and up to two *directional* relations from the centroid offset ``(dx, dy) = c_B - c_A`` (y grows
downwards), left out for ``inside`` / ``surrounding`` pairs, where direction says little:

* ``left of``  : ``dx > 0.5`` and ``2|dx| >= |dy|``;  ``right of``: ``dx < -0.5`` and ``2|dx| >= |dy|``;
* ``above``    : ``dy > 0.5`` and ``2|dy| >= |dx|``;  ``below``   : ``dy < -0.5`` and ``2|dy| >= |dx|``.

So a pair within ~26.6 deg of the horizontal is only left/right, within ~26.6 deg of the vertical
only above/below, and a diagonal pair both (e.g. ``left of`` and ``above``).

Guarantees: the relation of (B, A) is the converse of that of (A, B) (``inside`` <-> ``surrounding``,
``left of`` <-> ``right of``, ``above`` <-> ``below``; ``overlapping``, ``touching`` and ``near``
are symmetric); a pair never holds two topological relations, nor both ``left of`` and
``right of``, nor both ``above`` and ``below``; hence "A left of B" and "B left of A" never both
hold.

Budget
------
Each object lists at most ``k = SpatialSettings.max_relations`` relations, so ``JSON(D)`` grows
linearly with ``N'``. Other objects are taken most salient first: containment pairs, then
overlapping / touching, then near, then the rest, each tier by boundary distance (the bounding
box gap stands in for the far tier when ranking), then by the other object's area (larger first),
then by id. A pair contributes its topological relation first, then its directional ones, until
``k`` is reached.

T_i template
------------
``bbox [x0, y0, x1, y1]; 3.2% of the image; centre (x, y), top left; inside #1; touching #3, #5;
left of #4, #5; above #5``: the location word names the third of the image (rows top / middle /
bottom x columns left / centre / right, the middle row dropped, ``centre`` alone in the middle);
relation groups always come in the :data:`KIND_ORDER` order with ids ascending, and areas keep two
significant digits (``45%``, ``3.2%``, ``0.35%``). Integers everywhere else: the text is
deterministic for a given set of masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from dtwin_agent.config import Settings, SpatialSettings
from dtwin_agent.twin import RLE, Relation, RelationKind

__all__ = [
    "INSIDE_FRACTION",
    "KIND_ORDER",
    "ObjectGeometry",
    "PairTable",
    "build_spatial",
    "filled",
    "mask_to_polygon",
    "pair_table",
    "pairwise_relations",
    "spatial_text",
]

INSIDE_FRACTION = 0.9
KIND_ORDER: tuple[RelationKind, ...] = (
    "inside",
    "surrounding",
    "overlapping",
    "touching",
    "near",
    "left of",
    "right of",
    "above",
    "below",
)
CONVERSE: dict[str, str] = {
    "inside": "surrounding",
    "surrounding": "inside",
    "overlapping": "overlapping",
    "touching": "touching",
    "near": "near",
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}
# topological codes of the pair table
_NONE, _INSIDE, _SURROUNDING, _OVERLAPPING, _TOUCHING, _NEAR = range(6)
_TOPO_NAMES: dict[int, RelationKind] = {
    _INSIDE: "inside",
    _SURROUNDING: "surrounding",
    _OVERLAPPING: "overlapping",
    _TOUCHING: "touching",
    _NEAR: "near",
}
_TIER = np.array([3, 0, 0, 1, 1, 2], dtype=np.int8)  # salience tier by topological code
_MIN_OFFSET = 0.5  # px: smaller centroid offsets give no direction

MaskLike = RLE | Mapping[str, Any] | np.ndarray


# --------------------------------------------------------------------------- polygons


def _contours_to_geometry(crop: np.ndarray, x0: int, y0: int) -> Polygon | MultiPolygon:
    """Exact pixel-edge polygon(s) of a boolean crop whose top-left pixel is ``(x0, y0)``."""
    import cv2

    padded = np.pad(crop.astype(np.uint8), 1)
    height, width = padded.shape
    up = cv2.resize(padded, (2 * width, 2 * height), interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return Polygon()
    offset = np.array([x0 - 1, y0 - 1], dtype=np.int64)
    rings = [(c.reshape(-1, 2).astype(np.int64) + 1) // 2 + offset for c in contours]
    links = hierarchy[0]
    polygons = []
    for index, ring in enumerate(rings):
        if links[index][3] != -1:
            continue  # a hole; attached to its parent below
        holes = []
        child = links[index][2]
        while child != -1:
            holes.append(rings[child])
            child = links[child][0]
        polygons.append(Polygon(ring, holes))
    geom = polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)
    if not geom.is_valid:
        # rings that pinch at a pixel corner: buffer(0) is fast and exact for these; verify by area
        fixed = geom.buffer(0)
        if not (fixed.is_valid and abs(fixed.area - float(crop.sum())) < 1e-6):
            fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
        geom = _polygonal(fixed)
    return geom


def _polygonal(geom: Any) -> Polygon | MultiPolygon:
    """Keep only the polygonal part of a geometry (``make_valid`` may add lines or points)."""
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    parts = [g for g in shapely.get_parts(geom) if isinstance(g, (Polygon, MultiPolygon))]
    if not parts:
        return Polygon()
    merged = shapely.union_all(parts)
    return merged if isinstance(merged, (Polygon, MultiPolygon)) else _polygonal(merged)


def mask_to_polygon(mask: np.ndarray) -> Polygon | MultiPolygon:
    """Trace the mask's exact pixel edges as a valid shapely (Multi)Polygon with holes.

    Pixel ``(x, y)`` is the square ``[x, x + 1] x [y, y + 1]``; the polygon's area equals the number
    of mask pixels and masks sharing a pixel edge give polygons that touch. An empty mask gives an
    empty Polygon.

    Raises:
        ValueError: if the mask is not 2-D.

    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D H x W array, got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return Polygon()
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return _contours_to_geometry(mask[y0 : y1 + 1, x0 : x1 + 1], x0, y0)


def filled(geom: Polygon | MultiPolygon) -> Polygon | MultiPolygon:
    """Return the geometry with all holes filled: the region its outer boundary encloses."""
    if geom.is_empty:
        return geom
    if isinstance(geom, Polygon):
        return Polygon(geom.exterior) if geom.interiors else geom
    shells = [Polygon(p.exterior) for p in geom.geoms]
    return _polygonal(shapely.union_all(shells))


# --------------------------------------------------------------------------- per-object geometry


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
    return (x0, y0, x1, y1), int(xs.size), centroid, _contours_to_geometry(crop, x0, y0)


# --------------------------------------------------------------------------- relations


@dataclass
class PairTable:
    """All pairwise relations of ``N`` objects, as ``N x N`` arrays (row: A, column: B).

    Attributes:
        topo: topological code of (A, B): 0 none, 1 inside, 2 surrounding, 3 overlapping,
            4 touching, 5 near.
        distance: boundary distance in pixels where known (NaN where not computed: far pairs).
        dx: ``c_B.x - c_A.x``.
        dy: ``c_B.y - c_A.y``.

    """

    topo: np.ndarray
    distance: np.ndarray
    dx: np.ndarray
    dy: np.ndarray

    def kinds(self, a: int, b: int) -> list[RelationKind]:
        """Return the relations "A is <kind> B", topological first, then directional."""
        out: list[RelationKind] = []
        code = int(self.topo[a, b])
        if code:
            out.append(_TOPO_NAMES[code])
        if code in (_INSIDE, _SURROUNDING) or a == b:
            return out
        dx, dy = float(self.dx[a, b]), float(self.dy[a, b])
        if abs(dx) > _MIN_OFFSET and 2 * abs(dx) >= abs(dy):
            out.append("left of" if dx > 0 else "right of")
        if abs(dy) > _MIN_OFFSET and 2 * abs(dy) >= abs(dx):
            out.append("above" if dy > 0 else "below")
        return out


def pair_table(
    polygons: Sequence[Polygon | MultiPolygon],
    centroids: np.ndarray,
    near_distance: float,
) -> PairTable:
    """Compute every pairwise relation with an STRtree and shapely's vectorised functions.

    Args:
        polygons: one exact (Multi)Polygon per object.
        centroids: ``N x 2`` array of ``(x, y)`` centroids.
        near_distance: pairs this close (boundary distance, pixels) or closer are ``near``.

    Returns:
        The pair table; see the module docstring for the rules.

    """
    n = len(polygons)
    geoms = np.empty(n, dtype=object)
    geoms[:] = list(polygons)
    fills = np.empty(n, dtype=object)
    fills[:] = [filled(g) for g in polygons]
    topo = np.zeros((n, n), dtype=np.int8)
    distance = np.full((n, n), np.nan)
    np.fill_diagonal(distance, 0.0)
    centroids = np.asarray(centroids, dtype=float).reshape(n, 2)
    dx = centroids[None, :, 0] - centroids[:, None, 0]
    dy = centroids[None, :, 1] - centroids[:, None, 1]
    if n < 2:
        return PairTable(topo, distance, dx, dy)
    areas = shapely.area(geoms)
    fill_areas = shapely.area(fills)

    shapely.prepare(geoms)
    shapely.prepare(fills)

    # 1-2. containment: A's area in filled(B); only a smaller outline can be inside a larger one
    fill_tree = shapely.STRtree(fills)
    a_idx, b_idx = fill_tree.query(geoms, predicate="intersects")
    keep = (a_idx != b_idx) & (fill_areas[a_idx] < fill_areas[b_idx])
    a_idx, b_idx = a_idx[keep], b_idx[keep]
    if a_idx.size:
        covered = np.zeros(a_idx.size)
        whole = shapely.covers(fills[b_idx], geoms[a_idx])  # prepared: cheap, the common case
        covered[whole] = areas[a_idx[whole]]
        rest = np.flatnonzero(~whole & ~shapely.touches(fills[b_idx], geoms[a_idx]))
        if rest.size:
            covered[rest] = shapely.area(shapely.intersection(geoms[a_idx[rest]], fills[b_idx[rest]]))
        inside = covered >= INSIDE_FRACTION * areas[a_idx]
        ia, ib = a_idx[inside], b_idx[inside]
        topo[ia, ib] = _INSIDE
        topo[ib, ia] = _SURROUNDING
        distance[ia, ib] = distance[ib, ia] = 0.0

    # 3-4. intersecting pairs: touching when the interiors are disjoint (no shared area), else
    # overlapping (polygon interiors that meet always share a positive area)
    tree = shapely.STRtree(geoms)
    a_idx, b_idx = tree.query(geoms, predicate="intersects")
    keep = a_idx < b_idx
    a_idx, b_idx = a_idx[keep], b_idx[keep]
    if a_idx.size:
        free = topo[a_idx, b_idx] == _NONE
        a_idx, b_idx = a_idx[free], b_idx[free]
        touch = shapely.touches(geoms[a_idx], geoms[b_idx])
        code = np.where(touch, _TOUCHING, _OVERLAPPING).astype(np.int8)
        topo[a_idx, b_idx] = topo[b_idx, a_idx] = code
        distance[a_idx, b_idx] = distance[b_idx, a_idx] = 0.0

    # 5. near: disjoint pairs within near_distance
    if near_distance > 0:
        a_idx, b_idx = tree.query(geoms, predicate="dwithin", distance=near_distance)
        keep = a_idx < b_idx
        a_idx, b_idx = a_idx[keep], b_idx[keep]
        free = topo[a_idx, b_idx] == _NONE
        a_idx, b_idx = a_idx[free], b_idx[free]
        if a_idx.size:
            gap = shapely.distance(geoms[a_idx], geoms[b_idx])
            topo[a_idx, b_idx] = topo[b_idx, a_idx] = _NEAR
            distance[a_idx, b_idx] = distance[b_idx, a_idx] = gap
    return PairTable(topo, distance, dx, dy)


def _bbox_gap(boxes: np.ndarray) -> np.ndarray:
    """Euclidean gap between bounding boxes (edge coordinates), all pairs: a cheap distance bound."""
    x0, y0 = boxes[:, 0].astype(float), boxes[:, 1].astype(float)
    x1, y1 = boxes[:, 2] + 1.0, boxes[:, 3] + 1.0
    gx = np.maximum(0.0, np.maximum(x0[None, :] - x1[:, None], x0[:, None] - x1[None, :]))
    gy = np.maximum(0.0, np.maximum(y0[None, :] - y1[:, None], y0[:, None] - y1[None, :]))
    return np.hypot(gx, gy)


def _budget(
    table: PairTable, boxes: np.ndarray, areas: np.ndarray, ids: Sequence[int], k: int, geoms: np.ndarray
) -> list[list[Relation]]:
    """Pick at most ``k`` relations per object, most salient first (see the module docstring)."""
    n = len(ids)
    out: list[list[Relation]] = [[] for _ in range(n)]
    if n < 2 or k <= 0:
        return out
    tier = _TIER[table.topo]
    est = np.where(np.isnan(table.distance), _bbox_gap(boxes), table.distance)
    order = np.lexsort(
        (
            np.broadcast_to(np.asarray(ids)[None, :], (n, n)),
            np.broadcast_to(-areas[None, :], (n, n)),
            est,
            tier,
        ),
        axis=1,
    )
    chosen: list[list[tuple[int, RelationKind]]] = [[] for _ in range(n)]
    for a in range(n):
        picks = chosen[a]
        for b in order[a].tolist():
            if b == a:
                continue
            for kind in table.kinds(a, b):
                picks.append((b, kind))
                if len(picks) >= k:
                    break
            if len(picks) >= k:
                break
    # exact boundary distances for far pairs that made it into a budget
    missing = sorted({(a, b) for a in range(n) for b, _ in chosen[a] if np.isnan(table.distance[a, b])})
    if missing:
        ma = np.array([m[0] for m in missing])
        mb = np.array([m[1] for m in missing])
        gaps = shapely.distance(geoms[ma], geoms[mb])
        table.distance[ma, mb] = table.distance[mb, ma] = gaps
    for a in range(n):
        out[a] = [
            Relation(target=int(ids[b]), kind=kind, distance=round(float(table.distance[a, b]), 2))
            for b, kind in chosen[a]
        ]
    return out


# --------------------------------------------------------------------------- text


def _pct(value: float) -> str:
    if value >= 10:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _location(cx: float, cy: float, width: int, height: int) -> str:
    col = min(2, int(3 * (cx + 0.5) / width))
    row = min(2, int(3 * (cy + 0.5) / height))
    vertical = ("top", "", "bottom")[row]
    horizontal = ("left", "", "right")[col]
    return " ".join(w for w in (vertical, horizontal) if w) or "centre"


def spatial_text(
    bbox: tuple[int, int, int, int],
    area_pct: float,
    centroid: tuple[float, float],
    relations: Sequence[Relation],
    width: int,
    height: int,
) -> str:
    """T_i = F_spatial(b_i, A_i, {R_i,j}) (paper 3.2) as one short deterministic line.

    Example: ``bbox [12, 40, 200, 310]; 3.2% of the image; centre (106, 175), top left;
    inside #1; touching #3, #5; left of #4, #5; above #5``.
    """
    x0, y0, x1, y1 = bbox
    cx, cy = centroid
    parts = [
        f"bbox [{x0}, {y0}, {x1}, {y1}]",
        f"{_pct(area_pct)}% of the image",
        f"centre ({round(cx)}, {round(cy)}), {_location(cx, cy, width, height)}",
    ]
    grouped: dict[str, list[int]] = {}
    for rel in relations:
        grouped.setdefault(rel.kind, []).append(rel.target)
    for kind in KIND_ORDER:
        if kind in grouped:
            targets = sorted(set(grouped[kind]))
            parts.append(f"{kind} " + ", ".join(f"#{t}" for t in targets))
    return "; ".join(parts)


# --------------------------------------------------------------------------- entry points


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

    Returns:
        One :class:`ObjectGeometry` per mask.

    Raises:
        ValueError: for an empty mask, a mask of the wrong size, or bad ids.

    """
    spatial = _spatial_settings(settings)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    ids = list(range(1, len(masks) + 1)) if ids is None else [int(i) for i in ids]
    if len(ids) != len(masks):
        raise ValueError(f"got {len(masks)} masks but {len(ids)} ids")
    if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
        raise ValueError(f"ids must be unique and >= 1, got {ids}")
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
    relations = _budget(table, boxes, areas, ids, spatial.max_relations, geoms)
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
                text=spatial_text(bbox, area_pct, centroid, relations[index], width, height),  # type: ignore[arg-type]
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

"""Pairwise relations R_i,j between objects, and the budget of k relations per object (paper 3.2).

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
the budget is spent.

In a hierarchy twin an object names only other objects, and a part only its sibling parts and the
other objects (:func:`hierarchy_targets`): ``part of #id`` already says what ``inside`` /
``surrounding`` between a part and its object would, and the budget goes to neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from dtwin_agent.spatial.geometry import filled
from dtwin_agent.twin import Relation, RelationKind

__all__ = [
    "CONVERSE",
    "INSIDE_FRACTION",
    "KIND_ORDER",
    "PairTable",
    "hierarchy_targets",
    "pair_table",
    "select_relations",
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


def select_relations(
    table: PairTable,
    boxes: np.ndarray,
    areas: np.ndarray,
    ids: Sequence[int],
    k: int,
    geoms: np.ndarray,
    allowed: np.ndarray | None = None,
) -> list[list[Relation]]:
    """Pick at most ``k`` relations per object, most salient first (see the module docstring).

    Args:
        table: the pair table of the objects (far pairs' distances are filled in where chosen).
        boxes: ``N x 4`` bounding boxes ``(x_min, y_min, x_max, y_max)``.
        areas: ``N`` mask areas in pixels.
        ids: the object ids, in table order.
        k: the budget per object.
        geoms: the ``N`` polygons (for exact distances of chosen far pairs).
        allowed: ``N x N`` booleans, row A: the objects A may name in its relations (all others
            when None). Hierarchy twins pass :func:`hierarchy_targets`.

    Returns:
        Per object, its relations in salience order.
    """
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
            if b == a or (allowed is not None and not allowed[a, b]):
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


def hierarchy_targets(parents: Sequence[int | None], ids: Sequence[int]) -> np.ndarray:
    """Which objects each object of a hierarchy twin may name in its relations (``N x N`` booleans).

    An object (no parent) names other objects, never parts: its budget of k relations goes to
    its neighbours, not to "surrounding" its own parts, which ``part of`` already says. A part names
    its sibling parts and the other objects, never its own object (``part of #id`` says that) nor
    parts of other objects (their object is the better landmark).

    Args:
        parents: per object, the id of its object or None.
        ids: the object ids, in the same order.

    Returns:
        ``allowed[a, b]``: True when object ``a`` may name object ``b`` (the diagonal is False).
    """
    parent = np.array([-1 if p is None else int(p) for p in parents], dtype=np.int64)
    own = np.asarray(ids, dtype=np.int64)
    top = parent < 0
    sibling = (parent[:, None] == parent[None, :]) & ~top[:, None]
    other_object = top[None, :] & (own[None, :] != parent[:, None])
    allowed = np.where(top[:, None], top[None, :], sibling | other_object)
    np.fill_diagonal(allowed, False)
    return allowed

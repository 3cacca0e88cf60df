"""T_i = F_spatial(b_i, A_i, {R_i,j}) (paper 3.2): the spatial text of one object, for the LLM.

T_i template
------------
``top left; x 1-20 y 5-39; area 3.2%, 2nd largest; 2nd from left, topmost; inside #1; touching #3;
left of #4``

* the location word names the third of the image the centroid lies in (rows top / middle /
  bottom x columns left / centre / right, the middle row dropped, ``centre`` alone in the middle);
* ``x .. y ..``: the bounding box b_i in whole percent of the image width (x) and height (y), so numbers
  are comparable across objects without the image size (y grows downwards);
* ``area``: A_i in percent of the image, two significant digits (``45%``, ``3.2%``, ``0.35%``);
* ordinal facts (:func:`ordinal_facts`), so superlative and extreme-position questions need no
  arithmetic: the rank by area and by centroid x and y among all N' objects (in a hierarchy
  twin: among the objects, or among the parts of the same object), counted from the nearer end
  (``largest``, ``2nd largest``, ``2nd smallest``, ``smallest``; ``leftmost``, ``2nd from left``,
  ``2nd from right``, ``rightmost``; ``topmost`` ... ``bottommost``), stated only within
  :data:`NEAR_END` of either end;
* relations R_i,j: at most ``spatial.max_relations`` (k = 3), the most salient first
  (:func:`~dtwin_agent.spatial.relations.select_relations`),
  grouped by kind in the :data:`KIND_ORDER` order, ids ascending.

Everything is rounded to integers or two significant digits: the text is deterministic for a
given set of masks. The renderer of JSON(D) around it is
:meth:`~dtwin_agent.twin.DigitalTwin.to_prompt_json`; ``docs/jsond.md`` shows a whole example.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from dtwin_agent.spatial.relations import KIND_ORDER
from dtwin_agent.twin import Relation

__all__ = ["OrdinalFacts", "ordinal_facts", "spatial_text"]


@dataclass(frozen=True)
class OrdinalFacts:
    """One object's ranks among all N' objects (1 = largest / leftmost / topmost).

    Attributes:
        n: N', the number of objects ranked.
        size: rank by area, largest first.
        x: rank by centroid x, leftmost first.
        y: rank by centroid y, topmost first.
    """

    n: int
    size: int
    x: int
    y: int


def _ranks(values: np.ndarray) -> np.ndarray:
    """Competition ranks (1, 2, 2, 4) of ``values`` in ascending order: ties share a rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=int)
    sorted_values = values[order]
    first = np.searchsorted(sorted_values, sorted_values, side="left")
    ranks[order] = first + 1
    return ranks


def ordinal_facts(
    areas: Sequence[float],
    centroids: Sequence[tuple[float, float]],
    groups: Sequence[Hashable] | None = None,
) -> list[OrdinalFacts]:
    """The ranks of every object by area (largest first) and centroid x and y (paper 3.2's A_i, c_i).

    Args:
        areas: N' mask areas (any unit).
        centroids: N' centroids ``(x, y)`` in pixels (y grows downwards).
        groups: objects are ranked only among those with an equal group key (None: all together).
            Hierarchy twins group by parent: objects among the objects, each object's parts among
            its parts ("the largest part of #3"), never a part against a whole object.

    Returns:
        One :class:`OrdinalFacts` per object, in input order, ``n`` being the size of its group.
        Ties share the better rank; areas and coordinates are compared after rounding to 0.01 so
        float noise makes no rank.
    """
    n = len(areas)
    if n == 0:
        return []
    area = np.round(np.asarray(areas, dtype=float), 2)
    xy = np.round(np.asarray(centroids, dtype=float).reshape(n, 2), 2)
    keys = [None] * n if groups is None else list(groups)
    if len(keys) != n:
        raise ValueError(f"got {n} areas but {len(keys)} group keys")
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    facts: dict[int, OrdinalFacts] = {}
    for group in members.values():
        size, x, y = _ranks(-area[group]), _ranks(xy[group, 0]), _ranks(xy[group, 1])
        for j, i in enumerate(group):
            facts[i] = OrdinalFacts(len(group), int(size[j]), int(x[j]), int(y[j]))
    return [facts[i] for i in range(n)]


def _nth(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


NEAR_END = 2
"""Ranks are stated from 1st to this, counted from either end; middle ranks say nothing useful.

Two, not three: "3rd from left" on every object cost ~3.7 tokens per object on the shared photos
(benchmarks/jsond.py), and the box ranges still order the middle objects."""


def rank_words(rank: int, n: int, first: str, last: str, from_first: str, from_last: str) -> str:
    """A rank counted from the nearer end: ``first`` / ``2nd <from_first>`` ... ``last``.

    Empty when the rank is more than :data:`NEAR_END` from both ends.
    """
    if rank <= 1:
        return first
    if rank >= n:
        return last
    back = n + 1 - rank
    if min(rank, back) > NEAR_END:
        return ""
    return f"{_nth(rank)} {from_first}" if rank <= back else f"{_nth(back)} {from_last}"


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


def _span(lo: int, hi: int, size: int) -> str:
    a, b = round(100 * lo / size), round(100 * (hi + 1) / size)
    return f"{a}-{max(a, b)}"


def spatial_text(
    bbox: tuple[int, int, int, int],
    area_pct: float,
    centroid: tuple[float, float],
    relations: Sequence[Relation],
    width: int,
    height: int,
    facts: OrdinalFacts | None = None,
    parent: int | None = None,
) -> str:
    """T_i = F_spatial(b_i, A_i, {R_i,j}) (paper 3.2) as one short deterministic line.

    Args:
        bbox: ``(x_min, y_min, x_max, y_max)``, inclusive pixel indices.
        area_pct: A_i, percent of the image.
        centroid: ``(x, y)`` in pixels.
        relations: the object's budgeted relations R_i,j.
        width: image width in pixels.
        height: image height in pixels.
        facts: the object's ranks among all objects, or among its object's parts in a hierarchy
            twin (:func:`ordinal_facts`); left out when None or when it is ranked alone.
        parent: hierarchy twins: the id of the object this one is a part of; T_i then says
            ``part of #id`` right after the location.

    Example: ``top left; x 1-20 y 5-39; area 3.2%, 2nd largest; 2nd from left, topmost; inside #1;
    touching #3; left of #4``.
    """
    x0, y0, x1, y1 = bbox
    cx, cy = centroid
    parts = [
        _location(cx, cy, width, height),
        f"x {_span(x0, x1, width)} y {_span(y0, y1, height)}",
    ]
    area = f"area {_pct(area_pct)}%"
    if facts is not None and facts.n > 1:
        n = facts.n
        size = rank_words(facts.size, n, "largest", "smallest", "largest", "smallest")
        across = rank_words(facts.x, n, "leftmost", "rightmost", "from left", "from right")
        down = rank_words(facts.y, n, "topmost", "bottommost", "from top", "from bottom")
        parts.append(f"{area}, {size}" if size else area)
        if across or down:
            parts.append(", ".join(w for w in (across, down) if w))
    else:
        parts.append(area)
    if parent is not None:
        parts.insert(1, f"part of #{parent}")
    grouped: dict[str, list[int]] = {}
    for rel in relations:
        grouped.setdefault(rel.kind, []).append(rel.target)
    for kind in KIND_ORDER:
        if kind in grouped:
            targets = sorted(set(grouped[kind]))
            parts.append(f"{kind} " + " ".join(f"#{t}" for t in targets))
    return "; ".join(parts)

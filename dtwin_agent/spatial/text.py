"""T_i = F_spatial(b_i, A_i, {R_i,j}) (paper 3.2): the spatial text of one object, for the LLM.

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

from collections.abc import Sequence

from dtwin_agent.spatial.relations import KIND_ORDER
from dtwin_agent.twin import Relation

__all__ = ["spatial_text"]


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

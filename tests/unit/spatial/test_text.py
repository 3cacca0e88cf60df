"""The T_i template (spatial/text.py)."""

from __future__ import annotations

from dtwin_agent.spatial import KIND_ORDER, spatial_text
from dtwin_agent.twin import Relation


def test_spatial_text_template():
    relations = [
        Relation(target=5, kind="touching"),
        Relation(target=1, kind="inside"),
        Relation(target=3, kind="touching"),
        Relation(target=4, kind="left of", distance=12.5),
        Relation(target=5, kind="above"),
    ]
    text = spatial_text((12, 40, 200, 310), 3.214, (106.4, 175.6), relations, 1000, 800)
    assert text == (
        "bbox [12, 40, 200, 310]; 3.2% of the image; centre (106, 176), top left; "
        "inside #1; touching #3, #5; left of #4; above #5"
    )
    assert spatial_text((0, 0, 9, 9), 45.3, (500, 400), [], 1000, 800).endswith(
        "45% of the image; centre (500, 400), centre"
    )
    assert "0.35% of the image" in spatial_text((0, 0, 1, 1), 0.3512, (990, 790), [], 1000, 800)
    assert spatial_text((0, 0, 1, 1), 1, (990, 790), [], 1000, 800).endswith("bottom right")
    assert KIND_ORDER[0] == "inside"

"""The T_i template (spatial/text.py): location, percent box, area, ordinal facts, relations."""

from __future__ import annotations

import pytest

from dtwin_agent.spatial import KIND_ORDER, spatial_text
from dtwin_agent.spatial.text import OrdinalFacts, ordinal_facts, rank_words
from dtwin_agent.twin import Relation


def test_spatial_text_template():
    relations = [
        Relation(target=5, kind="touching"),
        Relation(target=1, kind="inside"),
        Relation(target=3, kind="touching"),
        Relation(target=4, kind="left of", distance=12.5),
        Relation(target=5, kind="above"),
    ]
    facts = OrdinalFacts(n=14, size=5, x=2, y=4)  # middle ranks (5th, 4th of 14) are left out
    text = spatial_text((12, 40, 200, 310), 3.214, (106.4, 175.6), relations, 1000, 800, facts)
    assert text == (
        "top left; x 1-20 y 5-39; area 3.2%; 2nd from left; inside #1; touching #3 #5; left of #4; above #5"
    )
    assert spatial_text((0, 0, 9, 9), 45.3, (500, 400), [], 1000, 800) == "centre; x 0-1 y 0-1; area 45%"
    assert "area 0.35%" in spatial_text((0, 0, 1, 1), 0.3512, (990, 790), [], 1000, 800)
    assert spatial_text((0, 0, 1, 1), 1, (990, 790), [], 1000, 800).startswith("bottom right;")
    assert KIND_ORDER[0] == "inside"


@pytest.mark.parametrize(
    ("rank", "n", "words"),
    [
        (1, 9, "largest"),
        (2, 9, "2nd largest"),
        (3, 9, ""),  # more than NEAR_END (2) from both ends: left out
        (4, 9, ""),
        (5, 9, ""),
        (7, 9, ""),
        (8, 9, "2nd smallest"),
        (9, 9, "smallest"),
        (11, 30, ""),
        (29, 30, "2nd smallest"),
        (28, 30, ""),
        (3, 40, ""),
    ],
)
def test_rank_words_count_from_the_nearer_end(rank: int, n: int, words: str) -> None:
    assert rank_words(rank, n, "largest", "smallest", "largest", "smallest") == words


def test_ordinal_facts_rank_area_and_position_ties_shared() -> None:
    areas = [10.0, 30.0, 20.0, 30.0]
    centroids = [(5.0, 50.0), (40.0, 10.0), (90.0, 90.0), (40.0, 70.0)]
    facts = ordinal_facts(areas, centroids)
    assert [f.size for f in facts] == [4, 1, 3, 1]
    assert [f.x for f in facts] == [1, 2, 4, 2]
    assert [f.y for f in facts] == [2, 1, 4, 3]
    assert {f.n for f in facts} == {4} and ordinal_facts([], []) == []
    text = spatial_text((80, 80, 99, 99), 20.0, (90.0, 90.0), [], 100, 100, facts[2])
    assert "area 20%, 2nd smallest; rightmost, bottommost" in text
    middle = spatial_text((0, 0, 9, 9), 5.0, (50, 50), [], 100, 100, OrdinalFacts(n=20, size=10, x=9, y=12))
    assert middle == "centre; x 0-10 y 0-10; area 5.0%"

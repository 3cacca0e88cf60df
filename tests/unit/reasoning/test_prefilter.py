"""The keyword/rank pre-filter: candidates from words and ranks only, shown to the LLM as a hint."""

from __future__ import annotations

import pytest
from helpers.twins import box, twin_from_masks

from dtwin_agent.reasoning.prefilter import hint_text, suggest


def scene():
    """Two mugs (big left, small right), a yellow banana at the top, a grey laptop at the bottom."""
    return twin_from_masks(
        [
            (box(100, 100, 0, 40, 30, 70), "coffee mug 0.62, cup 0.21; white, round", "left", None),
            (box(100, 100, 80, 40, 90, 50), "coffee mug 0.55; white, round", "right", None),
            (box(100, 100, 40, 0, 60, 10), "banana 0.80; yellow, wide, elongated horizontally", "top", None),
            (box(100, 100, 35, 80, 70, 99), "laptop 0.66; grey, rectangular", "bottom", None),
        ]
    )


def run(query: str, ids=None):
    twin = scene()
    ids = ids or twin.ids
    return suggest(twin, query, ids, {o.id: o.semantic for o in twin.objects if o.id in ids})


@pytest.mark.parametrize(
    ("query", "ids", "note"),
    [
        ("the mug", [1, 2], ""),
        ("all the mugs", [1, 2], ""),  # a group: every match, no extreme
        ("the mug on the right", [2, 1], "#2 is the rightmost of the 2 candidates"),
        ("the smallest mug", [2, 1], "#2 is the smallest of the 2 candidates"),
        ("the largest object", [1, 2, 3, 4], "#1 is the largest of the 4 candidates"),
        ("the yellow thing", [3], ""),
        ("every round object", [1, 2], ""),
        ("the purple object", [], "no object still in question is purple (no semantic says so)"),
    ],
)
def test_candidates_from_words_and_ranks(query: str, ids: list[int], note: str) -> None:
    found = run(query)
    assert found is not None and found.ids == ids and found.note == note


def test_no_opinion_without_shared_words_colours_shapes_or_ranks() -> None:
    """An implicit request shares no words: the LLM decides alone (no hint at all)."""
    assert run("what would a monkey like to eat") is None
    assert hint_text(None) == ""


def test_a_relation_is_not_an_extreme() -> None:
    """'left of the laptop' names a relation: the pre-filter does not pick the leftmost mug."""
    found = run("the mug left of the laptop")
    assert found.ids == [1, 2] and found.note == ""


def test_only_objects_still_in_question_are_candidates() -> None:
    assert run("the mug", ids=[2, 3, 4]).ids == [2]


def test_hint_text_tells_the_model_it_may_override() -> None:
    hint = hint_text(run("the mug on the right"))
    assert "override it when wrong" in hint
    assert '#2 (shares "mug"; the rightmost of them)' in hint and "#1" in hint
    assert hint_text(run("the purple object")).endswith(
        "no object still in question is purple (no semantic says so)."
    )


def test_plain_words_add_names_and_colours_but_not_a_group_or_a_relation() -> None:
    twin = scene()
    semantics = {o.id: o.semantic for o in twin.objects}
    # one thing asked: the best match of the names, though the plain words are plural
    found = suggest(twin, "what I drink coffee from", twin.ids, semantics, plain="coffee mugs, cups")
    assert found is not None and found.ids == [1]
    # the names count beside a relation in the request
    found = suggest(twin, "what I drink from left of the laptop", twin.ids, semantics, plain="mug")
    assert found is not None and set(found.ids) == {1, 2}
    # a colour only the plain words name still has to be in S_i
    found = suggest(twin, "the shape as ripe as a tomato", twin.ids, semantics, plain="red shape")
    assert found is not None and found.ids == [] and "red" in found.note
    assert suggest(twin, "the shape as ripe as a tomato", twin.ids, semantics) is None

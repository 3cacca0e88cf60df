"""What the page shows, as plain data."""

from __future__ import annotations

import numpy as np

from dtwin_agent.integrations.chat import SessionSummary
from dtwin_agent.integrations.ui import views
from dtwin_agent.masks import encode
from dtwin_agent.twin import DigitalTwin, ImageInfo, Relation, TwinObject

TURN = {
    "turn": 2,
    "query": "only the one on the left",
    "ids": [2],
    "objects": [{"id": 2, "semantic": "red mug", "reasoning": "it is on the left", "spatial": "left"}],
    "message": "chose 1 object(s)",
    "usage": {"stages": {"refine": {"calls": 2, "input_tokens": 300, "output_tokens": 40, "seconds": 1.234}}},
    "components": {"reasoning": "openai:gpt-4o (refine)"},
}
EMPTY = {"turn": 3, "query": "the giraffe", "ids": [], "objects": [], "message": "no object matches: giraffe"}


def twin() -> DigitalTwin:
    big = np.zeros((20, 40), dtype=bool)
    big[:, :20] = True
    small = np.zeros((20, 40), dtype=bool)
    small[5:10, 5:10] = True
    objects = [
        TwinObject(id=1, mask=encode(big), bbox=(0, 0, 19, 19), area_pct=50.0, centroid=(10, 10),
                   semantic="table", predicted_iou=0.93, relations=[Relation(target=2, kind="surrounding")]),
        TwinObject(id=2, mask=encode(small), bbox=(5, 5, 9, 9), area_pct=3.1, centroid=(7, 7),
                   semantic="red mug", spatial="left; on #1",
                   relations=[Relation(target=1, kind="inside"),
                              Relation(target=1, kind="near", distance=3.0)]),
    ]  # fmt: skip
    return DigitalTwin(image=ImageInfo(width=40, height=20, sha256="0" * 64), objects=objects)


def test_answers_say_what_and_why_or_why_nothing() -> None:
    assert views.short_answer(TURN).splitlines() == ["chose #2 red mug", "why: it is on the left"]
    assert views.short_answer(EMPTY) == "nothing chosen: no object matches: giraffe"
    messages = views.chat_messages([TURN, EMPTY])
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert messages[0]["content"] == "only the one on the left"
    assert messages[3]["content"].startswith("turn 3: nothing chosen")


def test_tables_of_chosen_objects_and_usage() -> None:
    assert views.chosen_rows(TURN) == [[2, "red mug", "it is on the left"]]
    assert views.chosen_rows(EMPTY) == [] and views.chosen_rows(None) == []
    rows = views.usage_rows(TURN["usage"])
    assert rows == [["refine", 2, 0, 300, 40, 1.23], ["total", 2, 0, 300, 40, 1.23]]
    assert views.usage_rows({}) == [] and views.usage_rows(None) == []
    text = views.components_text({"proposer": "sam vit_t", "reasoning": "old"}, TURN["components"])
    assert "**proposer**: sam vit_t" in text and "openai:gpt-4o (refine)" in text and "old" not in text
    assert "none yet" in views.components_text()


def test_object_details_name_semantic_spatial_and_relations() -> None:
    details = views.object_details(twin(), 2)
    assert "### object #2" in details and "**semantic**: red mug" in details and "left; on #1" in details
    assert "- inside #1 (table)" in details and "- near #1 (table), 3 px apart" in details
    assert "predicted IoU 0.930" in views.object_details(twin(), 1)
    assert views.object_details(twin(), 9) == "*no object #9*"
    assert "click an object" in views.object_details(None, None)
    assert views.object_choices(twin()) == [("#1 table", 1), ("#2 red mug", 2)]


def test_a_click_picks_the_smallest_object_under_it() -> None:
    assert views.object_at(twin(), 7, 7) == 2  # inside both: the smaller
    assert views.object_at(twin(), 15, 15) == 1
    assert views.object_at(twin(), 30, 5) is None  # no object there
    assert views.object_at(twin(), 400, 5) is None and views.object_at(None, 1, 1) is None


def test_session_and_turn_lists() -> None:
    summary = SessionSummary("k1", "/photos/kitchen.jpg", 2, "only the one on the left", "2026-01-01", True)
    assert views.session_choices([summary]) == [
        ('k1 · kitchen.jpg · 2 turn(s): "only the one on the left"', "k1")
    ]
    assert views.turn_choices([TURN, EMPTY]) == [
        ("turn 3: the giraffe", 3),
        ("turn 2: only the one on the left", 2),
    ]
    header = views.session_header("k1", "/photos/kitchen.jpg", 2, interrupted=True)
    assert (
        "`k1`" in header
        and "dtwin chat /photos/kitchen.jpg --session k1" in header
        and "interrupted" in header
    )
    assert "no session" in views.session_header(None, None, 0)

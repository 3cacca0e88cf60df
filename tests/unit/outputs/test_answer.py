"""The answer in words: whole for the model, one or two lines cut at a word boundary for people."""

from __future__ import annotations

import pytest

from dtwin_agent.outputs.answer import answer_lines, answer_text, shorten

LONG_REASON = (
    "the dog sits by the door and looks at the leash hanging on the hook, which is what it is waiting "
    "for because walks start with the leash; the bowl is empty but it does not look at it"
)


@pytest.mark.parametrize(
    "text, width, expected",
    [
        ("a short answer", 40, "a short answer"),
        ("white   ceramic\nmug", 40, "white ceramic mug"),
        ("the leash hanging on the hook", 20, "the leash ..."),
        ("supercalifragilisticexpialidocious", 12, "supercal ..."),
    ],
    ids=["fits", "whitespace", "word-boundary", "one-long-word"],
)
def test_shorten(text, width, expected):
    assert shorten(text, width) == expected and len(shorten(text, width)) <= width


def test_answer_text_keeps_everything():
    objects = [{"id": 12, "semantic": "red leash", "reasoning": LONG_REASON}]
    text = answer_text([12], objects, "chose 1")
    assert text == f"Chose 1 object(s): #12 red leash ({LONG_REASON})"
    assert answer_text([12], {"12": objects[0]}, "chose 1") == text  # the dict form too


def test_answer_lines_say_what_and_why_cut_at_words():
    lines = answer_lines([12], [{"id": 12, "semantic": "red leash", "reasoning": LONG_REASON}], "m", 60)
    assert lines[0] == "chose #12 red leash"
    assert lines[1].startswith("why: the dog sits by the door") and lines[1].endswith(" ...")
    assert len(lines[1]) <= 60
    kept = lines[1].removesuffix(" ...").removeprefix("why: ")
    assert LONG_REASON.startswith(kept) and LONG_REASON[len(kept)] == " "  # cut between two words


def test_answer_lines_several_objects_and_empty():
    objects = [
        {"id": 3, "semantic": "left wheel", "reasoning": "round, under the truck"},
        {"id": 5, "semantic": "right wheel", "reasoning": "also a wheel"},
    ]
    assert answer_lines([3, 5], objects, "m") == [
        "chose #3 left wheel; #5 right wheel",
        "why: #3 round, under the truck; #5 also a wheel",
    ]
    assert answer_lines([], [], "the reasoner kept no object (stop: empty)") == [
        "nothing chosen: the reasoner kept no object (stop: empty)"
    ]
    assert answer_lines([4], [{"id": 4, "semantic": "mug"}], "m") == ["chose #4 mug"]

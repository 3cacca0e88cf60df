"""The request restated in plain words (``reasoning.restate``, issue 12).

When the request's own words give the keyword pre-filter nothing to match ("the shape with the
colour of the sea": no colour, shape or name in it), one short call asks the LLM for plain words
("blue shape"); the pre-filter matches those and the reasoner reads them beside the request.
Scripted chat models tell the restatement call (no twin in it) from the reasoning calls (the twin
first).
"""

from __future__ import annotations

import json
import re

import pytest
from helpers.fakes import ScriptedChatModel, human_text
from helpers.twins import box, twin_from_masks

from dtwin_agent.api import SegmentationResult
from dtwin_agent.config import Settings
from dtwin_agent.graph import build_graph
from dtwin_agent.graph.context import Context
from dtwin_agent.llm.parsing import ParseError, parse_restatement


def scene():
    """A red ball, a blue box, a green box (offline-labeller-like semantics)."""
    return twin_from_masks(
        [
            (box(100, 100, 0, 0, 30, 30), "soccer ball 0.61; red, round", "top left", None),
            (box(100, 100, 60, 0, 90, 30), "carton 0.40, crate 0.20; blue, rectangular", "top right", None),
            (box(100, 100, 30, 60, 70, 90), "carton 0.38; green, rectangular", "bottom", None),
        ],
        sha="r",
    )


def is_restatement(messages) -> bool:
    return "<digital_twin" not in human_text(messages)


def model(plain: str | list[str], *, keep: list[int] | None = None) -> ScriptedChatModel:
    """Restates as ``plain`` (answers in turn when a list); keeps the ids the hint lists, or ``keep``."""
    restatements = iter(plain if isinstance(plain, list) else [json.dumps({"plain": plain})])

    def respond(messages) -> str:
        if is_restatement(messages):
            return next(restatements)
        hinted = re.search(r"candidates #(\d+)", human_text(messages))
        ids = keep if keep is not None else [int(hinted.group(1))] if hinted else []
        return json.dumps({"reasoning": "r", "ids": ids, "objects": [{"id": i, "semantic": ""} for i in ids]})

    return ScriptedChatModel(respond=respond)


def run(query: str, llm: ScriptedChatModel, **reasoning) -> SegmentationResult:
    settings = Settings(models={"llm": llm, "structured_output": "prompt"}, reasoning=reasoning)
    twin = scene()
    out = (
        build_graph(perception=False)
        .compile()
        .invoke({"query": query, "twin": twin}, context=Context(settings=settings, cache=None))
    )
    return SegmentationResult.from_state({**out, "twin": twin})


def test_the_plain_words_reach_the_prefilter_and_the_reasoner_once_per_request() -> None:
    llm = model("blue shape")
    result = run("the shape with the colour of the sea", llm)
    kinds = [is_restatement(c) for c in llm.calls]
    assert kinds == [True, False, False]  # asked once; step 2 reuses it
    assert result.ok and result.ids == [2] and result.stop_reason == "converged"
    for call in llm.calls[1:]:
        text = human_text(call)
        assert 'The request in plain words (a rewrite; the request itself decides): "blue shape".' in text
        assert "candidates #2 (is blue)" in text
        assert text.index("</digital_twin>") < text.index("plain words")  # after the cached prefix
    restate = llm.calls[0]
    assert "<query>the shape with the colour of the sea</query>" in human_text(restate)
    assert result.usage["stages"]["refine"]["calls"] == 3  # the restatement is counted
    assert [s.report.get("restated") for s in result.steps[1:]] == ["blue shape", "blue shape"]


def test_requests_whose_own_words_match_ask_nothing_more() -> None:
    llm = model("unused")
    result = run("the red ball", llm)  # "ball" and "red" match #1's semantic: the pre-filter has an opinion
    assert not any(is_restatement(c) for c in llm.calls)
    assert result.ids == [1]


def test_restate_off_asks_nothing_and_hints_nothing() -> None:
    llm = model("blue shape", keep=[2])
    result = run("the shape with the colour of the sea", llm, restate=False)
    assert not any(is_restatement(c) for c in llm.calls)
    assert all("plain words" not in human_text(c) for c in llm.calls)
    assert result.ids == [2]


def test_an_unusable_restatement_is_no_restatement_not_a_failure() -> None:
    long_prose = "Well, " + "the sea is a very large body of water " * 3
    llm = model([long_prose, long_prose], keep=[2])  # the answer and its one repair
    result = run("the shape with the colour of the sea", llm)
    assert [is_restatement(c) for c in llm.calls][:2] == [True, True]
    assert result.ok and result.ids == [2]
    assert all("plain words" not in human_text(c) for c in llm.calls[2:])


def test_the_request_said_again_adds_nothing() -> None:
    llm = model("dog", keep=[])  # no word the request does not already have
    result = run("the dog", llm)
    assert is_restatement(llm.calls[0])
    assert all("plain words" not in human_text(c) for c in llm.calls[1:])
    assert result.ok and result.ids == []


def test_a_later_step_reuses_step_ones_restatement_and_never_asks_its_own() -> None:
    llm = model("unused", keep=[1])
    result = run("the biggest thing", llm)  # step 1: a rank; step 2: one object left, no opinion
    assert not any(is_restatement(c) for c in llm.calls) and result.ids == [1]
    assert all("plain words" not in human_text(c) for c in llm.calls)


def test_without_the_prefilter_the_restatement_is_asked_only_where_it_would_have_no_opinion() -> None:
    llm = model("unused", keep=[1])
    run("the red ball", llm, prefilter=False)
    assert not any(is_restatement(c) for c in llm.calls)
    llm = model("blue shape", keep=[2])
    result = run("the shape with the colour of the sea", llm, prefilter=False)
    assert [is_restatement(c) for c in llm.calls] == [True, False, False]
    text = human_text(llm.calls[1])
    assert 'plain words (a rewrite; the request itself decides): "blue shape"' in text
    assert "pre-filter" not in text.split("</digital_twin>")[-1]  # no candidates shown
    assert result.ids == [2]


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ('{"plain": "blue shape"}', "blue shape"),
        ('["blue", "box"]', "blue, box"),
        ('```json\n{"plain": "knife"}\n```', "knife"),
        ('<think>the sea is blue</think>{"plain": "blue  shape"}', "blue shape"),
        ('"knife"', "knife"),
        ("knife, bread knife", "knife, bread knife"),
    ],
)
def test_parse_restatement_reads_json_or_one_short_line(text: str, plain: str) -> None:
    assert parse_restatement(text)[0].plain == plain


def test_parse_restatement_keeps_twelve_words_cut_at_a_word() -> None:
    value, report = parse_restatement(json.dumps({"plain": " ".join(f"word{i}" for i in range(20))}))
    assert value.plain.split() == [f"word{i}" for i in range(12)]
    assert any("first 12 words" in n for n in report.notes)
    value, _ = parse_restatement(json.dumps({"plain": " ".join(["x" * 30] * 5)}))
    assert len(value.plain) <= 120 and value.plain.split() == ["x" * 30] * 3


@pytest.mark.parametrize(
    "text",
    ["", "   ", '{"plain": ""}', "a sentence " * 10, "two\nlines"]
    + ["42", "null", '[{"plain": "x"}]', "<think>blue"],
)
def test_parse_restatement_rejects_what_holds_no_short_phrase(text: str) -> None:
    with pytest.raises(ParseError):
        parse_restatement(text)


def test_the_restatement_messages_are_the_worked_examples_then_the_request() -> None:
    from dtwin_agent.reasoning.llm import restate_messages

    messages = restate_messages("the shape with the colour of the sea", "Turn 1 - user: the mug")
    assert messages[0].type == "system" and "keyword matcher" in messages[0].content
    turns = messages[1:-1]
    assert turns and [m.type for m in turns] == ["human", "ai"] * (len(turns) // 2)
    for asked, answered in zip(turns[::2], turns[1::2], strict=True):
        assert asked.content.startswith("<query>")
        assert set(json.loads(answered.content)) == {"thought", "plain"}
    assert messages[-1].content == (
        "<dialogue>\nTurn 1 - user: the mug\n</dialogue>\n<query>the shape with the colour of the sea</query>"
    )


def test_the_requests_group_words_still_count_beside_the_plain_words() -> None:
    llm = model("carton, crate", keep=[2, 3])
    result = run("every thing you could ship a parcel in", llm)
    hint = human_text(llm.calls[1]).split("candidates")[-1]
    assert "#2" in hint and "#3" in hint  # a group: every match, not only #2 (two words shared)
    assert result.ids == [2, 3]
    llm = model("carton, crate", keep=[2])
    run("a thing you could ship a parcel in", llm)
    hint = human_text(llm.calls[1]).split("candidates")[-1]
    assert "#2" in hint and "#3" not in hint  # one thing: the best match

"""The refine loop's two second opinions (issue 12): "no filtering" at step 1 and a step that empties.

A step 1 that keeps every one of N' >= 3 objects is not convergence (it would return the whole
twin): the single-shot pick (paper Eq. 6) is asked, and refinement goes on from its ids. A later
step that drops every object step 1 kept is checked the same way: nothing is chosen only when the
pick also finds nothing. Scripted chat models answer in order; each test counts the calls.
"""

from __future__ import annotations

import json

from helpers.fakes import ScriptedChatModel
from helpers.twins import toy_twin

from dtwin_agent.api import SegmentationResult
from dtwin_agent.config import Settings
from dtwin_agent.graph import build_graph
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes.refine import NO_FILTER_MIN, emptied, kept_everything
from dtwin_agent.twin import ReasoningStep


def keep(*ids: int) -> str:
    return json.dumps(
        {"reasoning": "r", "ids": list(ids), "objects": [{"id": i, "semantic": ""} for i in ids]}
    )


def pick(*ids: int) -> str:
    return json.dumps({"reason": "r", "ids": list(ids)})


def run(answers: list[str], twin=None) -> tuple[SegmentationResult, ScriptedChatModel]:
    pending = iter(answers)
    model = ScriptedChatModel(respond=lambda messages: next(pending))
    reasoning = {"prefilter": False, "restate": False}  # scripted answers in order
    settings = Settings(models={"llm": model, "structured_output": "prompt"}, reasoning=reasoning)
    twin = twin or toy_twin()
    out = (
        build_graph(perception=False)
        .compile()
        .invoke({"query": "cut the bread", "twin": twin}, context=Context(settings=settings, cache=None))
    )
    return SegmentationResult.from_state({**out, "twin": twin}), model


def is_single_shot(call) -> bool:
    return "paper Eq. 6" in call[0].content


def test_the_rules_by_their_definitions() -> None:
    start = ReasoningStep(step=0, ids=[1, 2, 3])
    assert NO_FILTER_MIN == 3
    assert kept_everything(start, ReasoningStep(step=1, ids=[3, 2, 1]))
    assert not kept_everything(start, ReasoningStep(step=1, ids=[1, 2]))
    assert not kept_everything(
        ReasoningStep(step=0, ids=[1, 2]), ReasoningStep(step=1, ids=[1, 2])
    )  # both may
    assert not kept_everything(ReasoningStep(step=1, ids=[1, 2, 3]), ReasoningStep(step=2, ids=[1, 2, 3]))
    assert emptied(ReasoningStep(step=1, ids=[2]), ReasoningStep(step=2, ids=[]))
    assert not emptied(start, ReasoningStep(step=1, ids=[]))  # step 1 finding nothing is an answer
    assert not emptied(ReasoningStep(step=1, ids=[2]), ReasoningStep(step=2, ids=[2]))


def test_step_one_keeping_everything_is_no_filtering_the_pick_becomes_step_one() -> None:
    result, model = run([keep(1, 2, 3), pick(3), keep(3)])
    assert [is_single_shot(c) for c in model.calls] == [False, True, False]
    assert result.usage["stages"]["refine"]["calls"] == 3  # the pick's call is counted
    assert result.ok and result.ids == [3] and result.stop_reason == "converged"
    assert [s.ids for s in result.steps] == [[1, 2, 3], [3], [3]]
    (note,) = [n for n in result.steps[1].report["notes"] if "no filtering" in n]
    assert "kept all 3 objects" in note and "chose [3]" in note and "the pick is step 1" in note


def test_step_one_keeping_everything_stands_when_the_pick_agrees() -> None:
    result, model = run([keep(1, 2, 3), pick(1, 2, 3)])
    assert len(model.calls) == 2
    assert result.ids == [1, 2, 3] and result.stop_reason == "converged"
    assert any("both keep every object" in n for n in result.steps[1].report["notes"])


def test_step_one_keeping_everything_stands_when_the_pick_cannot_be_used() -> None:
    result, model = run([keep(1, 2, 3), "no idea", "still no idea"])  # the pick and its one repair
    assert len(model.calls) == 3 and result.ok
    assert result.ids == [1, 2, 3] and result.stop_reason == "converged"
    assert any("could not be used" in n for n in result.steps[1].report["notes"])


def test_the_pick_may_find_nothing_after_a_keep_everything_step() -> None:
    result, _ = run([keep(1, 2, 3), pick()])
    assert result.ok and result.ids == [] and result.stop_reason == "empty"


def test_a_later_step_that_empties_keeps_the_previous_objects_unless_the_pick_agrees() -> None:
    result, model = run([keep(2, 3), keep(), pick(3)])
    assert [is_single_shot(c) for c in model.calls] == [False, False, True]
    assert result.usage["stages"]["refine"]["calls"] == 3
    assert result.ok and result.ids == [2, 3] and result.stop_reason == "converged"
    assert result.steps[-1].step == 2 and result.steps[-1].ids == [2, 3]
    assert result.mask.any()
    assert any("kept none of the 2 objects of step 1" in n for n in result.steps[-1].report["notes"])

    result, _ = run([keep(2, 3), keep(), pick()])
    assert result.ok and result.ids == [] and result.stop_reason == "empty"
    assert any("also chose nothing" in n for n in result.steps[-1].report["notes"])


def test_ordinary_steps_ask_no_second_opinion() -> None:
    result, model = run([keep(2, 3), keep(3), keep(3)])
    assert len(model.calls) == 3 and not any(is_single_shot(c) for c in model.calls)
    assert result.ids == [3] and result.stop_reason == "converged"
    result, model = run([keep()])  # step 1 finding nothing is an answer, not a disagreement
    assert len(model.calls) == 1 and result.ids == [] and result.stop_reason == "empty"

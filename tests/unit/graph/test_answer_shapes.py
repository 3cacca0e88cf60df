"""Right answers or honest failures: every shape of a reasoner's answer, in every reasoning mode.

An answer that cannot be used (after the one repair round-trip) at the first step is a failure:
no ids, an empty mask, ``stop_reason == "failed"``, ``ok`` False and one error line naming the model
and the problem, the same in ``warnings`` and ``message``. Never "every object" (issue 12).
"""

from __future__ import annotations

import json

import pytest
from helpers.fakes import ScriptedChatModel
from helpers.twins import toy_twin

from dtwin_agent.api import SegmentationResult
from dtwin_agent.config import Settings
from dtwin_agent.graph import build_graph
from dtwin_agent.graph.context import Context

REFINE_OK = {"objects": [{"reasoning": "it cuts", "id": 3, "semantic": "a steel knife for bread"}]}
SINGLE_OK = {"reason": "it cuts", "ids": [3]}
SFTDT_OK = {
    "path": [
        {
            "step": 1,
            "objects": {
                "1": {"decision": "rejected", "reasoning": "a mug does not cut"},
                "2": {"decision": "rejected", "reasoning": "a table does not cut"},
                "3": {"decision": "kept", "semantic": "a steel knife", "reasoning": "it cuts"},
            },
        }
    ],
    "ids": [3],
}
GOOD = {"refine": REFINE_OK, "single_shot": SINGLE_OK, "sftdt": SFTDT_OK}
STRING_IDS = {
    "refine": {"objects": [{"reasoning": "it cuts", "id": "3", "semantic": "a knife"}]},
    "single_shot": {"reason": "it cuts", "ids": ["3"]},
    "sftdt": {**SFTDT_OK, "ids": ["3"]},
}
UNKNOWN = {
    "refine": {"objects": [{"reasoning": "r", "id": 42, "semantic": "s"}, {"reasoning": "r", "id": 43}]},
    "single_shot": {"reason": "r", "ids": [42, 43]},
    "sftdt": {
        "path": [{"step": 1, "objects": {"42": {"decision": "kept", "reasoning": "r"}}}],
        "ids": [42, 43],
    },
}
MODES = ["refine", "single_shot", "sftdt"]

# shape -> (answer text per mode, the problem the error names)
UNUSABLE = {
    "prose": (lambda mode: "The knife, obviously: it is the only thing that cuts.", "prose instead of JSON"),
    "cut_off_json": (lambda mode: json.dumps(GOOD[mode])[:14], "a cut-off JSON answer"),
    "empty": (lambda mode: "", "an empty answer"),
    "unfinished_think": (
        lambda mode: "<think>The user wants to cut bread. Object 3 is a knife, so",
        "an unfinished <think> block",
    ),
    "all_ids_unknown": (lambda mode: json.dumps(UNKNOWN[mode]), "only ids that are not in question"),
}


def run(mode: str, answers: list[str]) -> tuple[SegmentationResult, ScriptedChatModel]:
    pending = iter(answers)
    model = ScriptedChatModel(respond=lambda messages: next(pending, answers[-1]))
    settings = Settings(
        models={"llm": model, "structured_output": "prompt"}, reasoning={"mode": mode, "restate": False}
    )
    twin = toy_twin()
    out = (
        build_graph(perception=False)
        .compile()
        .invoke({"query": "cut the bread", "twin": twin}, context=Context(settings=settings, cache=None))
    )
    return SegmentationResult.from_state({**out, "twin": twin}), model


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", sorted(UNUSABLE))
def test_unusable_first_answer_is_a_failure_not_a_selection(mode: str, shape: str) -> None:
    make, problem = UNUSABLE[shape]
    result, model = run(mode, [make(mode)])
    assert len(model.calls) == 2  # the answer and the one repair round-trip
    assert "could not be used" in model.calls[1][-1].content
    assert not result.ok and result.ids == [] and not result.mask.any()
    assert result.stop_reason == "failed"
    assert problem in result.error and "ScriptedChatModel" in result.error and "step 1" in result.error
    assert "\n" not in result.error
    assert result.warnings == [result.error] and result.message.startswith(result.error)
    assert result.summary()["ok"] is False and result.summary()["error"] == result.error
    assert result.answer() == result.message  # never "no object answers the query"
    report = result.steps[-1].report
    assert report["problem"] and any("parse failed" in n for n in report["notes"])
    if shape == "all_ids_unknown":
        assert sorted(report["unknown_ids"]) == [42, 43]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", ["fenced_json", "ids_as_strings", "repaired_after_prose"])
def test_usable_answer_shapes_select(mode: str, shape: str) -> None:
    good = json.dumps(GOOD[mode])
    answers = {
        "fenced_json": [f"Here you go:\n```json\n{good}\n```"],
        "ids_as_strings": [json.dumps(STRING_IDS[mode])],
        "repaired_after_prose": ["The knife.", good],
    }[shape]
    result, _ = run(mode, answers)
    assert result.ok and result.error == "" and result.ids == [3] and result.mask.any()
    assert result.stop_reason == {"refine": "converged", "single_shot": "single_shot", "sftdt": "sftdt"}[mode]
    assert result.summary()["ok"] is True


@pytest.mark.parametrize("mode", MODES)
def test_some_unknown_ids_are_dropped_and_listed(mode: str) -> None:
    answer = {
        "refine": {"objects": [{"reasoning": "r", "id": 3}, {"reasoning": "r", "id": 9}]},
        "single_shot": {"reason": "r", "ids": [3, 9]},
        "sftdt": {**SFTDT_OK, "ids": [3, 9]},
    }[mode]
    result, _ = run(mode, [json.dumps(answer)])
    assert result.ok and result.ids == [3]
    assert any(9 in (s.report or {}).get("unknown_ids", []) for s in result.steps)
    assert any("dropped unknown ids" in w and "9" in w for w in result.warnings)


def test_explicit_empty_answer_is_an_answer_not_a_failure() -> None:
    result, _ = run("refine", ['{"objects": []}'])
    assert result.ok and result.ids == [] and result.stop_reason == "empty"
    assert "no object satisfies the query" in result.message


def test_a_later_unusable_step_keeps_the_filtered_ids_with_a_warning() -> None:
    step1 = {"objects": [{"reasoning": "r", "id": 2}, {"reasoning": "r", "id": 3}]}
    result, model = run("refine", [json.dumps(step1), "Still thinking about it.", "No JSON, sorry."])
    assert len(model.calls) == 3
    assert result.ok and result.ids == [2, 3] and result.stop_reason == "unparseable"
    assert result.steps[-1].step == 2 and result.steps[-1].ids == [2, 3]
    (warning,) = result.warnings
    assert (
        "refine step 2" in warning
        and "prose instead of JSON" in warning
        and "kept the 2 object(s)" in warning
    )


def test_copied_template_text_is_treated_as_missing() -> None:
    """Issue 15 item 4: ``"semantic": "updated description"`` must never reach the user."""
    copied = {
        "objects": [
            {"reasoning": "why this object answers the request", "id": 3, "semantic": "updated description"}
        ]
    }
    result, _ = run("refine", [json.dumps(copied)])
    assert result.ids == [3]
    (chosen,) = result.chosen
    assert chosen.semantic == "a steel knife" and chosen.reasoning == ""  # the twin's S_i, no copied note
    assert any("copy of the prompt's template" in w for w in result.warnings)

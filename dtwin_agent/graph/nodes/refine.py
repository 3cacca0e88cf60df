"""refine: D^(j) = F_refine(D^(j-1), x_txt) (paper Eqs. 7-8), I = F_LLM(JSON(D), x_txt) (Eq. 6) or Eq. 9.

Each pass of this node is one refinement step. The reasoner (:func:`dtwin_agent.reasoning.get_reasoner`)
gets JSON(D^(j-1)) and the query, never pixels, and returns the ids it keeps, a subset of the
previous ones, each with an updated semantic and a reasoning note. :func:`route_after_refine`
loops until the id set is unchanged, it is empty or ``reasoning.max_refine_steps`` is reached.
``reasoning.mode = "single_shot"`` asks for the ids directly in one call; ``"sftdt"`` asks an SFTDT
model for the whole path in one answer, with the messages its Seg-DT records train it on.

Never a silent wrong answer: when the first answer cannot be used (after the one repair
round-trip: prose, cut-off or empty output, a ``<think>`` block that ran out, only unknown ids),
the run fails: step 1 keeps nothing, ``stop_reason`` is ``failed`` and ``error`` says which model
gave what (:data:`FAILED`). A later step's unusable answer keeps the previous step's already
filtered ids, with a warning (``stop_reason`` ``unparseable``).
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import settings_of
from dtwin_agent.llm.usage import Usage
from dtwin_agent.progress import emit
from dtwin_agent.reasoning import get_reasoner
from dtwin_agent.twin import DigitalTwin, ReasoningStep

FAILED = "failed"
UNPARSEABLE = "unparseable"


def failure_text(reasoner_name: str, step: int, problem: str) -> str:
    """The one line a failed run reports (CLI, tool, result): the model and what it answered."""
    return (
        f"reasoning failed: the LLM {reasoner_name} gave {problem or 'an unusable answer'} at step {step}, "
        "also after one repair request; no object was chosen"
    )


def refine(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """One refinement step (or the single-shot / SFTDT answer); appends to ``steps``."""
    settings = settings_of(runtime)
    twin: DigitalTwin = state["twin"]
    query = state.get("query", "")
    dialogue = state.get("dialogue", "")
    steps = list(state.get("steps") or []) or [ReasoningStep(step=0, ids=twin.ids)]  # D^(0) = D
    previous = steps[-1]
    if not previous.ids:
        return {"steps": steps, "stop_reason": "empty"}
    mode = settings.reasoning.mode
    if mode == "refine":
        emit("refine", done=previous.step + 1, total=settings.reasoning.max_refine_steps, unit="steps")
    usage = Usage()
    with usage.recording():  # a local LLM server started for this step is its own usage stage
        reasoner = get_reasoner(settings)
        if mode == "single_shot":
            reply = reasoner.single_shot(twin, query, dialogue, usage)
            new = [reply.value] if reply.value is not None else []
        elif mode == "sftdt":
            reply = reasoner.path(twin, query, dialogue, usage)
            new = list(reply.value or [])
        else:
            reply = reasoner.refine(twin, query, previous, dialogue, usage)
            new = [reply.value] if reply.value is not None else []
    update: dict[str, Any] = {
        "usage": usage.model_dump(),
        "components": {"reasoning": f"llm {reasoner.name} ({mode})"},
    }
    j = previous.step + 1
    if not new:
        report = {**reply.report, "problem": reply.problem}
        if previous.step == 0:  # the first answer: a failure, never "every object"
            error = failure_text(reasoner.name, j, reply.problem)
            steps.append(ReasoningStep(step=j, ids=[], report=report))
            return update | {"steps": steps, "stop_reason": FAILED, "error": error, "warnings": [error]}
        steps.append(ReasoningStep(step=j, ids=previous.ids, report=report))
        warning = (
            f"refine step {j}: the LLM {reasoner.name} gave {reply.problem or 'an unusable answer'}; "
            f"kept the {len(previous.ids)} object(s) of step {previous.step}"
        )
        return update | {"steps": steps, "stop_reason": UNPARSEABLE, "warnings": [warning]}
    steps.extend(new)
    last = steps[-1]
    warnings = []
    for step in new:
        report = step.report or {}
        if report.get("unknown_ids"):
            warnings.append(f"refine step {step.step}: dropped unknown ids {report['unknown_ids']}")
        warnings += [
            f"refine step {step.step}: {note}"
            for note in report.get("notes", [])
            if "cut off" in note or "copy of the prompt's template" in note
        ]
    if warnings:
        update["warnings"] = warnings
    if mode != "refine":
        stop = mode
    elif not last.ids:
        stop = "empty"
    elif set(last.ids) == set(previous.ids):
        stop = "converged"
    elif last.step >= settings.reasoning.max_refine_steps:
        stop = "max_steps"
    else:
        stop = ""
    return update | {"steps": steps, "stop_reason": stop}


def route_after_refine(state: dict[str, Any]) -> Literal["refine", "finalize"]:
    """Loop while no stop reason is set."""
    return "finalize" if state.get("stop_reason") else "refine"

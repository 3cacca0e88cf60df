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

Two answers of the refine loop are not taken at their word (issue 12; ``benchmarks/local_llm.py``
measured both as the main misses of a 1.5B model):

- **No filtering** (:func:`kept_everything`): step 1 keeps every one of N' >= :data:`NO_FILTER_MIN`
  objects. I^(1) = I^(0) would count as convergence and return the whole twin, but the paper's
  D^(K) holds "only objects that satisfy the query": keeping all of them is no decision. The
  single-shot pick (Eq. 6) is asked instead; its ids become step 1 and refinement goes on from
  them. When the pick also keeps every object (or cannot be used), step 1 stands: two ways of
  asking agree that everything answers the request.
- **Emptied** (:func:`emptied`): a step j >= 2 keeps none of a non-empty D^(j-1). Step 1 already
  judged those objects against the request, so the two steps disagree; the single-shot pick
  breaks the tie. Nothing is chosen only when the pick also finds nothing; otherwise D^(j-1) is
  kept and the loop stops there (``converged``, with a note in the step's report).
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
NO_FILTER_MIN = 3
"""Step 1 keeping all of at least this many objects is "no filtering" (two objects may both answer)."""


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
    if mode == "refine":
        new = [_second_opinion(reasoner, twin, query, dialogue, previous, new[0], usage)]
        update["usage"] = usage.model_dump()  # with the pick's call, when one was asked
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


def kept_everything(previous: ReasoningStep, step: ReasoningStep) -> bool:
    """Step 1 kept all of N' >= :data:`NO_FILTER_MIN` objects: no filtering, not convergence."""
    return previous.step == 0 and len(previous.ids) >= NO_FILTER_MIN and set(step.ids) == set(previous.ids)


def emptied(previous: ReasoningStep, step: ReasoningStep) -> bool:
    """A step j >= 2 dropped every object that step j - 1 had kept."""
    return previous.step >= 1 and bool(previous.ids) and not step.ids


def _noted(step: ReasoningStep, note: str, **update: Any) -> ReasoningStep:
    report = dict(step.report or {})
    report["notes"] = [*report.get("notes", []), note]
    return step.model_copy(update={**update, "report": report})


def _second_opinion(
    reasoner: Any,
    twin: DigitalTwin,
    query: str,
    dialogue: str,
    previous: ReasoningStep,
    step: ReasoningStep,
    usage: Usage,
) -> ReasoningStep:
    """``step``, or what the single-shot pick (Eq. 6) makes of it (see the module docstring)."""
    if not (kept_everything(previous, step) or emptied(previous, step)):
        return step
    pick = reasoner.single_shot(twin, query, dialogue, usage)
    chosen = None if pick.value is None else pick.value.ids
    said = "could not be used" if chosen is None else f"chose {chosen or 'nothing'}"
    if previous.step == 0:  # no filtering
        head = f"step 1 kept all {len(previous.ids)} objects (no filtering); the single-shot pick {said}"
        if chosen is None or set(chosen) == set(previous.ids):
            return _noted(step, f"{head}: both keep every object")
        return _noted(pick.value.model_copy(update={"step": step.step}), f"{head}: the pick is step 1")
    head = f"step {step.step} kept none of the {len(previous.ids)} objects of step {previous.step}"
    if chosen == []:
        return _noted(step, f"{head}; the single-shot pick also chose nothing")
    return _noted(
        step,
        f"{head}, but the single-shot pick {said}: the objects of step {previous.step} are kept",
        ids=previous.ids,
        objects={i: d for i, d in previous.objects.items() if i in previous.ids},
    )


def route_after_refine(state: dict[str, Any]) -> Literal["refine", "finalize"]:
    """Loop while no stop reason is set."""
    return "finalize" if state.get("stop_reason") else "refine"

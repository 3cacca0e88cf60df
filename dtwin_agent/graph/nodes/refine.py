"""refine: D^(j) = F_refine(D^(j-1), x_txt) (paper Eqs. 7-8), or I = F_LLM(JSON(D), x_txt) (Eq. 6).

Each pass of this node is one refinement step. The LLM gets JSON(D^(j-1)) and the query, never
pixels, and returns the ids it keeps, a subset of the previous ones, each with an updated semantic
and a reasoning note. :func:`route_after_refine` loops until the id set is unchanged, it is empty
or ``reasoning.max_refine_steps`` is reached. ``reasoning.mode = "single_shot"`` asks for the ids
directly in one call.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import model_name, settings_of
from dtwin_agent.llm.call import invoke_structured
from dtwin_agent.llm.models import chat_model
from dtwin_agent.llm.parsing import parse_refine_step, parse_single_shot
from dtwin_agent.llm.prompts import load_prompt, render_prompt
from dtwin_agent.llm.schemas import RefineStepOutput, SingleShotOutput
from dtwin_agent.llm.usage import Usage
from dtwin_agent.twin import DigitalTwin


def _int_keys(d: dict[str, str] | None) -> dict[int, str]:
    return {int(k): v for k, v in (d or {}).items()}


def _dialogue_block(dialogue: str) -> str:
    return f"<dialogue>\n{dialogue}\n</dialogue>\n" if dialogue.strip() else ""


def refine_messages(
    twin: DigitalTwin,
    query: str,
    step: int,
    ids: list[int],
    semantics: dict[int, str],
    reasoning: dict[int, str],
    dialogue: str = "",
) -> list[Any]:
    """The messages of refinement step ``step``: system prompt, JSON(D^(step-1)), the query (and dialogue)."""
    twin_json = twin.to_prompt_json(ids=ids, semantics=semantics, reasoning=reasoning)
    user = render_prompt(
        "refine.user.md",
        query=query,
        step=step,
        previous_step=step - 1,
        twin_json=twin_json,
        dialogue_block=_dialogue_block(dialogue),
    )
    return [SystemMessage(load_prompt("refine.system.md")), HumanMessage(user)]


def single_shot_messages(twin: DigitalTwin, query: str, dialogue: str = "") -> list[Any]:
    """The messages of the zero-shot Eq. 6 call."""
    user = render_prompt(
        "single_shot.user.md",
        query=query,
        twin_json=twin.to_prompt_json(),
        dialogue_block=_dialogue_block(dialogue),
    )
    return [SystemMessage(load_prompt("single_shot.system.md")), HumanMessage(user)]


def refine(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """One refinement step (or the single-shot call)."""
    settings = settings_of(runtime)
    twin = DigitalTwin.model_validate(state["twin"])
    query = state.get("query", "")
    dialogue = state.get("dialogue", "")
    steps = list(state.get("steps") or [])
    if not steps:
        steps = [{"step": 0, "ids": twin.ids, "objects": {}}]  # D^(0) = D
    previous = list(state.get("current_ids", twin.ids))
    if not previous:
        return {"steps": steps, "current_ids": [], "stop_reason": "empty"}
    step = len(steps)
    usage = Usage()
    model = chat_model("llm", settings)
    component = {"reasoning": f"llm {model_name(settings.models.llm, settings)} ({settings.reasoning.mode})"}

    if settings.reasoning.mode == "single_shot":
        result = invoke_structured(
            model,
            single_shot_messages(twin, query, dialogue),
            SingleShotOutput,
            parse=lambda text: parse_single_shot(text, twin.ids),
            settings=settings,
            usage=usage,
            stage="refine",
        )
        update: dict[str, Any] = {"usage": usage.model_dump(), "components": component}
        if result.parsed is None:
            steps.append({"step": step, "ids": previous, "objects": {}, "report": result.report.model_dump()})
            return update | {
                "steps": steps,
                "current_ids": previous,
                "stop_reason": "unparseable",
                "warnings": ["refine: the LLM's answer could not be parsed; no selection made"],
            }
        ids = list(result.parsed.ids)
        objects = {str(i): {"semantic": twin.get(i).semantic, "reasoning": result.parsed.reason} for i in ids}
        steps.append({"step": step, "ids": ids, "objects": objects, "report": result.report.model_dump()})
        return update | {"steps": steps, "current_ids": ids, "stop_reason": "single_shot"}

    semantics = _int_keys(state.get("step_semantics"))
    reasoning = _int_keys(state.get("step_reasoning"))
    result = invoke_structured(
        model,
        refine_messages(twin, query, step, previous, semantics, reasoning, dialogue),
        RefineStepOutput,
        parse=lambda text: parse_refine_step(text, previous),
        settings=settings,
        usage=usage,
        stage="refine",
    )
    update = {"usage": usage.model_dump(), "components": component}
    warnings = []
    if result.parsed is None:
        steps.append({"step": step, "ids": previous, "objects": {}, "report": result.report.model_dump()})
        return update | {
            "steps": steps,
            "current_ids": previous,
            "stop_reason": "unparseable",
            "warnings": [
                f"refine step {step}: the LLM's answer could not be parsed; kept the previous step's objects"
            ],
        }
    if result.report.unknown_ids:
        warnings.append(f"refine step {step}: dropped unknown ids {result.report.unknown_ids}")
    kept = result.parsed.objects
    ids = [o.id for o in kept]
    new_semantics = {str(o.id): o.semantic or semantics.get(o.id, twin.get(o.id).semantic) for o in kept}
    new_reasoning = {str(o.id): o.reasoning for o in kept}
    objects = {str(o.id): {"semantic": new_semantics[str(o.id)], "reasoning": o.reasoning} for o in kept}
    steps.append({"step": step, "ids": ids, "objects": objects, "report": result.report.model_dump()})
    if not ids:
        stop = "empty"
    elif set(ids) == set(previous):
        stop = "converged"
    elif step >= settings.reasoning.max_refine_steps:
        stop = "max_steps"
    else:
        stop = ""
    update |= {
        "steps": steps,
        "current_ids": ids,
        "step_semantics": new_semantics,
        "step_reasoning": new_reasoning,
        "stop_reason": stop,
    }
    if warnings:
        update["warnings"] = warnings
    return update


def route_after_refine(state: dict[str, Any]) -> Literal["refine", "finalize"]:
    """Loop while no stop reason is set."""
    return "finalize" if state.get("stop_reason") else "refine"

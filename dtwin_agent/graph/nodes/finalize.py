"""finalize: the answer mask is the union of the chosen objects' masks (paper 3.2)."""

from __future__ import annotations

from typing import Any

from dtwin_agent import masks as mask_ops
from dtwin_agent.twin import DigitalTwin

_STOP_TEXT = {
    "converged": "the selection converged",
    "empty": "no object satisfies the query",
    "max_steps": "the step limit was reached",
    "single_shot": "single-shot answer",
    "unparseable": "the reasoner's answer could not be parsed",
}


def finalize(state: dict[str, Any]) -> dict[str, Any]:
    """Union the chosen masks into one RLE at the original size and say what was chosen."""
    twin = DigitalTwin.model_validate(state["twin"])
    ids = [i for i in state.get("current_ids", []) if i in set(twin.ids)]
    union = twin.union_mask(ids)
    reason = _STOP_TEXT.get(state.get("stop_reason", ""), state.get("stop_reason", ""))
    if ids:
        message = f"chose {len(ids)} object(s): {', '.join(map(str, ids))} ({reason})"
    else:
        message = f"empty answer: no object chosen ({reason}); the mask is empty"
    return {"ids": ids, "mask": mask_ops.encode(union).model_dump(), "message": message}

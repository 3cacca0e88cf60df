"""finalize: the answer mask is the union of the chosen objects' masks (paper 3.2).

A failed run (``error`` set by ``refine``) has no chosen ids: its mask is empty and its message
is the error.
"""

from __future__ import annotations

from typing import Any

from dtwin_agent import masks as mask_ops
from dtwin_agent.twin import DigitalTwin

_STOP_TEXT = {
    "converged": "the selection converged",
    "empty": "no object satisfies the query",
    "max_steps": "the step limit was reached",
    "single_shot": "single-shot answer",
    "sftdt": "SFTDT answer (the whole path in one call)",
    "unparseable": "a later step's answer was unusable; the previous step's objects were kept",
    "failed": "the reasoner gave no usable answer",
}


def finalize(state: dict[str, Any]) -> dict[str, Any]:
    """Union the last step's objects into one RLE at the original size and say what was chosen."""
    twin: DigitalTwin = state["twin"]
    steps = state.get("steps") or []
    known = set(twin.ids)
    ids = [i for i in (steps[-1].ids if steps else []) if i in known]
    union = twin.union_mask(ids)
    reason = _STOP_TEXT.get(state.get("stop_reason", ""), state.get("stop_reason", ""))
    if state.get("error"):
        message = f"{state['error']}; the mask is empty"
    elif ids:
        message = f"chose {len(ids)} object(s): {', '.join(map(str, ids))} ({reason})"
    else:
        message = f"empty answer: no object chosen ({reason}); the mask is empty"
    return {"ids": ids, "mask": mask_ops.encode(union), "message": message}

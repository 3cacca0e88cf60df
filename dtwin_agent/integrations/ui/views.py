"""What the web page shows, as plain data: pure functions of a session's twin and turns.

Nothing here imports Gradio; :mod:`dtwin_agent.integrations.ui.app` puts these values into
components. Turns are the records :func:`~dtwin_agent.integrations.chat.record_turn` writes (what
``result.json`` holds plus ``turn``, ``query``, ``answer`` and ``files``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dtwin_agent.integrations.chat import SessionSummary
from dtwin_agent.llm.usage import Usage
from dtwin_agent.outputs.answer import answer_lines, shorten
from dtwin_agent.twin import DigitalTwin

CHOSEN_HEADERS = ["id", "semantic", "reasoning"]
USAGE_HEADERS = ["stage", "calls", "retries", "input tokens", "output tokens", "seconds"]
ANSWER_WIDTH = 160
"""The longest line of the short answer text (the chat keeps the whole answer)."""


def short_answer(turn: Mapping[str, Any]) -> str:
    """A turn's answer for people: what was chosen and why, or that nothing was and why (two lines)."""
    return "\n".join(
        answer_lines(turn.get("ids") or [], turn.get("objects") or [], turn.get("message", ""), ANSWER_WIDTH)
    )


def chat_messages(turns: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The conversation as chat messages (``role``, ``content``): each request and its short answer."""
    messages: list[dict[str, str]] = []
    for turn in turns:
        messages.append({"role": "user", "content": str(turn.get("query", ""))})
        messages.append({"role": "assistant", "content": f"turn {turn.get('turn')}: {short_answer(turn)}"})
    return messages


def chosen_rows(turn: Mapping[str, Any] | None) -> list[list[Any]]:
    """The chosen objects of a turn: id, semantic and the reasoning note (:data:`CHOSEN_HEADERS`)."""
    if not turn:
        return []
    return [[o.get("id"), o.get("semantic", ""), o.get("reasoning", "")] for o in turn.get("objects") or []]


def usage_rows(usage: Mapping[str, Any] | None) -> list[list[Any]]:
    """Per-stage usage (model calls, retries, tokens, seconds) and a total row (:data:`USAGE_HEADERS`)."""
    parsed = Usage.model_validate(dict(usage or {}))
    rows = [[name, *_cells(row)] for name, row in parsed.stages.items()]
    return [*rows, ["total", *_cells(parsed.total())]] if rows else []


def _cells(row: Any) -> list[Any]:
    return [row.calls, row.retries, row.input_tokens, row.output_tokens, round(row.seconds, 2)]


def components_text(*parts: Mapping[str, str] | None) -> str:
    """Markdown naming what did the work (proposer, labeller, models), later parts winning per role."""
    merged: dict[str, str] = {}
    for part in parts:
        merged.update(part or {})
    if not merged:
        return "*components: none yet*"
    return "\n".join(f"- **{role}**: {name}" for role, name in sorted(merged.items()))


def object_choices(twin: DigitalTwin | None) -> list[tuple[str, int]]:
    """The picker's choices: ``("#3 white mug", 3)`` per object."""
    if twin is None:
        return []
    return [(f"#{o.id} {short_text(o.semantic, 60)}", o.id) for o in twin.objects]


def object_details(twin: DigitalTwin | None, object_id: int | None) -> str:
    """Markdown for one object: semantic S_i, spatial text T_i, relations R_i,j, area, box, scores."""
    if twin is None or object_id is None:
        return "*click an object on the overlay, or pick one from the list*"
    if object_id not in twin.ids:
        return f"*no object #{object_id}*"
    obj = twin.get(object_id)
    head = [
        f"### object #{obj.id}",
        f"**semantic**: {obj.semantic or '(none)'}",
        f"**spatial**: {obj.spatial or '(none)'}",
        f"**area**: {obj.area_pct:.2f}% of the image; **bbox** (x0, y0, x1, y1): {list(obj.bbox)}",
    ]
    scores = [
        f"{name} {value:.3f}"
        for name, value in (("predicted IoU", obj.predicted_iou), ("stability score", obj.stability))
        if value is not None
    ]
    if scores:
        head.append("**scores**: " + ", ".join(scores))
    relations = []
    for rel in obj.relations:
        other = twin.get(rel.target) if rel.target in twin.ids else None
        name = f" ({short_text(other.semantic, 50)})" if other is not None and other.semantic else ""
        distance = f", {rel.distance:.0f} px apart" if rel.distance else ""
        relations.append(f"- {rel.kind} #{rel.target}{name}{distance}")
    head.append("**relations**:" if relations else "**relations**: none recorded")
    return "\n\n".join(head) + ("\n" + "\n".join(relations) if relations else "")


def object_at(twin: DigitalTwin | None, x: int, y: int) -> int | None:
    """The id of the smallest object whose mask holds pixel ``(x, y)`` (original pixels), or None."""
    if twin is None or not (0 <= x < twin.image.width and 0 <= y < twin.image.height):
        return None
    best: tuple[float, int] | None = None
    for obj in twin.objects:
        x0, y0, x1, y1 = obj.bbox
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            continue
        if bool(np.asarray(obj.decode_mask())[y, x]) and (best is None or obj.area_pct < best[0]):
            best = (obj.area_pct, obj.id)
    return best[1] if best else None


def turn_choices(turns: Sequence[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """The turn picker's choices, newest first: ``("turn 2: only the left one", 2)``."""
    return [
        (f"turn {t['turn']}: {short_text(str(t.get('query', '')), 50)}", int(t["turn"]))
        for t in reversed(turns)
    ]


def session_choices(summaries: Sequence[SessionSummary]) -> list[tuple[str, str]]:
    """The session picker's choices: id, image name, turns and the last request."""
    out = []
    for s in summaries:
        image = Path(s.image).name if s.image else "no image"
        last = f': "{short_text(s.last_query, 40)}"' if s.last_query else ""
        out.append((f"{s.session_id} · {image} · {s.turns} turn(s){last}", s.session_id))
    return out


def session_header(session_id: str | None, image: str | None, turns: int, interrupted: bool = False) -> str:
    """One Markdown line naming the session, its image and how to resume it in the terminal."""
    if not session_id:
        return "**no session**: upload an image, pick one, or reopen an earlier session"
    note = " · the last turn was interrupted before it finished: ask it again" if interrupted else ""
    return (
        f"**session** `{session_id}` · **image** `{Path(image or '').name}` · {turns} turn(s){note} · "
        f"in a terminal: `dtwin chat {image} --session {session_id}`"
    )


def short_text(text: str, width: int = 80) -> str:
    """``text`` on one line of at most ``width`` characters, cut at a word boundary."""
    return shorten(text, width)

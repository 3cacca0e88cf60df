"""The answer in words: what was chosen and why.

:func:`answer_text` is the full one-line answer (the tool's reply to a calling model, a chat
session's assistant message, what earlier chat turns show the reasoner): nothing is cut.
:func:`answer_lines` is what a person reads at the end of ``dtwin segment`` and of each ``dtwin chat``
turn: one or two lines, shortened at a word boundary with :func:`shorten`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

ELLIPSIS = " ..."


def shorten(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters, cut at a word boundary (``" ..."`` marks a cut).

    Whitespace runs become single spaces. A first word longer than ``width`` is cut inside it, as the
    only way to show anything at all.
    """
    flat = " ".join(str(text).split())
    if len(flat) <= width:
        return flat
    cut = textwrap.shorten(flat, width=width, placeholder=ELLIPSIS)
    if cut == ELLIPSIS.strip() or cut == ELLIPSIS:  # the first word alone is too long
        return flat[: max(0, width - len(ELLIPSIS))] + ELLIPSIS
    return cut


def _entries(ids: Sequence[int], objects: Any) -> list[tuple[int, str, str]]:
    """``(id, semantic, reasoning)`` per chosen id, from ``{id: {...}}`` or ``[{"id": ...}, ...]``."""
    if isinstance(objects, Mapping):
        by_id = {str(k): v for k, v in objects.items()}
    else:
        by_id = {str(o.get("id")): o for o in objects or []}
    out = []
    for object_id in ids:
        entry = by_id.get(str(object_id), {})
        out.append((object_id, str(entry.get("semantic") or ""), str(entry.get("reasoning") or "")))
    return out


def answer_text(ids: Sequence[int], objects: Any, message: str) -> str:
    """One line for a calling model (and the chat dialogue): the chosen objects and why, or why none.

    Nothing is shortened: the model reads the whole reasoning.

    Args:
        ids: the chosen ids.
        objects: the chosen objects' ``semantic`` and ``reasoning``, as ``{id: {...}}`` or a list of
            dicts with ``id`` (``result.json``'s ``objects``).
        message: the run's one-line summary (used when nothing was chosen).
    """
    if not ids:
        return f"No object in the image answers the query ({message})."
    parts = [f"#{i} {semantic}" + (f" ({why})" if why else "") for i, semantic, why in _entries(ids, objects)]
    return f"Chose {len(ids)} object(s): " + "; ".join(parts)


def answer_lines(ids: Sequence[int], objects: Any, message: str, width: int = 100) -> list[str]:
    """What was chosen and why, for a person: one or two lines of at most ``width`` characters.

    The first line names the chosen objects (``chose #12 white mug``), the second says why (the
    last reasoning step's notes); an empty answer is one line saying why nothing was chosen. Each
    line is shortened at a word boundary.

    Args:
        ids: the chosen ids.
        objects: as for :func:`answer_text`.
        message: the run's one-line summary.
        width: the longest line.
    """
    if not ids:
        return [shorten(f"nothing chosen: {message}", width)]
    entries = _entries(ids, objects)
    what = "chose " + "; ".join(f"#{i} {semantic}".rstrip() for i, semantic, _ in entries)
    reasons = [(i, why) for i, _, why in entries if why]
    lines = [shorten(what, width)]
    if len(reasons) == 1 and len(entries) == 1:
        lines.append(shorten(f"why: {reasons[0][1]}", width))
    elif reasons:
        lines.append(shorten("why: " + "; ".join(f"#{i} {why}" for i, why in reasons), width))
    return lines

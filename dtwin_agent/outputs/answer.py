"""The answer in words: one line naming the chosen objects and why (tool, chat sessions, chat CLI)."""

from __future__ import annotations


def answer_text(ids: list[int], objects: dict[str, dict[str, str]], message: str) -> str:
    """One line for a person or a calling model: the chosen objects and why, or why none.

    Args:
        ids: the chosen ids.
        objects: the last step's ``{id: {"semantic", "reasoning"}}``.
        message: the run's one-line summary (used when nothing was chosen).
    """
    if not ids:
        return f"No object in the image answers the query ({message})."
    parts = []
    for object_id in ids:
        entry = objects.get(str(object_id), {})
        why = entry.get("reasoning", "")
        parts.append(f"#{object_id} {entry.get('semantic', '')}" + (f" ({why})" if why else ""))
    return f"Chose {len(ids)} object(s): " + "; ".join(parts)

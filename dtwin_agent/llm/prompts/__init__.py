"""Prompt templates: the ``*.md`` files beside this module (package data, shipped in the wheel).

System prompts may include shared fragments by name (``{{twin_guide}}`` is ``twin_guide.md``):
:func:`system_prompt` fills them. Answer formats are described in words, never with example
values a model could copy; :func:`is_template_text` recognises an answer that copied one anyway
(issue 15: a 1.5B model answered ``"semantic": "updated description"`` from an example).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def prompt_dir() -> Path:
    """The folder holding the prompt files."""
    return _HERE


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>`` (e.g. ``"refine.md"``)."""
    return (prompt_dir() / name).read_text(encoding="utf-8")


def system_prompt(name: str) -> str:
    """``prompts/<name>`` with its shared fragments filled (``{{twin_guide}}`` -> ``twin_guide.md``)."""
    return render_prompt(name, twin_guide=load_prompt("twin_guide.md").strip())


def render_prompt(name: str, **values: object) -> str:
    """``prompts/<name>`` with each ``{{key}}`` replaced by ``values[key]``.

    Raises:
        KeyError: if the template names a placeholder that was not given.
    """
    text = load_prompt(name)

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"prompt {name} needs a value for {{{{{key}}}}}")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", sub, text)


_GENERIC_PLACEHOLDERS = {
    "", "...", "…", "etc", "n/a", "na", "none given", "string", "str", "todo", "tbd", "xxx",
    "description", "updated description", "new description", "the label", "reason", "one line",
    "why it stays", "why this object answers the request", "your reasoning", "your label",
}  # fmt: skip
_KEY_DESCRIPTION = re.compile(r'"(\w+)" \(([^()]*)\)')


def _normalise(text: str) -> str:
    text = " ".join(str(text).lower().split())
    return text.strip(" \t\"'`<>[](){}.,;:!?*_-")


@cache
def template_texts() -> frozenset[str]:
    """Texts of the prompt files that a model could copy instead of answering, normalised.

    The descriptions of answer keys (``"reasoning" (one sentence of your own ...)``) in every
    prompt file, the in-context example labels, and generic placeholders (``...``, ``updated
    description``, ``one line``...).
    """
    found = set(_GENERIC_PLACEHOLDERS)
    for path in sorted(prompt_dir().glob("*.md")):
        for _, description in _KEY_DESCRIPTION.findall(path.read_text(encoding="utf-8")):
            found.add(_normalise(description))
    for example in json.loads(load_prompt("examples/in_context.json")):
        found.add(_normalise(example.get("semantic", "")))
    return frozenset(found)


def is_template_text(value: str, key: str = "") -> bool:
    """True when ``value`` is no answer but a copy of the prompt's template or a placeholder.

    Matches, after lower-casing and stripping quotes, brackets and punctuation: the texts of
    :func:`template_texts`, the field's own ``key`` name (``"semantic": "semantic"``), and any
    value that is a whole ``<...>`` placeholder (``"<the label>"``).
    """
    raw = " ".join(str(value).split())
    if raw.startswith("<") and raw.endswith(">"):
        return True
    text = _normalise(raw)
    return text in template_texts() or (bool(key) and text == _normalise(key))

"""Prompt templates: the ``*.md`` files beside this module (package data, shipped in the wheel)."""

from __future__ import annotations

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


def render_prompt(name: str, **values: object) -> str:
    """``prompts/<name>`` with each ``{{key}}`` replaced by ``values[key]``.

    Raises:
        KeyError: if the template names a placeholder that was not given.
    """
    import re

    text = load_prompt(name)

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"prompt {name} needs a value for {{{{{key}}}}}")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", sub, text)

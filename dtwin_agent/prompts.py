"""Prompt templates live as files in ``prompts/`` (shipped inside the wheel as ``dtwin_agent/prompts``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (_HERE / "prompts", _HERE.parent / "prompts")


def prompt_dir() -> Path:
    """The folder holding the prompt files (installed wheel first, then the source checkout)."""
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"prompt folder not found; looked in {', '.join(map(str, _CANDIDATES))}")


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

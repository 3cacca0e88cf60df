"""What a benchmark row keeps of a run's reasoning: the id path, the steps' notes, the restatement."""

from __future__ import annotations

from typing import Any


def reasoning_trace(result: Any) -> dict[str, Any]:
    """``path`` (ids per step j >= 1), ``notes`` (second opinions, repairs) and ``restated`` ("" if none)."""
    reports = [s.report or {} for s in result.steps]
    return {
        "path": [s.ids for s in result.steps[1:]],
        "notes": [n for r in reports for n in r.get("notes", [])],
        "restated": next((r["restated"] for r in reports if r.get("restated")), ""),
    }

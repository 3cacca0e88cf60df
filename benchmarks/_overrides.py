"""The benchmarks' ``--set KEY=VALUE`` setting overrides, read one way for every script."""

from __future__ import annotations

import json
from collections.abc import Iterable


def setting_overrides(items: Iterable[str], *, section: str | None = None) -> dict[str, object]:
    """``{"perception.decoder": "fast", ...}`` from ``["perception.decoder=fast", ...]``.

    A value is read as JSON when it is JSON (``16``, ``true``, ``[1, 2]``), else kept as text
    (``fast``). With ``section``, a key without it gets it (``decoder=fast`` -> ``perception.decoder``).
    """
    overrides: dict[str, object] = {}
    for item in items:
        key, _, text = item.partition("=")
        if section and not key.startswith(f"{section}."):
            key = f"{section}.{key}"
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides

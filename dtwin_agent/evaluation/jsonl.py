"""Append-only JSON Lines files that survive a killed process: the store of results and twin shards.

Each record is one line written with one ``write`` + ``flush`` + ``fsync``, so a record on disk is
complete or absent except for the last line of a killed writer, which :func:`read_jsonl` cuts off
(``repair=True``) so the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dtwin_agent.errors import InputError


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars / arrays, paths and pydantic models."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return str(obj)


def dumps(record: Mapping[str, Any]) -> str:
    """One compact JSON line (no newline)."""
    return json.dumps(record, ensure_ascii=False, default=json_default, separators=(",", ":"))


def iter_lines(path: str | Path, *, repair: bool = False) -> Iterator[tuple[int, int, str]]:
    """``(line number, byte offset, text)`` of each complete, non-blank line of a JSONL file.

    Args:
        path: the file; a missing file yields nothing.
        repair: cut off a half-written last line (no trailing newline) so appends stay valid;
            without it the half line is only skipped.
    """
    path = Path(path)
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with path.open("r+b") as fh:
                fh.truncate(cut)
        data = data[:cut]
    offset = 0
    for lineno, raw in enumerate(data.split(b"\n")[:-1], 1):
        if raw.strip():
            yield lineno, offset, raw.decode("utf-8")
        offset += len(raw) + 1


def read_jsonl(path: str | Path, key: str, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Read a JSONL file into ``record[key] -> record`` (a later line for the same key wins).

    Raises:
        InputError: if a complete line is not a JSON object holding ``key``.
    """
    out: dict[str, dict[str, Any]] = {}
    for lineno, _, line in iter_lines(path, repair=repair):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from exc
        if not isinstance(rec, dict) or key not in rec:
            raise InputError(f"{path}:{lineno}: a line needs a {key!r}")
        out[str(rec[key])] = rec
    return out


class JsonlWriter:
    """Appends records as JSON lines, one write + flush + fsync each; thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record durably."""
        line = dumps(record) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

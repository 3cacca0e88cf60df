"""Output files, written atomically (temp file in the same folder, then rename).

A failed run leaves no half-written file behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dtwin_agent.outputs.overlay import draw_objects
from dtwin_agent.twin import DigitalTwin


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically."""
    text = data if isinstance(data, str) else json.dumps(data, indent=2, ensure_ascii=False)
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as PNG atomically (2-D arrays become mode L, H x W x 3 become RGB)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def twin_overlay(rgb: np.ndarray, twin: DigitalTwin, highlight: set[int] | None = None) -> np.ndarray:
    """The image with the twin's objects outlined, filled and numbered (``highlight``: only those)."""
    return draw_objects(rgb, [(o.id, o.decode_mask()) for o in twin.objects], highlight=highlight)


def write_twin_outputs(out_dir: str | Path, twin: DigitalTwin, rgb: np.ndarray) -> dict[str, Path]:
    """``twin.json`` and ``overlay.png`` (every object numbered)."""
    out = Path(out_dir)
    return {
        "twin": write_json(out / "twin.json", twin.model_dump_json(indent=2)),
        "overlay": write_png(out / "overlay.png", twin_overlay(rgb, twin)),
    }


def write_segment_outputs(out_dir: str | Path, result: Any, rgb: np.ndarray) -> dict[str, Path]:
    """``mask.png`` (L mode, 0/255, original size), ``overlay.png`` (chosen objects) and ``result.json``."""
    out = Path(out_dir)
    mask = result.mask.astype(np.uint8) * 255
    return {
        "mask": write_png(out / "mask.png", mask),
        "overlay": write_png(out / "overlay.png", twin_overlay(rgb, result.twin, highlight=set(result.ids))),
        "result": write_json(out / "result.json", result.summary()),
    }


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

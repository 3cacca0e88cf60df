"""Output files, written atomically (temp file in the same folder, then rename).

A failed run leaves no half-written file behind. ``write_twin_outputs`` / ``write_segment_outputs``
write what ``dtwin twin`` / ``dtwin segment`` promise (DESIGN.md's CLI contract).
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

from dtwin_agent.outputs.overlay import twin_overlay
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

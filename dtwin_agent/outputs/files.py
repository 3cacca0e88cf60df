"""Output files, written atomically (temp file in the same folder, then rename), and output folders checked.

- :func:`atomic_write_bytes` / :func:`write_json` / :func:`write_png`: one file; a failed write
  leaves the old file (or none), never a half file.
- :func:`write_file_set`: several files that belong together (``mask.png``, ``overlay.png`` and
  ``result.json`` of one run) as one unit: every file is staged first; only then is the old set
  removed (its last file, the one that marks a complete set, first) and the new set renamed in (the
  marking file last). A failure while staging leaves the old set whole; the folder never holds a new
  ``mask.png`` beside an older run's ``overlay.png`` or ``result.json``, and a ``result.json`` (or
  ``twin.json``) is there only beside the files of its own run.
- :func:`check_out_dir`: an output folder is checked before any work (an existing file, an
  unwritable folder, a path under a file, a NUL byte), so a bad ``--out`` costs nothing.

``write_twin_outputs`` / ``write_segment_outputs`` write what ``dtwin twin`` / ``dtwin segment``
promise (DESIGN.md's CLI contract); chat turns and the tool use the latter.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dtwin_agent.errors import InputError
from dtwin_agent.outputs.overlay import twin_overlay
from dtwin_agent.twin import DigitalTwin


def _create_beside(path: Path) -> tuple[int, Path]:
    """Create a new, uniquely named temporary file beside ``path``; returns ``(fd, its path)``.

    Unlike ``tempfile.mkstemp`` (always 0600) the file is created with mode 0666 less the umask,
    so the finished file gets the mode any other new file of the user gets.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to a synced temporary file beside ``path``; returns the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    tmp = _stage(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_file_set(out_dir: str | Path, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Write ``files`` (name -> bytes, in order; the last marks a complete set) into ``out_dir`` as one unit.

    Returns:
        name -> written path.

    Raises:
        OSError: when a file cannot be staged (the old set is then untouched) or renamed.

    """
    out = Path(out_dir)
    staged: dict[str, Path] = {}
    try:
        for name, data in files.items():
            staged[name] = _stage(out / name, data)
        names = list(files)
        for name in reversed(names):  # the marking file first: no complete-looking mix at any moment
            (out / name).unlink(missing_ok=True)
        for name in names:
            os.replace(staged[name], out / name)
            del staged[name]
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    _sync_dir(out)
    return {name: out / name for name in files}


def json_bytes(data: Any) -> bytes:
    """JSON text (indented, UTF-8) of ``data``; a string is taken as JSON text already."""
    text = data if isinstance(data, str) else json.dumps(data, indent=2, ensure_ascii=False)
    return text.encode("utf-8")


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of a uint8 array (2-D arrays become mode L, H x W x 3 become RGB)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically."""
    return atomic_write_bytes(path, json_bytes(data))


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as PNG atomically (2-D arrays become mode L, H x W x 3 become RGB)."""
    return atomic_write_bytes(path, png_bytes(array))


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be (or is) a writable folder; nothing is created.

    The nearest existing folder is probed with a temporary file (``os.access`` is wrong for root
    and on some network file systems), which is removed at once.

    Raises:
        InputError: naming ``option`` and the problem (exit code 2 in the CLI).

    """
    text = os.fspath(path)
    if "\x00" in text:
        raise InputError(f"{option} {text!r} holds a NUL byte")
    if not text.strip():
        raise InputError(f"{option} is empty: name an output folder")
    target = Path(text).expanduser()
    if target.exists() and not target.is_dir():
        raise InputError(f"{option} {target} is a file, not a folder; choose a folder")
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} {target} cannot be created: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dtwin-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = "is not writable" if existing == target else f"cannot be created in {existing}"
        raise InputError(f"{option} {target} {what} ({exc.strerror or exc})") from exc
    return target


def write_twin_outputs(out_dir: str | Path, twin: DigitalTwin, rgb: np.ndarray) -> dict[str, Path]:
    """``overlay.png`` (every object numbered) and ``twin.json``, as one unit (``twin.json`` last)."""
    written = write_file_set(
        out_dir,
        {
            "overlay.png": png_bytes(twin_overlay(rgb, twin)),
            "twin.json": json_bytes(twin.model_dump_json(indent=2)),
        },
    )
    return {"twin": written["twin.json"], "overlay": written["overlay.png"]}


def write_segment_outputs(out_dir: str | Path, result: Any, rgb: np.ndarray) -> dict[str, Path]:
    """``mask.png`` (L mode, 0/255, original size), ``overlay.png`` (chosen objects) and ``result.json``.

    Written as one unit by :func:`write_file_set` (``result.json`` last).
    """
    written = write_file_set(
        out_dir,
        {
            "mask.png": png_bytes(result.mask.astype(np.uint8) * 255),
            "overlay.png": png_bytes(twin_overlay(rgb, result.twin, highlight=set(result.ids))),
            "result.json": json_bytes(result.summary()),
        },
    )
    return {"mask": written["mask.png"], "overlay": written["overlay.png"], "result": written["result.json"]}

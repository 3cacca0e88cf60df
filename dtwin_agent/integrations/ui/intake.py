"""Images entering the web page: uploads stored in the session's folder, picks confined to the roots.

Both go through the checks the command line and the tool make: a file size limit (the setting
``access.max_file_mb``), then :func:`~dtwin_agent.images.load_image` (unreadable, truncated,
non-image or too large to decode safely files are refused with an
:class:`~dtwin_agent.errors.ImageError`).

- :func:`store_upload` moves an uploaded file into the session's folder under a name made here
  (never the name the browser sent), so no upload lands outside it.
- :func:`pick_image` resolves a path (symbolic links followed) and refuses any outside the allowed
  roots (:func:`~dtwin_agent.images.confine`, the rule of the tool, the MCP server and the LangGraph
  server graphs).
- :func:`images_under` lists the image files under the roots for the page's picker.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from dtwin_agent.errors import ImageError, InputError
from dtwin_agent.images import confine, load_image

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""File name endings the picker lists (any file may still be opened by path if it decodes)."""
UPLOAD_STEM = "upload"
"""Stored uploads are ``<session folder>/upload-<name>.<format>``."""

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def check_file_size(path: Path, max_bytes: int) -> None:
    """Refuse a file over ``max_bytes``.

    Raises:
        ImageError: over the limit, or not a readable file.

    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{path.name} cannot be read ({exc.strerror or exc})") from exc
    if size > max_bytes:
        raise ImageError(
            f"{path.name} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit; "
            "use a smaller image"
        )


def stored_name(original: str, image_format: str | None) -> str:
    """The file name an upload is stored under: ``upload-<safe stem>.<format>``.

    Only letters, digits, ``_`` and ``-`` of the browser's file name are kept (at most 40), and
    the suffix comes from the decoded format, so no name can point outside the folder.
    """
    stem = _SAFE.sub("_", Path(original).stem)[:40].strip("_") or "image"
    suffix = {"JPEG": "jpg", "TIFF": "tif"}.get(image_format or "", (image_format or "png").lower())
    return f"{UPLOAD_STEM}-{stem}.{suffix}"


def store_upload(upload: str | Path, folder: Path, *, max_bytes: int, original_name: str = "") -> Path:
    """Check an uploaded file and move it into ``folder`` (a session's); returns the stored path.

    Args:
        upload: the file the web server received (in its temporary folder).
        folder: the session's folder (created when missing).
        max_bytes: larger files are refused.
        original_name: the name the browser sent (only its safe characters are kept).

    Raises:
        ImageError: too large, unreadable, or not an image. The received file is removed either way.

    """
    source = Path(upload)
    try:
        check_file_size(source, max_bytes)
        load_image(source)  # the type checks: decodes, or raises ImageError naming the problem
        try:
            with Image.open(source) as img:
                image_format = img.format
        except OSError as exc:  # load_image decoded it; PIL may still refuse to reopen it
            raise ImageError(f"{source.name} cannot be read again ({exc})") from exc
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / stored_name(original_name or source.name, image_format)
        tmp = folder / f".{target.name}.part"
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return target
    finally:
        source.unlink(missing_ok=True)


def pick_image(path: str, roots: Sequence[Path], *, max_bytes: int) -> Path:
    """Resolve a picked image path inside the allowed ``roots`` and check it is an image.

    Relative paths are looked up under each root in turn; symbolic links are followed.

    Raises:
        InputError: no roots (picking is off; uploads still work).
        ImageError: empty, outside the roots, missing, not a file, over the size limit, or not a
            readable image.

    """
    if not roots:
        raise InputError("no folders to pick images from: start dtwin ui with --root DIR (uploads work)")
    resolved = confine(path, list(roots), max_bytes)
    load_image(resolved)
    return resolved


def inside(path: str | Path, folders: Sequence[Path]) -> bool:
    """Whether ``path`` resolves (symbolic links followed) inside one of ``folders``."""
    try:
        resolved = Path(path).resolve()
        return any(resolved.is_relative_to(Path(f).resolve()) for f in folders)
    except (OSError, ValueError):
        return False


def images_under(roots: Sequence[Path], *, limit: int = 500) -> list[Path]:
    """Image files (by :data:`IMAGE_SUFFIXES`) under ``roots``, sorted, at most ``limit``.

    Hidden files and folders are skipped; folders reached through symbolic links are not entered,
    and linked files resolving outside the roots are left out.
    """
    found: list[Path] = []
    resolved_roots = [Path(r).resolve() for r in roots]
    for root in resolved_roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder) / name
                if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if inside(path, resolved_roots):
                    found.append(path)
                if len(found) >= limit:
                    return found
    return found

"""The LangChain tool other agents call: ``DTwinSegmentTool``.

Content for the calling model is one short text naming the chosen objects and why; the artifact
carries the heavy data (ids, mask RLE, file paths, twin id). Image paths are confined to allowed
roots (``allowed_roots``, else the setting ``access.image_roots``; with none, no image is read);
paths outside them (the same answer whether or not they exist), symlinks escaping them and files
over the size limit are refused with a :class:`ToolException` the agent can act on. With a
``session_id`` the query is one turn of a chat session (:mod:`dtwin_agent.integrations.chat`), so a
follow-up ("only the one on the left") is read against the earlier answers.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.errors import DTwinError, InputError, ReasoningFailed, SessionError

logger = logging.getLogger(__name__)


class SegmentArgs(BaseModel):
    """Arguments the calling model fills in."""

    image_path: str = Field(
        description="Path of the image file to segment (PNG, JPEG...), absolute or relative to the "
        "allowed folder."
    )
    query: str = Field(
        description="What to segment, in plain words; may be implicit, e.g. 'what would you use to cut "
        "the bread?'"
    )
    session_id: str | None = Field(
        default=None,
        description="Optional conversation id. Reuse the same id for follow-ups about the same image "
        "('only the one on the left', 'add the other one'); omit it for a one-off question.",
    )


def confine_path(path: str, roots: list[Path], max_bytes: int) -> Path:
    """:func:`dtwin_agent.images.confine` with its errors as :class:`ToolException` (same text).

    Raises:
        ToolException: no roots, an empty or unusable path, outside the roots (symlinks included,
            the same answer whether or not the path exists), missing, not a file, or too large.

    """
    from dtwin_agent.images import confine

    try:
        return confine(path, roots, max_bytes)
    except InputError as exc:
        raise ToolException(str(exc)) from exc


def tool_exception(exc: BaseException, action: str) -> ToolException:
    """The :class:`ToolException` (with a hint the calling agent can act on) for any failure of ``action``.

    Expected failures (the project's errors) are logged as warnings, anything else with its
    traceback as an error: out of memory, SQLite and OpenCV errors, bugs.
    """
    if isinstance(exc, ToolException):
        return exc
    if isinstance(exc, DTwinError):
        logger.warning("%s failed: %s", action, exc)
        if isinstance(exc, InputError):
            return ToolException(f"bad input: {exc}")
        if isinstance(exc, SessionError):
            return ToolException(str(exc))
        if isinstance(exc, ReasoningFailed):
            return ToolException(
                f"{exc}. Try again (the model may answer differently), ask more simply or more "
                "concretely, or configure a stronger reasoning model (settings models.llm)"
            )
        return ToolException(f"{action} failed: {exc}; try again later or with another image")
    logger.error("%s failed unexpectedly", action, exc_info=exc)
    if isinstance(exc, MemoryError):
        hint = (
            "ran out of memory; try a smaller image, or lower perception.max_image_side or "
            "perception.points_per_side"
        )
    elif isinstance(exc, sqlite3.Error):
        hint = (
            f"a database error ({exc}); try again, and if it persists run `dtwin cache clear` "
            "or use another session_id"
        )
    elif type(exc).__module__ == "cv2":
        hint = (
            f"image processing failed (OpenCV: {str(exc).strip().splitlines()[-1:] or ''}); try another image"
        )
    else:
        hint = f"an internal error ({type(exc).__name__}: {exc}); try again or with another image"
    return ToolException(f"{action} failed: {hint}")


def twin_id(twin: Any) -> str:
    """A short id of a twin: image hash prefix and granularity."""
    return f"{twin.image.sha256[:16]}:{twin.granularity}"


class DTwinSegmentTool(BaseTool):
    """Segment what a query asks for in an image, by reasoning over its digital twin.

    Attributes:
        settings: the settings of every run (default: resolved from ``dtwin.toml`` and ``DTWIN_*``).
        cache: a twin cache (:class:`~dtwin_agent.cache.SqliteCache`) to use instead of the one
            ``settings.cache`` names.
        proposer: an already-built mask proposer (keeps model weights loaded across calls).
        allowed_roots: image paths must resolve inside one of these folders (default: the setting
            ``access.image_roots``; none at all: every path is refused with a hint).
        max_file_mb: larger image files are refused (default: the setting ``access.max_file_mb``).
        output_dir: where mask/overlay files go (default ``<cache.dir>/results``).
        segmenter: replaces :func:`dtwin_agent.api.segment` (tests).

    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "dtwin_segment"
    description: str = (
        "Find and segment the objects in an image that answer a question or instruction, even an implicit "
        "one ('what would you use to cut the bread?'). Returns which numbered objects were chosen and why; "
        "the mask itself is returned as an artifact. Input: an image file path and the query; pass a "
        "session_id to ask follow-up questions about the same image."
    )
    args_schema: type[BaseModel] = SegmentArgs
    response_format: str = "content_and_artifact"
    handle_tool_error: bool = True

    settings: Settings = Field(default_factory=lambda: resolve_settings())
    cache: Any = None
    proposer: Any = None
    allowed_roots: list[Path] | None = None
    max_file_mb: float | None = None
    output_dir: Path | None = None
    segmenter: Callable[..., Any] | None = None

    @property
    def roots(self) -> list[Path]:
        """The folders images are read from: ``allowed_roots``, else ``settings.access.image_roots``."""
        if self.allowed_roots is not None:
            return list(self.allowed_roots)
        return [Path(root) for root in self.settings.access.image_roots]

    def check_path(self, image_path: str) -> Path:
        """The confined, resolved image path (see :func:`confine_path`)."""
        limit = self.max_file_mb if self.max_file_mb is not None else self.settings.access.max_file_mb
        return confine_path(image_path, self.roots, int(limit * 2**20))

    def _run(
        self, image_path: str, query: str, session_id: str | None = None, **_: Any
    ) -> tuple[str, dict[str, Any]]:
        return self.segment_image(image_path, query, session_id)

    def segment_image(
        self, image_path: str, query: str, session_id: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Run one segmentation (or one chat turn) and return ``(content, artifact)``.

        Raises:
            ToolException: for every failure, with a hint: bad path, empty query, bad session id,
                unreadable image, a busy or damaged session, a provider failure, and unexpected ones
                (out of memory, SQLite, OpenCV, bugs: the cause is logged on this module's logger).

        """
        if not query or not query.strip():
            raise ToolException("the query is empty; say what to segment")
        try:
            path = self.check_path(image_path)
            if session_id:  # "" (what models send for "none") is a one-off question
                return self._session_turn(path, query, session_id)
            return self._segment(path, query)
        except Exception as exc:  # noqa: BLE001 - every failure reaches the agent as a ToolException
            raise tool_exception(exc, "segmentation") from exc

    def describe_twin(self, image_path: str) -> dict[str, Any]:
        """The twin's objects (id, semantic, spatial text, bbox, area %, parent) of an image, without pixels.

        Raises:
            ToolException: as :meth:`segment_image`.

        """
        from dtwin_agent.api import build_twin

        kwargs = {"cache": self.cache} if self.cache is not None else {}
        try:
            path = self.check_path(image_path)
            twin = build_twin(path, settings=self.settings, proposer=self.proposer, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure reaches the agent as a ToolException
            raise tool_exception(exc, "building the twin") from exc
        return {
            "twin_id": twin_id(twin),
            "granularity": twin.granularity,
            "summary": twin.summary,
            "width": twin.image.width,
            "height": twin.image.height,
            "objects": [
                {
                    "id": o.id,
                    "semantic": o.semantic,
                    "spatial": o.spatial,
                    "bbox": list(o.bbox),
                    "area_pct": o.area_pct,
                    "parent": o.parent,
                }
                for o in twin.objects
            ],
        }

    def _segment(self, path: Path, query: str) -> tuple[str, dict[str, Any]]:
        from dtwin_agent import masks as mask_ops
        from dtwin_agent.images import load_image
        from dtwin_agent.outputs.files import write_segment_outputs

        if self.segmenter is not None:
            result = self.segmenter(path, query, settings=self.settings)
        else:
            from dtwin_agent.api import segment

            kwargs = {"cache": self.cache} if self.cache is not None else {}
            result = segment(path, query, settings=self.settings, proposer=self.proposer, **kwargs)
        run_id = hashlib.sha256(
            f"{result.twin.image.sha256}|{result.twin.granularity}|{query}".encode()
        ).hexdigest()
        base = self.output_dir or Path(self.settings.cache.dir) / "results"
        paths = write_segment_outputs(base / run_id[:16], result, load_image(path).rgb)
        if not result.ok:
            raise ReasoningFailed(result.error)
        artifact = {
            "ids": list(result.ids),
            "mask_rle": mask_ops.encode(result.mask).model_dump(mode="json"),
            "files": {k: str(v) for k, v in paths.items()},
            "twin_id": twin_id(result.twin),
            "session_id": None,
            "message": result.message,
        }
        return result.answer(), artifact

    def _session_turn(self, path: Path, query: str, session_id: str) -> tuple[str, dict[str, Any]]:
        from dtwin_agent.integrations.chat import ChatSession

        # turns of one session_id are serialised (threads and processes) by the session's lock

        with ChatSession(path, session_id=session_id, settings=self.settings, proposer=self.proposer) as chat:
            if self.cache is not None:
                chat.context.cache = self.cache
            turn = chat.ask(query)
            twin = chat.twin
        if not turn.get("ok", True):
            raise ReasoningFailed(turn.get("error", ""))
        artifact = {
            "ids": list(turn["ids"]),
            "mask_rle": turn["mask"],
            "files": dict(turn["files"]),
            "twin_id": twin_id(twin),
            "session_id": session_id,
            "turn": turn["turn"],
            "message": turn["message"],
        }
        return turn["answer"], artifact

"""The LangChain tool other agents call: ``DTwinSegmentTool``.

Content for the calling model is one short text naming the chosen objects and why; the artifact
carries the heavy data (ids, mask RLE, file paths, twin id). Image paths are confined to allowed
roots (default: the working directory); paths outside them, symlinks escaping them and files over
the size limit are refused with a :class:`ToolException` the agent can act on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from dtwin_agent.config import Settings
from dtwin_agent.errors import DTwinError, InputError


class SegmentArgs(BaseModel):
    """Arguments the calling model fills in."""

    image_path: str = Field(description="Path of the image file to segment (inside the allowed folders).")
    query: str = Field(
        description="What to segment, in plain words; may be implicit, e.g. 'what would you use to cut the bread?'"
    )
    session_id: str | None = Field(
        default=None, description="Optional id to group follow-up questions about the same image."
    )


def confine_path(path: str, roots: list[Path], max_bytes: int) -> Path:
    """Resolve ``path`` (following symlinks) and check it lies inside one of ``roots``.

    Raises:
        ToolException: outside the roots (symlinks included), missing, not a file, or too large.
    """
    raw = Path(path).expanduser()
    candidates = [raw] if raw.is_absolute() else [root / raw for root in roots] + [Path.cwd() / raw]
    resolved_roots = [root.resolve() for root in roots]
    for candidate in candidates:
        resolved = candidate.resolve()
        if not any(resolved.is_relative_to(root) for root in resolved_roots):
            continue
        if not resolved.exists():
            continue
        if not resolved.is_file():
            raise ToolException(f"{path} is not a file; pass the path of an image file")
        size = resolved.stat().st_size
        if size > max_bytes:
            raise ToolException(
                f"{path} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit; use a smaller image"
            )
        return resolved
    allowed = ", ".join(str(r) for r in resolved_roots)
    if any(c.resolve().exists() for c in candidates):
        raise ToolException(f"{path} is outside the allowed folders ({allowed}); use an image inside them")
    raise ToolException(f"no image at {path}; allowed folders: {allowed}")


class DTwinSegmentTool(BaseTool):
    """Segment what a query asks for in an image, by reasoning over its digital twin."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "dtwin_segment"
    description: str = (
        "Find and segment the objects in an image that answer a question or instruction, even an implicit "
        "one ('what would you use to cut the bread?'). Returns which numbered objects were chosen and why; "
        "the mask itself is returned as an artifact. Input: an image file path and the query."
    )
    args_schema: type[BaseModel] = SegmentArgs
    response_format: str = "content_and_artifact"
    handle_tool_error: bool = True

    settings: Settings = Field(default_factory=Settings)
    cache: Any = None
    allowed_roots: list[Path] = Field(default_factory=lambda: [Path.cwd()])
    max_file_mb: float = 50.0
    output_dir: Path | None = Field(default=None, description="where mask/overlay files go (default: cache dir)")
    segmenter: Callable[..., Any] | None = Field(default=None, description="injectable backend (default: api.segment)")

    def _run(self, image_path: str, query: str, session_id: str | None = None, **_: Any) -> tuple[str, dict[str, Any]]:
        from dtwin_agent.imageio import load_image
        from dtwin_agent.outputs import write_segment_outputs

        if not query or not query.strip():
            raise ToolException("the query is empty; say what to segment")
        path = confine_path(image_path, self.allowed_roots, int(self.max_file_mb * 2**20))
        segment = self.segmenter
        if segment is None:
            from dtwin_agent.api import segment
        try:
            result = segment(path, query, settings=self.settings)
        except InputError as exc:
            raise ToolException(f"bad input: {exc}") from exc
        except DTwinError as exc:
            raise ToolException(f"segmentation failed: {exc}; try again later or with another image") from exc
        run_id = hashlib.sha256(f"{result.twin.image.sha256}|{query}".encode()).hexdigest()[:16]
        base = self.output_dir or Path(self.settings.cache.dir) / "results"
        paths = write_segment_outputs(base / run_id, result, load_image(path).rgb)
        content = self._content(result)
        from dtwin_agent import masks as mask_ops

        artifact = {
            "ids": result.ids,
            "mask_rle": mask_ops.encode(result.mask).model_dump(),
            "files": {k: str(v) for k, v in paths.items()},
            "twin_id": f"{result.twin.image.sha256[:16]}:{result.twin.granularity}",
            "session_id": session_id,
            "message": result.message,
        }
        return content, artifact

    @staticmethod
    def _content(result: Any) -> str:
        if not result.ids:
            return f"No object in the image answers the query ({result.message})."
        last = result.steps[-1]["objects"] if result.steps else {}
        parts = []
        for object_id in result.ids:
            entry = last.get(str(object_id), {})
            semantic = entry.get("semantic") or result.twin.get(object_id).semantic
            why = entry.get("reasoning", "")
            parts.append(f"#{object_id} {semantic}" + (f" ({why})" if why else ""))
        return f"Chose {len(result.ids)} object(s): " + "; ".join(parts)

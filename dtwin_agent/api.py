"""The Python API: :func:`build_twin` and :func:`segment`.

Both accept an image as a path, a PIL image or an ``H x W x 3`` uint8 array and run the graph of
:mod:`dtwin_agent.graph`. In-memory images are written once to the cache folder as PNG (named by
their pixel hash) because the graph state carries image references, never pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from dtwin_agent import masks as mask_ops
from dtwin_agent.cache import open_cache
from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.errors import InputError
from dtwin_agent.graph import build_graph
from dtwin_agent.graph.context import Context
from dtwin_agent.images import ImageLike, load_image
from dtwin_agent.twin import RLE, DigitalTwin

ProgressFn = Callable[[str, dict[str, Any]], None]


class SegmentationResult(BaseModel):
    """What :func:`segment` returns.

    Attributes:
        mask: bool ``H x W`` at the original image size (all False for an empty answer).
        ids: the chosen object ids.
        twin: the digital twin D the reasoner saw.
        steps: the reasoning path D^(0..K): per step the kept ids and each object's semantic and reasoning.
        usage: per stage model calls, input/output tokens and seconds.
        message: one line saying what was chosen, or that the answer is empty and why.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    mask: np.ndarray
    ids: list[int]
    twin: DigitalTwin
    steps: list[dict[str, Any]] = Field(default_factory=list)
    usage: dict[str, Any] = Field(default_factory=dict)
    granularity: str = "object"
    granularity_reason: str = ""
    stop_reason: str = ""
    message: str = ""
    warnings: list[str] = Field(default_factory=list)
    components: dict[str, str] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no object was chosen."""
        return not self.ids

    def summary(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-serialisable (what ``result.json`` holds)."""
        return {
            "ids": self.ids,
            "message": self.message,
            "granularity": self.granularity,
            "granularity_reason": self.granularity_reason,
            "stop_reason": self.stop_reason,
            "steps": self.steps,
            "usage": self.usage,
            "warnings": self.warnings,
            "components": self.components,
            "image": self.twin.image.model_dump(),
            "objects": [
                {"id": o.id, "semantic": o.semantic, "spatial": o.spatial}
                for o in self.twin.objects
                if o.id in self.ids
            ],
        }


def _settings(settings: Settings | Mapping[str, Any] | None) -> Settings:
    if isinstance(settings, Settings):
        return settings
    return resolve_settings(overrides=settings or {})


def image_reference(image: ImageLike, settings: Settings) -> str:
    """A file path for the graph state: the path itself, or a PNG written to the cache folder.

    Raises:
        ImageError: if the image cannot be read (checked here, before any model is called).
    """
    loaded = load_image(image)
    if isinstance(image, (str, Path)):
        return str(Path(image).resolve())
    folder = Path(settings.cache.dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{loaded.sha256}.png"
    if not path.exists():
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(loaded.rgb).save(tmp)
        tmp.replace(path)
    return str(path)


def check_query(query: str | None, settings: Settings, *, required: bool) -> str:
    """Validate the query: non-empty when required, at most ``reasoning.max_query_chars`` long.

    Raises:
        InputError: naming the problem.
    """
    query = (query or "").strip()
    if required and not query:
        raise InputError("query is empty: say what to segment")
    limit = settings.reasoning.max_query_chars
    if len(query) > limit:
        raise InputError(
            f"query is {len(query)} characters long; the limit is {limit} (setting reasoning.max_query_chars)"
        )
    return query


def run_graph(
    inputs: dict[str, Any], context: Context, *, reasoning: bool, on_progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Run the graph, calling ``on_progress(node, update)`` after each node; returns the final state."""
    graph = build_graph(reasoning=reasoning).compile()
    limit = 10 + 2 * context.settings.reasoning.max_refine_steps
    final: dict[str, Any] = {}
    for mode, chunk in graph.stream(
        inputs, context=context, stream_mode=["updates", "values"], config={"recursion_limit": limit}
    ):
        if mode == "values":
            final = chunk
        elif on_progress is not None:
            for node, update in chunk.items():
                on_progress(node, update or {})
    return final


def _context(settings: Settings, proposer: Any, cache: Any) -> Context:
    return Context(
        settings=settings, proposer=proposer, cache=cache if cache is not None else open_cache(settings)
    )


def build_twin(
    image: ImageLike,
    query: str | None = None,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    proposer: Any = None,
    cache: Any = None,
    on_progress: ProgressFn | None = None,
) -> DigitalTwin:
    """Build the digital twin D of an image (paper 3.1-3.2); the query guides granularity and labels.

    ``proposer`` (an already-built mask proposer) and ``cache`` (a :class:`~dtwin_agent.cache.SqliteCache`;
    default: the one ``settings.cache`` names) are injectable; ``on_progress(node, update)`` is
    called after each node.
    """
    resolved = _settings(settings)
    query = check_query(query, resolved, required=False)
    inputs = {"image": image_reference(image, resolved), "query": query}
    state = run_graph(inputs, _context(resolved, proposer, cache), reasoning=False, on_progress=on_progress)
    return DigitalTwin.model_validate(state["twin"])


def segment(
    image: ImageLike,
    query: str,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    proposer: Any = None,
    cache: Any = None,
    on_progress: ProgressFn | None = None,
) -> SegmentationResult:
    """Reasoning segmentation: build the twin, let the LLM refine it, union the chosen masks.

    Takes the same injectable ``proposer``, ``cache`` and ``on_progress`` as :func:`build_twin`.

    Raises:
        InputError: for an unreadable image or an empty or over-long query.
        ProviderError: when a model provider keeps failing after the retries.
    """
    resolved = _settings(settings)
    query = check_query(query, resolved, required=True)
    inputs = {"image": image_reference(image, resolved), "query": query}
    state = run_graph(inputs, _context(resolved, proposer, cache), reasoning=True, on_progress=on_progress)
    twin = DigitalTwin.model_validate(state["twin"])
    mask_rle = state.get("mask")
    mask = (
        mask_ops.decode(RLE.model_validate(mask_rle))
        if mask_rle
        else np.zeros((twin.image.height, twin.image.width), dtype=bool)
    )
    return SegmentationResult(
        mask=mask,
        ids=list(state.get("ids", [])),
        twin=twin,
        steps=list(state.get("steps", [])),
        usage=dict(state.get("usage", {})),
        granularity=state.get("granularity", twin.granularity),
        granularity_reason=state.get("granularity_reason", ""),
        stop_reason=state.get("stop_reason", ""),
        message=state.get("message", ""),
        warnings=list(state.get("warnings", [])),
        components=dict(state.get("components", {})),
    )

"""The Python API: :func:`build_twin`, :func:`segment` and the :class:`SegmentationResult` they return.

Both accept an image as a path, a PIL image or an ``H x W x 3`` uint8 array and run the graph of
:mod:`dtwin_agent.graph`. The graph state carries image references, never pixels: an in-memory
image is written as PNG into a temporary folder that the run owns and removes when it ends
(:func:`~dtwin_agent.images.image_path`).

:meth:`SegmentationResult.from_state` is the one place a finished run becomes a result: the CLI,
the LangChain tool, chat sessions (each turn) and the MCP server all get their results from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from dtwin_agent import masks as mask_ops
from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.graph import build_graph, recursion_limit
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.state import check_query
from dtwin_agent.images import ImageLike, image_path
from dtwin_agent.progress import ProgressCallback, stream_graph
from dtwin_agent.twin import DigitalTwin, ReasoningStep


class ChosenObject(BaseModel):
    """One object of the answer, as the last reasoning step left it."""

    id: int
    semantic: str = Field(description="S_i^(K): the last step's semantic (the twin's S_i when it gave none)")
    reasoning: str = Field(default="", description="R_i^(K): why the object answers the query")
    spatial: str = Field(default="", description="T_i: where it is")


class SegmentationResult(BaseModel):
    """What :func:`segment` returns.

    Attributes:
        mask: bool ``H x W`` at the original image size (all False for an empty answer).
        ids: the chosen object ids (the last reasoning step's).
        twin: the digital twin D the reasoner saw.
        steps: the reasoning path D^(0..K) (:class:`~dtwin_agent.twin.ReasoningStep`): per step the
            kept ids and the decision, semantic and reasoning on each object.
        chosen: the chosen objects with their last semantic and reasoning.
        usage: per stage model calls, input/output tokens, retries and seconds.
        granularity: the level the twin was built at (paper Eq. 1), with ``granularity_reason``.
        stop_reason: why reasoning stopped: ``converged``, ``empty`` (nothing satisfies the query),
            ``max_steps``, ``single_shot``, ``sftdt``, ``unparseable`` (a later step's answer was
            unusable: the previous step's objects were kept) or ``failed`` (see ``error``).
        error: why the run failed, naming the model and what it answered ("" when it did not
            fail): the reasoner's first answer was unusable even after one repair request, so no
            object was chosen. ``ok`` is False then; the mask is empty.
        message: one line saying what was chosen, or that the answer is empty and why.
        warnings: what went wrong without stopping the run (unknown ids dropped, answers unusable).
        components: which proposer, labeller and models did the work.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    mask: np.ndarray
    ids: list[int]
    twin: DigitalTwin
    steps: list[ReasoningStep] = Field(default_factory=list)
    chosen: list[ChosenObject] = Field(default_factory=list)
    usage: dict[str, Any] = Field(default_factory=dict)
    granularity: str = "object"
    granularity_reason: str = ""
    stop_reason: str = ""
    error: str = ""
    message: str = ""
    warnings: list[str] = Field(default_factory=list)
    components: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SegmentationResult:
        """The result of a finished run's state (the segment graph's output, or a chat session's).

        ``ids`` are the last step's (as ``finalize`` wrote them), the mask is the decoded union RLE
        (all False when there is none), ``chosen`` holds each chosen object's last semantic and
        reasoning.
        """
        twin: DigitalTwin = state["twin"]
        steps = list(state.get("steps") or [])
        ids = list(state.get("ids") or [])
        mask_rle = state.get("mask")
        mask = (
            mask_ops.decode(mask_rle)
            if mask_rle is not None
            else np.zeros((twin.image.height, twin.image.width), dtype=bool)
        )
        decisions = steps[-1].objects if steps else {}
        chosen = []
        for object_id in ids:
            obj, decided = twin.get(object_id), decisions.get(object_id)
            chosen.append(
                ChosenObject(
                    id=object_id,
                    semantic=(decided.semantic if decided is not None and decided.semantic else obj.semantic),
                    reasoning=decided.reasoning if decided is not None else "",
                    spatial=obj.spatial,
                )
            )
        return cls(
            mask=mask,
            ids=ids,
            twin=twin,
            steps=steps,
            chosen=chosen,
            usage=dict(state.get("usage") or {}),
            granularity=state.get("granularity") or twin.granularity,
            granularity_reason=state.get("granularity_reason", ""),
            stop_reason=state.get("stop_reason", ""),
            error=state.get("error", "") or "",
            message=state.get("message", ""),
            warnings=list(state.get("warnings") or []),
            components=dict(state.get("components") or {}),
        )

    @property
    def ok(self) -> bool:
        """False when the run failed (``error`` says why): an empty mask that is no answer.

        True for every answer, the empty one included (nothing satisfies the query).
        """
        return not self.error

    @property
    def empty(self) -> bool:
        """True when no object was chosen (a failed run is empty too: check :attr:`ok`)."""
        return not self.ids

    def answer(self) -> str:
        """One line for a calling model: the chosen objects and why (in full), or why none."""
        from dtwin_agent.outputs.answer import answer_text

        if not self.ok:
            return self.message
        return answer_text(self.ids, [o.model_dump() for o in self.chosen], self.message)

    def answer_lines(self, width: int = 100) -> list[str]:
        """What was chosen and why for a person: one or two lines, shortened at a word boundary."""
        from dtwin_agent.outputs.answer import answer_lines, shorten

        if not self.ok:
            return [shorten(self.message, width)]
        return answer_lines(self.ids, [o.model_dump() for o in self.chosen], self.message, width)

    def summary(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-serialisable (what ``result.json`` holds)."""
        return {
            "ok": self.ok,
            "error": self.error,
            "ids": self.ids,
            "message": self.message,
            "granularity": self.granularity,
            "granularity_reason": self.granularity_reason,
            "stop_reason": self.stop_reason,
            "steps": [s.model_dump(mode="json") for s in self.steps],
            "usage": self.usage,
            "warnings": self.warnings,
            "components": self.components,
            "image": self.twin.image.model_dump(),
            "objects": [o.model_dump() for o in self.chosen],
        }


def _settings(settings: Settings | Mapping[str, Any] | None) -> Settings:
    if isinstance(settings, Settings):
        return settings
    return resolve_settings(overrides=settings or {})


def _context(settings: Settings, proposer: Any, cache: Any) -> Context:
    if cache is None:
        return Context(settings=settings, proposer=proposer)  # the cache settings.cache names
    return Context(settings=settings, proposer=proposer, cache=cache)


def _run_graph(
    image: ImageLike,
    query: str | None,
    settings: Settings | Mapping[str, Any] | None,
    proposer: Any,
    cache: Any,
    on_progress: ProgressCallback | None,
    *,
    reasoning: bool,
) -> dict[str, Any]:
    """Check the query, run the graph (with reasoning: the query is required), return the final state.

    Progress events go to ``on_progress``.
    """
    resolved = _settings(settings)
    query = check_query(query, resolved, required=reasoning)
    context = _context(resolved, proposer, cache)
    with image_path(image) as path:
        return stream_graph(
            build_graph(reasoning=reasoning).compile(),
            {"image": path, "query": query},
            on_progress=on_progress,
            context=context,
            config={"recursion_limit": recursion_limit(context.settings)},
        )


def build_twin(
    image: ImageLike,
    query: str | None = None,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    proposer: Any = None,
    cache: Any = None,
    on_progress: ProgressCallback | None = None,
) -> DigitalTwin:
    """Build the digital twin D of an image (paper 3.1-3.2); the query guides granularity and labels.

    ``proposer`` (an already-built mask proposer) and ``cache`` (a :class:`~dtwin_agent.cache.SqliteCache`;
    default: the one ``settings.cache`` names) are injectable; ``on_progress`` is called with every
    :class:`~dtwin_agent.progress.ProgressEvent` (stage starts and ends, proposal batches, labels,
    refinement steps, local LLM tokens): pass a :class:`~dtwin_agent.outputs.progress.ProgressDisplay`
    to show them.

    Raises:
        InputError: for an unreadable image or an over-long query.
        ProviderError: when a model provider keeps failing after the retries.
    """
    state = _run_graph(image, query, settings, proposer, cache, on_progress, reasoning=False)
    return state["twin"]


def segment(
    image: ImageLike,
    query: str,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    proposer: Any = None,
    cache: Any = None,
    on_progress: ProgressCallback | None = None,
) -> SegmentationResult:
    """Reasoning segmentation: build the twin, let the reasoner refine it, union the chosen masks.

    Takes the same injectable ``proposer``, ``cache`` and ``on_progress`` as :func:`build_twin`.

    Raises:
        InputError: for an unreadable image or an empty or over-long query.
        ProviderError: when a model provider keeps failing after the retries.
    """
    state = _run_graph(image, query, settings, proposer, cache, on_progress, reasoning=True)
    return SegmentationResult.from_state(state)

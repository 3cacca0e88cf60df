"""Graph state: narrow inputs, the full working state and the outputs (LangGraph templates' shape).

The state carries image references, RLEs, ids, text and the central types themselves: the twin as
a :class:`~dtwin_agent.twin.DigitalTwin` and the reasoning path as a list of
:class:`~dtwin_agent.twin.ReasoningStep`, validated once where they enter (assembly in
``build_spatial``, a cache hit in ``lookup_twin``, a checkpoint read by the serializer below), never
dense arrays or base64 images, so a run checkpoints cheaply and replays exactly.

Checkpointers store pydantic values with LangGraph's ``JsonPlusSerializer`` (msgpack: module, class
name and ``model_dump()``, rebuilt by calling the class on load). langgraph-checkpoint 4 rebuilds
types outside its allowlist with a warning by default and refuses them under
``LANGGRAPH_STRICT_MSGPACK=true`` (compiled graphs then allow the types their state schemas name);
:func:`checkpoint_serializer` allows this package's state types explicitly, so sessions read back
the same typed values either way.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from dtwin_agent.errors import InputError
from dtwin_agent.llm.usage import merge_usage
from dtwin_agent.twin import (
    RLE,
    DigitalTwin,
    ImageInfo,
    ObjectDecision,
    ReasoningStep,
    Relation,
    TwinObject,
)

if TYPE_CHECKING:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from dtwin_agent.config import Settings


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys win."""
    return {**(left or {}), **(right or {})}


class ProposedMask(BaseModel):
    """One numbered mask of the proposer at the original image size, before labels and geometry."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(ge=1)
    mask: RLE
    predicted_iou: float | None = None
    stability: float | None = None
    parent: int | None = Field(default=None, ge=1, description="hierarchy twins: the id of its object")


class InputState(TypedDict):
    """What a caller gives: an image reference (a file path) and the query."""

    image: str
    query: str


class ReasoningInput(TypedDict, total=False):
    """What the reasoning graph (``build_graph(perception=False)``) reads: a built twin and the query.

    ``twin`` is a :class:`DigitalTwin` (validate JSON with ``DigitalTwin.model_validate_json`` first).
    """

    query: str
    dialogue: str
    twin: DigitalTwin


class State(InputState, total=False):
    """The working state of one run."""

    dialogue: str  # earlier turns of a chat session, shown to the reasoner beside the query
    image_sha256: str
    width: int
    height: int
    source: str
    granularity: str
    granularity_reason: str
    twin_key: str  # cache key of this image's twin
    twin_from_cache: bool  # set by lookup_twin: proposal and labelling are skipped
    proposals: list[ProposedMask]
    semantics: dict[str, str]  # id -> S_i
    twin: DigitalTwin
    steps: list[ReasoningStep]  # the reasoning path D^(0..K)
    stop_reason: str
    error: str  # why the run failed ("" when it did not): the first reasoning answer was unusable
    ids: list[int]
    mask: RLE | None  # union of the chosen masks
    message: str
    usage: Annotated[dict[str, Any], merge_usage]
    warnings: Annotated[list[str], operator.add]
    components: Annotated[dict[str, str], merge_dicts]


class TwinOutput(TypedDict, total=False):
    """What the perception graph (``build_graph(reasoning=False)``) returns."""

    twin: DigitalTwin
    granularity: str
    granularity_reason: str
    usage: dict[str, Any]
    warnings: list[str]
    components: dict[str, str]


class ReasoningOutput(TypedDict, total=False):
    """What the reasoning graph returns (the twin it was given is not repeated)."""

    ids: list[int]
    mask: RLE | None
    steps: list[ReasoningStep]
    stop_reason: str
    error: str
    message: str
    usage: dict[str, Any]
    warnings: list[str]
    components: dict[str, str]


class OutputState(TwinOutput, ReasoningOutput, total=False):
    """What a whole run returns."""


STATE_TYPES: tuple[type[BaseModel], ...] = (
    DigitalTwin,
    ImageInfo,
    TwinObject,
    RLE,
    Relation,
    ReasoningStep,
    ObjectDecision,
    ProposedMask,
)
"""The pydantic types graph states hold (what a checkpoint serializer must rebuild)."""


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with :data:`STATE_TYPES` allowed (pass it as a checkpointer's ``serde``)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=[(t.__module__, t.__name__) for t in STATE_TYPES])


def check_query(query: str | None, settings: Settings, *, required: bool) -> str:
    """Validate a query: non-empty when required, at most ``reasoning.max_query_chars`` long.

    Returns:
        The query, stripped.

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

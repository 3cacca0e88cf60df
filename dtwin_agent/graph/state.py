"""Graph state: a narrow input, the full working state and the output (LangGraph templates' shape).

The state carries image references, RLEs, ids and text only: never dense arrays or base64 images,
so it checkpoints cheaply and replays exactly.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from dtwin_agent.llm.usage import merge_usage


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys win."""
    return {**(left or {}), **(right or {})}


class InputState(TypedDict):
    """What a caller gives: an image reference (a file path) and the query."""

    image: str
    query: str


class State(InputState, total=False):
    """The working state of one run."""

    dialogue: str  # earlier turns of a chat session, shown to the reasoner beside the query
    image_sha256: str
    width: int
    height: int
    source: str
    granularity: str
    granularity_reason: str
    proposals: list[dict[str, Any]]  # {"id", "mask": RLE dict, "predicted_iou", "stability"}
    semantics: dict[str, str]  # id -> S_i
    twin_key: str  # cache key of this image's twin
    cached_twin: dict[str, Any] | None  # set when the twin came from the cache
    twin: dict[str, Any]  # DigitalTwin.model_dump(mode="json")
    current_ids: list[int]
    step_semantics: dict[str, str]
    step_reasoning: dict[str, str]
    steps: list[dict[str, Any]]  # the reasoning path D^(0..K)
    stop_reason: str
    ids: list[int]
    mask: dict[str, Any] | None  # union RLE
    message: str
    usage: Annotated[dict[str, Any], merge_usage]
    warnings: Annotated[list[str], operator.add]
    components: Annotated[dict[str, str], merge_dicts]


class OutputState(TypedDict, total=False):
    """What a run returns."""

    ids: list[int]
    mask: dict[str, Any] | None
    twin: dict[str, Any]
    steps: list[dict[str, Any]]
    granularity: str
    granularity_reason: str
    stop_reason: str
    message: str
    usage: dict[str, Any]
    warnings: list[str]
    components: dict[str, str]

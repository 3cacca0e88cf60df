"""Progress events: what a run is doing while it does it, one small type for every consumer.

A :class:`ProgressEvent` says that a stage started, advanced (``done`` of ``total`` ``unit``) or ended.
Inside a graph run, code reports progress with :func:`emit` (or a :func:`reporter` callback, which may
be called from any thread); events travel through LangGraph's custom stream
(``stream_mode="custom"``, written with :func:`langgraph.config.get_stream_writer`), so a LangGraph
server's clients receive them too (``stream_mode="custom"``, ``stream_subgraphs=True``). Outside a
graph run :func:`emit` does nothing.

Where events come from:

- every graph stage's start and end (with its seconds and a one-line summary): LangGraph's own
  ``tasks`` stream, turned into events by :class:`GraphEvents`;
- ``propose_masks``: prompts decoded, done / total (the proposer's ``on_progress``);
- ``assign_semantics``: masks labelled, n / N;
- ``refine``: the refinement step j of at most K;
- the local LLM: its server's start-up (stage ``local_llm_start``), the prompt tokens it has read
  and the tokens it has written, as they stream.

Consumers get events from :func:`stream_graph` (what :func:`dtwin_agent.api.segment`,
:func:`~dtwin_agent.api.build_twin` and :meth:`~dtwin_agent.integrations.chat.ChatSession.ask` use
for their ``on_progress`` argument); :class:`dtwin_agent.outputs.progress.ProgressDisplay` shows
them on a terminal or in a log.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = [
    "EVENT_TYPE",
    "GraphEvents",
    "ProgressCallback",
    "ProgressEvent",
    "emit",
    "reporter",
    "stream_graph",
    "summarize",
]

EVENT_TYPE = "dtwin.progress"
"""The ``type`` field of an event written to the custom stream (other custom data is ignored)."""

Kind = Literal["start", "progress", "end", "error"]


@dataclass(frozen=True)
class ProgressEvent:
    """One thing a run reports while it works.

    Attributes:
        stage: a graph node (``propose_masks``, ``refine``...) or a part of one
            (``local_llm_start``); chat sessions add ``start_turn``, ``build_twin``, ``reason``,
            ``record_turn``.
        kind: ``start``, ``progress`` (``done`` of ``total`` ``unit``), ``end`` or ``error``.
        done: units done so far (progress events).
        total: units in all, when known.
        unit: what ``done`` counts (``prompts``, ``masks``, ``tokens read``, ``tokens written``,
            ``samples``...); a stage may count several units at once.
        message: one line for people (the summary of an ended stage, the error of a failed one).
        seconds: seconds since the stage started (end and error events).
    """

    stage: str
    kind: Kind = "progress"
    done: int | None = None
    total: int | None = None
    unit: str = ""
    message: str = ""
    seconds: float | None = None

    def line(self) -> str:
        """The event as one line, e.g. ``propose_masks: 64/256 prompts`` or ``refine: done in 3.2 s``."""
        if self.kind == "start":
            return f"{self.stage}: started" + (f" ({self.message})" if self.message else "")
        took = f" in {self.seconds:.1f} s" if self.seconds is not None else ""
        if self.kind == "end":
            return f"{self.stage}: done{took}" + (f" ({self.message})" if self.message else "")
        if self.kind == "error":
            return f"{self.stage}: failed{took}" + (f": {self.message}" if self.message else "")
        count = ""
        if self.done is not None:
            count = f"{self.done}/{self.total}" if self.total else str(self.done)
            count += f" {self.unit}" if self.unit else ""
        text = "; ".join(part for part in (count, self.message) if part)
        return f"{self.stage}: {text}" if text else self.stage

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with ``type`` = :data:`EVENT_TYPE` (what the custom stream carries)."""
        return {"type": EVENT_TYPE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any) -> ProgressEvent | None:
        """The event a custom-stream chunk holds, or ``None`` for other data."""
        if isinstance(data, ProgressEvent):
            return data
        if not isinstance(data, Mapping) or data.get("type") != EVENT_TYPE:
            return None
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


ProgressCallback = Callable[[ProgressEvent], None]


def _current_node() -> str:
    """The name of the graph node this code runs in ("" outside a graph run)."""
    try:
        from langgraph.config import get_config

        return str((get_config().get("metadata") or {}).get("langgraph_node") or "")
    except (ImportError, RuntimeError):
        return ""


def emit(
    stage: str | None = None,
    kind: Kind = "progress",
    *,
    done: int | None = None,
    total: int | None = None,
    unit: str = "",
    message: str = "",
    seconds: float | None = None,
) -> None:
    """Report progress on the running graph's custom stream (nothing outside a graph run).

    Args:
        stage: the stage; default the node this code runs in.
        kind: ``start``, ``progress``, ``end`` or ``error``.
        done: units done.
        total: units in all, when known.
        unit: what is counted.
        message: one line for people.
        seconds: seconds since the stage started.

    Call it from the node's own thread; from another thread use a :func:`reporter`.
    """
    try:
        from langgraph.config import get_stream_writer

        writer = get_stream_writer()
    except (ImportError, RuntimeError, KeyError):  # not inside a graph run (KeyError: a runnable's
        return  # config without a graph runtime, e.g. a model invoked on its own)
    event = ProgressEvent(stage or _current_node() or "run", kind, done, total, unit, message, seconds)
    writer(event.to_dict())


def reporter(
    stage: str | None = None, unit: str = "", *, min_interval_s: float = 0.2
) -> Callable[[int, int | None], None]:
    """An ``on_progress(done, total)`` callback bound to the calling node, safe to call from any thread.

    Progress events closer together than ``min_interval_s`` are dropped, except the last one
    (``done == total``), so a callback called per token or per prompt batch costs little.
    """
    stage = stage or _current_node() or "run"
    context = contextvars.copy_context()  # the node's run context: the stream writer lives in it
    lock = threading.Lock()
    last = [0.0]

    def on_progress(done: int, total: int | None = None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        with lock:
            if not finished and now - last[0] < min_interval_s:
                return
            last[0] = now
        context.copy().run(emit, stage, "progress", done=done, total=total, unit=unit)

    return on_progress


# ------------------------------------------------------------------------------ graph stream -> events


def _count(value: Any) -> int:
    return len(value) if isinstance(value, (list, tuple, dict)) else 0


def summarize(node: str, update: Mapping[str, Any] | None) -> str:
    """A short summary of what a node returned, for its end event ("" when there is nothing to say)."""
    update = update or {}
    if node == "load_image" and update.get("width"):
        return f"{update['width']}x{update['height']} px"
    if node == "select_granularity" and update.get("granularity"):
        return f"{update['granularity']} level"
    if node == "lookup_twin":
        return "twin reused from the cache" if update.get("twin_from_cache") else "no cached twin"
    if node == "propose_masks" and "proposals" in update:
        return f"{_count(update['proposals'])} masks"
    if node == "assign_semantics" and "semantics" in update:
        return f"{_count(update['semantics'])} labels"
    if node in ("build_spatial", "build_twin") and update.get("twin") is not None:
        twin = update["twin"]
        summary = getattr(twin, "summary", None) or f"{_count(getattr(twin, 'objects', []))} objects"
        return f"twin of {summary}"
    if node == "refine" and update.get("steps"):
        last = update["steps"][-1]
        stop = update.get("stop_reason") or ""
        return f"step {getattr(last, 'step', '?')}: kept {list(getattr(last, 'ids', []))}" + (
            f"; stop: {stop}" if stop else ""
        )
    if node in ("finalize", "reason") and update.get("message"):
        return str(update["message"])
    if node == "record_turn" and update.get("turns"):
        return f"turn {update['turns'][-1].get('turn')}"
    return ""


class GraphEvents:
    """Turns the items of ``graph.stream(..., stream_mode=["tasks", "custom"], subgraphs=True)`` into events.

    Task starts and results become ``start`` and ``end`` (or ``error``) events with the node's
    seconds and :func:`summarize`'s summary; custom chunks written by :func:`emit` pass through.
    """

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def __call__(self, mode: str, chunk: Any) -> ProgressEvent | None:
        """The event of one stream item (``None`` for items that are not progress)."""
        if mode == "custom":
            return ProgressEvent.from_dict(chunk)
        if mode != "tasks" or not isinstance(chunk, Mapping):
            return None
        name, task = str(chunk.get("name", "")), str(chunk.get("id", ""))
        if name.startswith("__"):  # LangGraph's own bookkeeping tasks
            return None
        if "triggers" in chunk:  # a task starts
            self._started[task] = time.perf_counter()
            return ProgressEvent(name, "start")
        started = self._started.pop(task, None)
        seconds = time.perf_counter() - started if started is not None else None
        error = chunk.get("error")
        if error is not None:
            message = " ".join(str(error).split())[:300] or type(error).__name__
            return ProgressEvent(name, "error", message=message, seconds=seconds)
        result = chunk.get("result")
        summary = summarize(name, result if isinstance(result, Mapping) else {})
        return ProgressEvent(name, "end", message=summary, seconds=seconds)


def stream_graph(
    graph: Any,
    inputs: Any,
    *,
    on_progress: ProgressCallback | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run a compiled graph to the end, passing its progress events to ``on_progress``.

    Args:
        graph: a compiled LangGraph graph.
        inputs: its input.
        on_progress: called with every :class:`ProgressEvent` (stage starts and ends, counters).
        **kwargs: for ``graph.stream`` (``config``, ``context``, ``durability``...).

    Returns:
        The final state (the root graph's last ``values``).
    """
    final: dict[str, Any] = {}
    root = None  # the root graph's namespace depth: () alone, deeper when run inside another graph's node
    modes: Sequence[str] = ("values", "tasks", "custom") if on_progress is not None else ("values",)
    events = GraphEvents()
    items: Iterator[Any] = graph.stream(inputs, stream_mode=list(modes), subgraphs=True, **kwargs)
    for namespace, mode, chunk in items:
        if mode == "values":
            if root is None or len(namespace) <= root:
                root, final = len(namespace), chunk
            continue
        event = events(mode, chunk)
        if event is not None and on_progress is not None:
            on_progress(event)
    return final

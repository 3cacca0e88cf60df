"""Per-stage usage of the model calls: calls, tokens and wall seconds.

A node builds a :class:`Usage`, passes it to :func:`dtwin_agent.llm.call.invoke_structured` (which
records every call) and returns ``usage.model_dump()`` in its state update; the graph state adds the
updates of all nodes with the reducer :func:`merge_usage`. Token counts come from
``AIMessage.usage_metadata``; a provider that reports none counts 0.

Work that happens deep inside a node on its behalf, such as starting the local LLM server, is
recorded in the node's :class:`Usage` while the node holds it as :func:`current_usage`
(``with usage.recording(): ...``), under a stage of its own (``local_llm_start``).
``cached_input_tokens`` are the input tokens the provider did not read again (its prompt cache: llama.cpp's
``prompt_tokens_details.cached_tokens``, OpenAI's and Anthropic's cache reads); the tokens read are
``input_tokens - cached_input_tokens``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr


class StageUsage(BaseModel):
    """What one stage (granularity, semantics, refine...) spent."""

    calls: int = Field(default=0, ge=0, description="model answers received")
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0, description="input tokens served from a prompt cache")
    seconds: float = Field(default=0.0, ge=0, description="wall time of the calls, retries included")
    retries: int = Field(default=0, ge=0, description="calls repeated after a rate limit, timeout or 5xx")

    def __add__(self, other: StageUsage) -> StageUsage:
        return StageUsage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            seconds=self.seconds + other.seconds,
            retries=self.retries + other.retries,
        )

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class Usage(BaseModel):
    """Usage per stage, in the order stages were first seen.

    ``add`` may be called from several threads at once (the semantics stage labels masks
    concurrently); it takes a lock.
    """

    stages: dict[str, StageUsage] = Field(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def add(
        self,
        stage: str,
        *,
        calls: int = 1,
        input_tokens: int = 0,
        output_tokens: int = 0,
        seconds: float = 0.0,
        retries: int = 0,
        cached_input_tokens: int = 0,
    ) -> Usage:
        """Record calls of ``stage``; returns ``self``.

        Args:
            stage: the stage name, e.g. ``"semantics"``.
            calls: model answers received.
            input_tokens: prompt tokens, 0 when unknown.
            output_tokens: completion tokens, 0 when unknown.
            seconds: wall seconds spent.
            retries: calls repeated after transient errors.
            cached_input_tokens: input tokens served from the provider's prompt cache.

        """
        row = StageUsage(
            calls=calls,
            input_tokens=input_tokens or 0,
            output_tokens=output_tokens or 0,
            cached_input_tokens=cached_input_tokens or 0,
            seconds=max(0.0, seconds),
            retries=retries,
        )
        with self._lock:
            self.stages[stage] = self.stages.get(stage, StageUsage()) + row
        return self

    def add_message(self, stage: str, message: Any, *, seconds: float = 0.0, retries: int = 0) -> Usage:
        """Record one call whose answer is ``message`` (tokens read from its ``usage_metadata``)."""
        input_tokens, output_tokens = tokens_of(message)
        return self.add(
            stage,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            seconds=seconds,
            retries=retries,
            cached_input_tokens=cached_tokens_of(message),
        )

    def merge(self, other: Usage | Mapping[str, Any] | None) -> Usage:
        """A new :class:`Usage` with the rows of ``self`` and ``other`` added per stage."""
        other_usage = _as_usage(other)
        out = Usage()
        with self._lock:
            mine = dict(self.stages)
        for stage, row in [*mine.items(), *other_usage.stages.items()]:
            out.stages[stage] = out.stages.get(stage, StageUsage()) + row
        return out

    @contextmanager
    def recording(self) -> Iterator[Usage]:
        """Make this the :func:`current_usage` of the code run inside the ``with`` block."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def total(self) -> StageUsage:
        """All stages added together."""
        out = StageUsage()
        for row in self.stages.values():
            out = out + row
        return out

    def table(self) -> str:
        """A plain text table: one row per stage and a total row."""
        header = ("stage", "calls", "input tokens", "output tokens", "seconds")
        rows = [
            (name, str(r.calls), str(r.input_tokens), str(r.output_tokens), f"{r.seconds:.2f}")
            for name, r in [*self.stages.items(), ("total", self.total())]
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(cells: tuple[str, ...]) -> str:
            first = cells[0].ljust(widths[0])
            rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(header), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])


_CURRENT: ContextVar[Usage | None] = ContextVar("dtwin_current_usage", default=None)


def current_usage() -> Usage | None:
    """The :class:`Usage` the running node records into (``None`` outside :meth:`Usage.recording`)."""
    return _CURRENT.get()


def tokens_of(message: Any) -> tuple[int, int]:
    """``(input_tokens, output_tokens)`` of an ``AIMessage``; ``(0, 0)`` when it reports none."""
    meta = getattr(message, "usage_metadata", None) or {}
    if not isinstance(meta, Mapping):
        return 0, 0

    def count(key: str) -> int:
        value = meta.get(key)
        return value if isinstance(value, int) and value > 0 else 0

    return count("input_tokens"), count("output_tokens")


def cached_tokens_of(message: Any) -> int:
    """Input tokens of an ``AIMessage`` served from a prompt cache (``cache_read``); 0 if unknown."""
    meta = getattr(message, "usage_metadata", None) or {}
    details = meta.get("input_token_details") if isinstance(meta, Mapping) else None
    value = details.get("cache_read") if isinstance(details, Mapping) else None
    return value if isinstance(value, int) and value > 0 else 0


def _as_usage(value: Usage | Mapping[str, Any] | None) -> Usage:
    if value is None:
        return Usage()
    if isinstance(value, Usage):
        return value
    return Usage.model_validate(dict(value))


def merge_usage(
    left: Usage | Mapping[str, Any] | None, right: Usage | Mapping[str, Any] | None
) -> dict[str, Any]:
    """LangGraph state reducer: adds two usages (``Usage`` or its ``model_dump()``) per stage.

    Returns a plain dict (``Usage.model_dump()``) so the state checkpoints as JSON.
    """
    return _as_usage(left).merge(right).model_dump()

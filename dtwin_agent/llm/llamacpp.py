"""``ChatOpenAI`` for llama.cpp's server that reports the tokens it reads and writes, as they stream.

llama.cpp's OpenAI-compatible server streams its prompt processing when asked
(``"return_progress": true``): chunks carry ``prompt_progress`` = ``{"total", "cache",
"processed", "time_ms"}`` (prompt tokens in all, reused from the server's cache, read so far,
milliseconds spent). ``ChatOpenAI`` drops that field; :class:`LlamaCppChatOpenAI` keeps it and,
while a call streams, emits :mod:`dtwin_agent.progress` events for the node it runs in:
``tokens read`` (done / total, cached tokens counted as read) and ``tokens written``. On a CPU a
prompt of a few thousand tokens takes minutes; these events are what a person sees meanwhile.

The structured-output stream (``with_structured_output``: OpenAI's ``beta.chat.completions.stream``)
keeps only the last chunk's usage, so llama.cpp's token counts were lost there; the usage block
seen in the stream is given back to the message, and so to the run's ``usage`` (with the tokens
llama.cpp served from its prompt cache as ``cache_read``).

Structured output asks llama.cpp for grammar-constrained JSON with a bounded schema
(:func:`~dtwin_agent.llm.schemas.bounded_json_schema`: every text field has a ``maxLength``), so a
small model that starts repeating itself inside a string is stopped by the grammar, not by the
token limit after minutes; the answer is parsed from its text as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, ValidationError

from dtwin_agent.llm.schemas import bounded_json_schema
from dtwin_agent.progress import reporter

__all__ = ["PROMPT_PROGRESS", "LlamaCppChatOpenAI"]

PROMPT_PROGRESS = "prompt_progress"
"""The key of llama.cpp's prompt-processing progress in a streamed chunk."""
_USAGE = "_llamacpp_usage"  # a usage block seen inside a structured-output stream's chunk


class LlamaCppChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that asks llama.cpp for prompt progress and reports reading and writing."""

    def __init__(self, **kwargs: Any):
        extra = dict(kwargs.pop("extra_body", None) or {})
        extra.setdefault("return_progress", True)
        super().__init__(extra_body=extra, **kwargs)

    def with_structured_output(
        self, schema: Any = None, *, method: str = "json_schema", **kwargs: Any
    ) -> Any:
        """``ChatOpenAI.with_structured_output``; a pydantic ``schema`` goes to llama.cpp bounded.

        With ``method="json_schema"`` (LangChain's default) the grammar gets
        :func:`~dtwin_agent.llm.schemas.bounded_json_schema`; the answer is then validated into
        ``schema`` as LangChain would (with ``include_raw=True``: ``parsed`` None and
        ``parsing_error`` set when it does not validate).
        """
        if not (method == "json_schema" and isinstance(schema, type) and issubclass(schema, BaseModel)):
            return super().with_structured_output(schema, method=method, **kwargs)
        model = schema
        runnable = super().with_structured_output(bounded_json_schema(model), method=method, **kwargs)

        def validate(out: Any) -> Any:
            if not kwargs.get("include_raw"):
                return model.model_validate(out)
            if out.get("parsed") is None:
                return out
            try:
                return {**out, "parsed": model.model_validate(out["parsed"])}
            except ValidationError as exc:
                return {**out, "parsed": None, "parsing_error": exc}

        return runnable | RunnableLambda(validate)

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        inner = chunk.get("chunk") or {}  # the structured-output (beta) stream wraps each chunk
        extra = {
            key: value
            for key, value in ((PROMPT_PROGRESS, chunk.get(PROMPT_PROGRESS) or inner.get(PROMPT_PROGRESS)),
                               (_USAGE, inner.get("usage")))
            if isinstance(value, dict)
        }  # fmt: skip
        if generation is not None and extra:
            generation.generation_info = {**(generation.generation_info or {}), **extra}
        return generation

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        read = reporter(unit="tokens read")
        written = reporter(unit="tokens written")
        count, counted, last_usage = 0, False, None
        for generation in super()._stream(*args, **kwargs):
            info = generation.generation_info or {}
            if PROMPT_PROGRESS in info or _USAGE in info:
                generation.generation_info = {
                    k: v for k, v in info.items() if k not in (PROMPT_PROGRESS, _USAGE)
                }
            progress = info.get(PROMPT_PROGRESS)
            if progress is not None:
                total = int(progress.get("total") or 0)
                done = int(progress.get("processed") or 0) + int(progress.get("cache") or 0)
                read(min(done, total) if total else done, total or None)
            last_usage = info.get(_USAGE) or last_usage
            message = generation.message
            if message.content or getattr(message, "tool_call_chunks", None):
                count += 1
                written(count, None)
            if getattr(message, "usage_metadata", None):
                counted = True
            yield generation
        if last_usage and not counted:
            # the structured-output stream keeps only the last chunk's usage, and llama.cpp may send
            # one more chunk after it: give the tokens back to the message (and so to ``usage``)
            tokens_in, tokens_out = (
                int(last_usage.get("prompt_tokens") or 0),
                int(last_usage.get("completion_tokens") or 0),
            )
            usage = UsageMetadata(
                input_tokens=tokens_in, output_tokens=tokens_out, total_tokens=tokens_in + tokens_out
            )
            cached = (last_usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            if isinstance(cached, int) and cached > 0:  # read from llama.cpp's prompt cache
                usage["input_token_details"] = {"cache_read": cached}
            yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))
        if last_usage:
            read(int(last_usage.get("prompt_tokens") or 0), int(last_usage.get("prompt_tokens") or 0))
            out = int(last_usage.get("completion_tokens") or count)
            written(out, out)

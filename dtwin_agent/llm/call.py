"""Asking a chat model for a structured answer: LangChain's structured output, one repair, a report.

:func:`invoke_structured` is what the graph nodes call. The constraint on the answer is
LangChain's: ``with_structured_output(schema, include_raw=True)`` with the method that
``models.structured_output`` names (``json_schema``, ``function_calling``, ``json_mode``, or the
provider's default for ``native`` / ``auto``), or ``prompt`` (the prompt files ask for JSON; the text
is parsed). What LangChain lacks is kept here, and only that:

* every answer, native ones included, goes through the stage's pure ``parse`` function
  (:mod:`dtwin_agent.llm.parsing`), so unknown ids are dropped and reported the same way;
* an answer that cannot be used gets **one repair round-trip** (the bad answer and the parse error
  go back to the model); if that fails too the result is ``parsed=None`` with a report: nothing a
  model *says* raises;
* ``auto`` falls back to the prompt where the model has no structured output or the provider
  refuses it (HTTP 400...).

Transport failures (rate limits, timeouts, 5xx) are retried and counted by
:func:`dtwin_agent.llm.retry.invoke_with_retry`, and end in a ``ProviderCallError`` naming the
provider, the model and the stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel

from dtwin_agent.config import Settings
from dtwin_agent.errors import ConfigError, ParseError, ProviderCallError
from dtwin_agent.llm.parsing import ParseReport
from dtwin_agent.llm.retry import invoke_with_retry, model_label
from dtwin_agent.llm.usage import Usage

__all__ = ["REPAIR_MESSAGE", "StructuredResult", "invoke_structured", "message_text", "repair_message"]

T = TypeVar("T")
ParseFn = Callable[[str], Any]  # returns a value or (value, ParseReport); raises ParseError

REPAIR_MESSAGE = (
    "Your previous answer could not be used: {error}. "
    "Reply again with valid JSON only, in the requested format: no prose, no Markdown fences."
)
_METHODS = ("json_schema", "function_calling", "json_mode")
_MAX_QUOTED = 300
_MAX_ECHO = 4000


@dataclass
class StructuredResult(Generic[T]):
    """What :func:`invoke_structured` got.

    Attributes:
        parsed: the parsed answer, or ``None`` when it stayed unusable after the repair round-trip.
        raw: the text of the last answer.
        report: what parsing repaired, dropped or could not use (plus notes of this call).
        attempts: model answers requested (2 when the repair round-trip ran).
        mode: ``native`` (provider structured output) or ``prompt`` (JSON asked in the prompt).

    """

    parsed: T | None
    raw: str
    report: ParseReport = field(default_factory=ParseReport)
    attempts: int = 1
    mode: str = "prompt"


def repair_message(error: str) -> str:
    """The user message of the repair round-trip, quoting the parse error."""
    error = " ".join(str(error).split())
    if len(error) > _MAX_QUOTED:
        error = error[: _MAX_QUOTED - 3] + "..."
    return REPAIR_MESSAGE.format(error=error.rstrip("."))


def message_text(message: Any) -> str:
    """The text of an answer: its text content, else its first tool call's arguments as JSON."""
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    text = getattr(message, "text", "")  # a property in langchain-core 1.x (a str subclass)
    text = str(text) if isinstance(text, str) else ""
    if text.strip():
        return text
    for call in getattr(message, "tool_calls", None) or []:
        return json.dumps(call.get("args", {}), ensure_ascii=False)
    for call in getattr(message, "invalid_tool_calls", None) or []:
        args = call.get("args")
        if isinstance(args, str):
            return args
    return text


def _interpret(out: Any, parse: ParseFn) -> tuple[Any, str, ParseReport, str]:
    """``(parsed or None, raw text, report, error)`` of one answer; never raises."""
    if isinstance(out, dict) and "raw" in out:  # with_structured_output(include_raw=True)
        raw = message_text(out.get("raw"))
        native = out.get("parsed")
        text = native.model_dump_json() if isinstance(native, BaseModel) else raw
        if native is not None and not isinstance(native, BaseModel):
            text = json.dumps(native, ensure_ascii=False, default=str)
    else:
        raw = text = message_text(out)
    try:
        value = parse(text)
        paired = isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], ParseReport)
        parsed, report = value if paired else (value, ParseReport())
        if parsed is None:
            raise ParseError("nothing usable in the answer")
    except ParseError as exc:
        report = exc.report if isinstance(exc.report, ParseReport) else ParseReport()
        report.note(f"parse failed: {exc}")
        return None, raw, report, str(exc)
    except Exception as exc:  # noqa: BLE001 - nothing a model says may crash the graph
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:_MAX_QUOTED]}"
        return None, raw, ParseReport(notes=[f"parse failed: {error}"]), error
    return parsed, raw, report, ""


def _constrained(model: Any, schema: type[BaseModel], mode: str, label: str) -> Any | None:
    """``model.with_structured_output(schema, include_raw=True, method=...)``; ``None``: use the prompt."""
    if mode == "prompt":
        return None
    method = {"method": mode} if mode in _METHODS else {}
    try:
        return model.with_structured_output(schema, include_raw=True, **method)
    except NotImplementedError as exc:
        if mode == "auto":
            return None
        raise ConfigError(
            f"models.structured_output = {mode!r}, but {label} has no structured output; "
            "use 'auto' or 'prompt'"
        ) from exc
    except (TypeError, ValueError) as exc:  # a method this provider does not know
        raise ConfigError(f"models.structured_output = {mode!r} is not supported by {label}: {exc}") from exc


def invoke_structured(
    model: Any,
    messages: Sequence[BaseMessage],
    schema: type[BaseModel],
    *,
    parse: ParseFn,
    settings: Settings,
    usage: Usage | None = None,
    stage: str = "model",
) -> StructuredResult:
    """Ask ``model`` for an answer of type ``schema`` and parse it; never raises for what it says.

    Args:
        model: the chat model.
        messages: the conversation (system prompt, user content).
        schema: the pydantic type asked for.
        parse: the stage's pure parser: text -> value, or (value, ParseReport); raises ParseError.
        settings: ``models.structured_output``, retries and timeouts.
        usage: where calls, retries, tokens and seconds are recorded.
        stage: the stage name for usage and error messages.

    Returns:
        The parsed answer, or ``parsed=None`` and a report when it stayed unusable after one
        repair round-trip (the bad answer and :func:`repair_message` appended to ``messages``).

    Raises:
        ProviderCallError: the provider failed (retries exhausted, invalid key, bad request).
        ConfigError: a structured-output method the model does not support.

    """
    label = model_label(model)
    mode = settings.models.structured_output
    notes: list[str] = []
    runnable = _constrained(model, schema, mode, label)
    if runnable is None:
        runnable = model
        if mode != "prompt":
            notes.append("structured output: prompt mode (the model has none)")
    msgs = list(messages)
    attempts = 0
    while True:
        attempts += 1
        try:
            out = invoke_with_retry(runnable, msgs, settings, label=label, stage=stage, usage=usage)
        except ProviderCallError as err:
            if runnable is not model and mode == "auto" and err.kind == "fatal":
                notes.append(f"native structured output refused ({err}); prompt mode used")
                runnable, attempts = model, attempts - 1
                continue
            if err.kind != "output":
                raise
            parsed, raw, report, error = None, "", ParseReport(notes=[f"answer rejected: {err}"]), str(err)
        else:
            parsed, raw, report, error = _interpret(out, parse)
        used = "native" if runnable is not model else "prompt"
        if parsed is not None or attempts == 2:
            report.notes[:0] = notes
            if parsed is None:
                report.note("the answer stayed unusable after one repair round-trip")
            return StructuredResult(parsed, raw, report, attempts, used)
        echo = AIMessage(content=raw[:_MAX_ECHO] or "(empty answer)")
        msgs = [*msgs, echo, HumanMessage(repair_message(error))]
        notes.append(f"repair round-trip after: {error}")

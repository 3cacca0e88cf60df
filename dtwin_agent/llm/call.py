"""Calling a chat model for a structured answer: retries, parsing, one repair, usage.

:func:`invoke_structured` (and :func:`ainvoke_structured`) is what the graph nodes call. It
asks for the answer natively (``with_structured_output``) or in the prompt, per
``models.structured_output``; runs every answer through the stage's pure ``parse`` function
(``parsing.py``), which also drops unknown ids; gives a model whose answer cannot be parsed one
repair round-trip; and never raises for what a model *says*: an answer that stays unusable comes
back as ``parsed=None`` with a report. Transport failures are another matter:
:func:`invoke_with_retry` retries rate limits, timeouts, connection errors and 5xx with
exponential backoff and full jitter, then raises :class:`ProviderCallError` (a ``ProviderError``).

The sync and async variants share one decision procedure, written once as a generator
(:func:`_structured_flow`) that yields the calls to make; two small drivers make them.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel

from dtwin_agent.config import Settings
from dtwin_agent.errors import (
    ConfigError,
    DTwinError,
    ErrorKind,
    ParseError,
    ProviderCallError,
)
from dtwin_agent.llm.models import API_KEY_ENV, provider_of
from dtwin_agent.llm.parsing import ParseReport
from dtwin_agent.llm.usage import Usage

T = TypeVar("T")
ParseFn = Callable[[str], Any]  # returns a value or (value, ParseReport); raises ParseError

MAX_DELAY_S = 60.0
REPAIR_MESSAGE = (
    "Your previous answer could not be used: {error}. "
    "Reply again with valid JSON only, in the requested format: no prose, no Markdown fences."
)
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


# --------------------------------------------------------------------------------------------------
# retries


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status carried by a provider exception, if any."""
    for holder in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "status", "http_status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def _class_names(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__]


def classify_error(exc: BaseException) -> ErrorKind:
    """``transient`` (retry), ``auth``, ``output`` (the answer itself was rejected) or ``fatal``."""
    status = status_code_of(exc)
    names = _class_names(exc)
    if status in (401, 403) or any(n in ("AuthenticationError", "PermissionDeniedError") for n in names):
        return "auth"
    if status is not None and (status in (408, 409, 429) or status >= 500):
        return "transient"
    if any(key in n for n in names for key in ("RateLimit", "Timeout", "Overloaded", "ServiceUnavailable")):
        return "transient"
    if isinstance(exc, TimeoutError | ConnectionError):
        return "transient"
    if any(
        key in n
        for n in names
        for key in (
            "ConnectionError",
            "ConnectError",
            "NetworkError",
            "RemoteProtocolError",
            "InternalServerError",
        )
    ):
        return "transient"
    if any("FinishReason" in n or n == "OutputParserException" for n in names):
        return "output"
    return "fatal"


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


class _Retrier:
    """The retry decisions of one call, shared by the sync and async loops."""

    def __init__(self, model: Any, settings: Settings, stage: str, rand: Callable[[], float] | None) -> None:
        self.provider = provider_of(_base_model(model))
        self.settings = settings
        self.stage = stage
        self.rand = random.random if rand is None else rand
        self.retries = 0
        self.started = time.perf_counter()

    def delay_after(self, exc: Exception) -> float:
        """Seconds to wait before the next try; raises when there is to be none."""
        if isinstance(exc, DTwinError):
            raise exc
        kind = classify_error(exc)
        status = status_code_of(exc)
        models = self.settings.models
        if kind != "transient" or self.retries >= models.max_retries:
            raise self._error(exc, kind, status) from exc
        cap = min(MAX_DELAY_S, models.backoff_s * 2**self.retries)
        delay = self.rand() * cap  # full jitter
        hint = _retry_after(exc)
        if hint is not None:
            delay = max(delay, min(hint, MAX_DELAY_S))
        self.retries += 1
        return delay

    def _error(self, exc: Exception, kind: ErrorKind, status: int | None) -> ProviderCallError:
        what = f"{type(exc).__name__}: {' '.join(str(exc).split())[:_MAX_QUOTED]}"
        where = f"{self.provider} ({self.stage})"
        attempts = self.retries + 1
        if kind == "auth":
            env = API_KEY_ENV.get(self.provider, "the provider's API key variable")
            msg = (
                f"{where}: the API key was rejected (HTTP {status or 401}); check {env} or "
                f"models.*_api_key. {what}"
            )
        elif kind == "transient":
            msg = f"{where} failed after {attempts} attempts (rate limit, timeout or server error): {what}"
        elif kind == "output":
            msg = f"{where}: the provider rejected the model's answer: {what}"
        else:
            msg = f"{where}: request failed{f' (HTTP {status})' if status else ''}: {what}"
        return ProviderCallError(
            msg, provider=self.provider, stage=self.stage, kind=kind, status_code=status, attempts=attempts
        )

    def record(self, result: Any, usage: Usage | None) -> Any:
        if usage is not None:
            message = result.get("raw") if isinstance(result, dict) else result
            seconds = time.perf_counter() - self.started
            usage.add_message(self.stage, message, seconds=seconds, retries=self.retries)
        return result


def _base_model(model: Any) -> Any:
    """The chat model under a structured-output runnable (for provider names)."""
    first = getattr(model, "first", None)  # RunnableSequence
    bound = getattr(first, "bound", None) or getattr(model, "bound", None)
    return bound if bound is not None else model


def invoke_with_retry(
    model: Any,
    messages: Sequence[BaseMessage],
    settings: Settings,
    *,
    stage: str = "model",
    usage: Usage | None = None,
    sleep: Callable[[float], None] | None = None,
    rand: Callable[[], float] | None = None,
) -> Any:
    """``model.invoke(messages)``, retried on rate limits, timeouts, connection errors and 5xx.

    Waits ``rand() * backoff_s * 2**n`` seconds before retry ``n`` (full jitter, at most
    ``models.max_retries`` retries, a ``Retry-After`` header is honoured); records the call in
    ``usage`` under ``stage``.

    Args:
        model: a chat model or any runnable over messages.
        messages: the conversation.
        settings: reads ``models.max_retries`` and ``models.backoff_s``.
        stage: the stage name for usage and error messages.
        usage: where to record calls, tokens and seconds.
        sleep: the sleep function (tests pass a recorder); default ``time.sleep``.
        rand: uniform [0, 1) source for the jitter; default ``random.random``.

    Raises:
        ProviderCallError: retries exhausted, or at once for errors retrying cannot fix
            (401/403: the key is invalid; 400...).

    """
    retrier = _Retrier(model, settings, stage, rand)
    sleep = time.sleep if sleep is None else sleep
    while True:
        try:
            result = model.invoke(list(messages))
        except Exception as exc:  # noqa: BLE001 - classified, then retried or re-raised
            sleep(retrier.delay_after(exc))
            continue
        return retrier.record(result, usage)


async def ainvoke_with_retry(
    model: Any,
    messages: Sequence[BaseMessage],
    settings: Settings,
    *,
    stage: str = "model",
    usage: Usage | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    rand: Callable[[], float] | None = None,
) -> Any:
    """Async :func:`invoke_with_retry` (``sleep`` is awaited; default ``asyncio.sleep``)."""
    retrier = _Retrier(model, settings, stage, rand)
    sleep = asyncio.sleep if sleep is None else sleep
    while True:
        try:
            result = await model.ainvoke(list(messages))
        except Exception as exc:  # noqa: BLE001 - classified, then retried or re-raised
            await sleep(retrier.delay_after(exc))
            continue
        return retrier.record(result, usage)


# --------------------------------------------------------------------------------------------------
# structured answers

_NATIVE_UNSUPPORTED: dict[int, weakref.ref] = {}
_NATIVE_LOCK = threading.Lock()


def _native_unsupported(model: Any) -> bool:
    with _NATIVE_LOCK:
        ref = _NATIVE_UNSUPPORTED.get(id(model))
        return ref is not None and ref() is model


def _remember_native_unsupported(model: Any) -> None:
    try:
        ref = weakref.ref(model)
    except TypeError:
        return
    with _NATIVE_LOCK:
        for key in [k for k, r in _NATIVE_UNSUPPORTED.items() if r() is None]:
            del _NATIVE_UNSUPPORTED[key]  # models gone since
        _NATIVE_UNSUPPORTED[id(model)] = ref


@dataclass
class _Call:
    runnable: Any
    messages: list[BaseMessage]


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


def _run_parse(parse: ParseFn, text: str) -> tuple[Any, ParseReport]:
    out = parse(text)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], ParseReport):
        return out[0], out[1]
    return out, ParseReport()


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
        parsed, report = _run_parse(parse, text)
        if parsed is None:
            raise ParseError("nothing usable in the answer")
    except ParseError as exc:
        return None, raw, ParseReport(notes=[f"parse failed: {exc}"]), str(exc)
    except Exception as exc:  # noqa: BLE001 - nothing a model says may crash the graph
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:_MAX_QUOTED]}"
        return None, raw, ParseReport(notes=[f"parse failed: {error}"]), error
    return parsed, raw, report, ""


def _native_runnable(model: Any, schema: type[BaseModel], mode: str) -> Any | None:
    """The structured-output runnable, or ``None`` where prompt mode is to be used."""
    if mode == "prompt" or _native_unsupported(model):
        return None
    try:
        return model.with_structured_output(schema, include_raw=True)
    except NotImplementedError as exc:
        if mode == "native":
            raise ConfigError(
                f"models.structured_output = 'native', but {type(model).__name__} has no native "
                "structured output; use 'auto' or 'prompt'"
            ) from exc
        _remember_native_unsupported(model)
        return None


def _structured_flow(
    model: Any,
    messages: Sequence[BaseMessage],
    schema: type[BaseModel],
    parse: ParseFn,
    settings: Settings,
) -> Generator[_Call, Any, StructuredResult]:
    """The decisions of :func:`invoke_structured`, as a generator of the calls to make.

    The driver sends each call's result back in, or throws its :class:`ProviderCallError`.
    """
    mode = settings.models.structured_output
    runnable = _native_runnable(model, schema, mode)
    notes: list[str] = []
    if runnable is None:
        runnable = model
        if mode != "prompt":
            notes.append("structured output: prompt mode (no native support)")
    msgs = list(messages)
    raw, error, report, attempts, repaired = "", "", ParseReport(), 0, False
    while True:
        attempts += 1
        try:
            out = yield _Call(runnable, msgs)
        except ProviderCallError as err:
            if runnable is not model and err.kind == "fatal":
                if mode == "native":
                    if isinstance(err.__cause__, NotImplementedError):
                        raise ConfigError(
                            f"models.structured_output = 'native', but {type(model).__name__} has no native "
                            "structured output; use 'auto' or 'prompt'"
                        ) from err
                    raise
                # auto: the provider refused native structured output (400, unsupported...)
                _remember_native_unsupported(model)
                notes.append(f"native structured output failed ({err}); prompt mode used")
                runnable = model
                continue
            if err.kind != "output":
                raise
            parsed, raw, error = None, "", str(err)
            report = ParseReport(notes=[f"answer rejected: {err}"])
        else:
            parsed, raw, report, error = _interpret(out, parse)
        used = "native" if runnable is not model else "prompt"
        if parsed is not None:
            report.notes[:0] = notes
            return StructuredResult(parsed, raw, report, attempts, used)
        if repaired:
            report.notes[:0] = notes
            report.note("the answer stayed unusable after one repair round-trip")
            return StructuredResult(None, raw, report, attempts, used)
        repaired = True  # one repair round-trip: show the model its answer and the error
        echo = raw[:_MAX_ECHO] or "(empty answer)"
        msgs = [*msgs, AIMessage(content=echo), HumanMessage(content=repair_message(error))]
        notes.append(f"repair round-trip after: {error}")


def invoke_structured(
    model: Any,
    messages: Sequence[BaseMessage],
    schema: type[BaseModel],
    *,
    parse: ParseFn,
    settings: Settings,
    usage: Usage | None = None,
    stage: str = "model",
    sleep: Callable[[float], None] | None = None,
    rand: Callable[[], float] | None = None,
) -> StructuredResult:
    """Ask ``model`` for an answer of type ``schema`` and parse it; never raises for bad output.

    ``models.structured_output``: ``native`` / ``auto`` use ``with_structured_output(schema,
    include_raw=True)`` (``auto`` falls back to the prompt where the model has none or the provider
    refuses it; ``native`` raises ``ConfigError`` there); ``prompt`` invokes the model and parses
    its text. Every answer, native ones included, goes through ``parse`` so unknown ids are
    dropped and reported the same way. An unparseable answer gets one repair round-trip (the bad
    answer and :func:`repair_message` appended); if that fails too, ``parsed`` is ``None``.

    Args:
        model: the chat model.
        messages: the conversation (system prompt, user content).
        schema: the pydantic type asked for.
        parse: the stage's pure parser: text -> value, or (value, ParseReport); raises ParseError.
        settings: structured-output mode, retries and backoff.
        usage: where calls, tokens and seconds are recorded.
        stage: the stage name for usage and error messages.
        sleep: the backoff sleep (tests pass a recorder).
        rand: the jitter source.

    Raises:
        ProviderCallError: the provider failed (retries exhausted, invalid key, bad request).
        ConfigError: ``native`` asked of a model without native structured output.

    """
    flow = _structured_flow(model, messages, schema, parse, settings)
    try:
        call = next(flow)
        while True:
            try:
                out = invoke_with_retry(
                    call.runnable, call.messages, settings, stage=stage, usage=usage, sleep=sleep, rand=rand
                )
            except ProviderCallError as err:
                call = flow.throw(err)
            else:
                call = flow.send(out)
    except StopIteration as stop:
        return stop.value


async def ainvoke_structured(
    model: Any,
    messages: Sequence[BaseMessage],
    schema: type[BaseModel],
    *,
    parse: ParseFn,
    settings: Settings,
    usage: Usage | None = None,
    stage: str = "model",
    sleep: Callable[[float], Awaitable[None]] | None = None,
    rand: Callable[[], float] | None = None,
) -> StructuredResult:
    """Async :func:`invoke_structured` (same decisions; ``sleep`` is awaited)."""
    flow = _structured_flow(model, messages, schema, parse, settings)
    try:
        call = next(flow)
        while True:
            try:
                out = await ainvoke_with_retry(
                    call.runnable, call.messages, settings, stage=stage, usage=usage, sleep=sleep, rand=rand
                )
            except ProviderCallError as err:
                call = flow.throw(err)
            else:
                call = flow.send(out)
    except StopIteration as stop:
        return stop.value

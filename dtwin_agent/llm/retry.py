"""Transport failures of model calls: what each one is, which are retried, and every retry counted.

The providers' own retries are off (``max_retries=0`` on every client this package builds), so no
request is ever re-sent unseen: LangChain's ``Runnable.with_retry`` (tenacity: exponential backoff
with jitter, a retry predicate, a stop after N attempts) retries the call, and each attempt goes
through a counter, so ``usage`` reports every retry.

Errors are classified by what they are (:func:`classify_error`): LangChain's provider-neutral
``ModelError`` types where the integration raises them (``is_retryable``); else the HTTP status on
the exception or its response (401/403 ``auth``; 408, 409, 429 and 5xx ``transient``; other 4xx
``fatal``); else the transport classes of ``httpx`` / ``httpx2`` / ``openai`` / ``anthropic`` /
``requests`` (timeouts, refused or dropped connections: ``transient``); else the answer-level ones
(``LengthFinishReasonError``, ``OutputParserException``: ``output``, the answer itself was cut off
or refused; the caller's repair round-trip handles those).

Retries (``models.*``): at most ``max_retries``, waiting ``backoff_s * 2**n`` plus up to
``backoff_s`` of jitter, or what the server's ``Retry-After`` asks if that is longer (at most
60 s); a retry starts only while ``elapsed + timeout_s <=
retry_budget_s``, so with the defaults (timeout 60 s, 3 retries, budget 150 s) a provider that
never answers costs about two minutes, and a rate limit gets all four attempts within seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableLambda

from dtwin_agent.config import Settings
from dtwin_agent.errors import DTwinError, ErrorKind, ProviderCallError
from dtwin_agent.llm.usage import Usage

__all__ = [
    "MAX_DELAY_S",
    "classify_error",
    "invoke_with_retry",
    "model_label",
    "retry_after_of",
    "status_code_of",
]

MAX_DELAY_S = 60.0
_MAX_QUOTED = 300

# (module, class names): looked up only in modules already imported; a provider package that was
# never imported cannot have raised anything
_TRANSPORT = (
    ("httpx", ("TransportError",)),
    ("httpx2", ("TransportError",)),
    ("openai", ("APIConnectionError",)),  # APITimeoutError is one
    ("anthropic", ("APIConnectionError",)),
    ("requests", ("ConnectionError", "Timeout")),
)
_OUTPUT = (
    ("openai", ("LengthFinishReasonError", "ContentFilterFinishReasonError")),
    ("langchain_core.exceptions", ("OutputParserException",)),
)


def _loaded(table: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, names in table:
        module = sys.modules.get(module_name)
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status carried by a provider exception or its ``response``, if any."""
    for holder in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "status", "http_status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds a server asked to wait (the ``Retry-After`` header, in seconds), if it did."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None  # absent, or an HTTP date: the backoff decides


def classify_error(exc: BaseException) -> ErrorKind:
    """``transient`` (retry), ``auth`` (401/403), ``output`` (the answer was cut off) or ``fatal``.

    LangChain's own taxonomy first (``langchain_core.exceptions.ModelError`` and its
    ``is_retryable``, raised by integrations such as langchain-openai), then the answer-level
    errors (an answer cut off by the token limit arrives with its HTTP 200 attached), then the
    HTTP status of an error response, then the transport classes of the HTTP clients.
    """
    from langchain_core import exceptions as lc

    model_error = getattr(lc, "ModelError", None)  # langchain-core >= 1.7
    if model_error is not None and isinstance(exc, model_error):
        if isinstance(exc, (lc.ModelAuthenticationError, lc.ModelPermissionDeniedError)):
            return "auth"
        return "transient" if exc.is_retryable else "fatal"
    if isinstance(exc, _loaded(_OUTPUT)):  # the answer itself (langchain-openai attaches its HTTP 200)
        return "output"
    status = status_code_of(exc)
    if status in (401, 403):
        return "auth"
    if status is not None and status >= 400:
        return "transient" if status in (408, 409, 429) or status >= 500 else "fatal"
    if isinstance(exc, (TimeoutError, ConnectionError, *_loaded(_TRANSPORT))):
        return "transient"
    return "fatal"


def model_label(model: Any) -> str:
    """``provider:model`` of a chat model for messages, e.g. ``openai:gpt-4o``.

    A model's own ``name`` wins (the local server's models are named ``local:NAME``); otherwise
    LangChain's tracing metadata (``ls_provider``, ``ls_model_name``); else the class name.
    """
    name = getattr(model, "name", None)
    if isinstance(name, str) and name.strip():
        return name.strip()
    try:
        params = model._get_ls_params()  # langchain's own tracing metadata
    except Exception:  # noqa: BLE001 - any model, any failure: fall back to the class name
        params = {}
    provider, model_name = params.get("ls_provider"), params.get("ls_model_name")
    if provider and model_name:
        return f"{provider}:{model_name}"
    return str(provider or model_name or type(model).__name__)


def _quote(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:_MAX_QUOTED]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _provider_error(
    exc: BaseException, label: str, stage: str, attempts: int, seconds: float, settings: Settings
) -> ProviderCallError:
    from dtwin_agent.llm.models import API_KEY_ENV

    kind = classify_error(exc)
    status = status_code_of(exc)
    where = f"{label} ({stage})"
    provider = label.partition(":")[0]
    models = settings.models
    if kind == "auth":
        env = API_KEY_ENV.get(provider, "the provider's API key variable")
        msg = f"{where}: the API key was rejected (HTTP {status or 401}); check {env} or models.*_api_key"
    elif kind == "transient":
        msg = (
            f"{where} failed after {attempts} attempt(s) in {seconds:.3g} s (rate limit, timeout, "
            f"connection or server error; models.timeout_s = {models.timeout_s:g}, "
            f"max_retries = {models.max_retries}, retry_budget_s = {models.retry_budget_s:g})"
        )
    elif kind == "output":
        msg = f"{where}: the provider rejected the model's answer"
    else:
        msg = f"{where}: request failed" + (f" (HTTP {status})" if status else "")
    return ProviderCallError(
        f"{msg}: {_quote(exc)}",
        provider=provider,
        stage=stage,
        kind=kind,
        status_code=status,
        attempts=attempts,
    )


def _rejected_answer_usage(exc: BaseException) -> dict[str, int]:
    """What an answer the provider refused still cost (``Usage.add`` arguments).

    An answer cut off by the token limit was read and generated in full (the OpenAI SDK's
    ``LengthFinishReasonError.completion.usage``); without an answer: ``calls=0`` and no tokens.
    """
    counted = getattr(getattr(exc, "completion", None), "usage", None)
    if counted is None or not isinstance(getattr(counted, "prompt_tokens", None), int):
        return {"calls": 0}
    details = getattr(counted, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    return {
        "calls": 1,
        "input_tokens": counted.prompt_tokens,
        "output_tokens": int(getattr(counted, "completion_tokens", 0) or 0),
        "cached_input_tokens": cached if isinstance(cached, int) else 0,
    }


def invoke_with_retry(
    runnable: Any,
    messages: Sequence[BaseMessage],
    settings: Settings,
    *,
    label: str,
    stage: str = "model",
    usage: Usage | None = None,
) -> Any:
    """``runnable.invoke(messages)`` under ``with_retry``, every attempt counted in ``usage``.

    Args:
        runnable: a chat model, or its ``with_structured_output(..., include_raw=True)``.
        messages: the conversation.
        settings: ``models.max_retries``, ``backoff_s``, ``timeout_s`` and ``retry_budget_s``.
        label: ``provider:model`` for messages (:func:`model_label`).
        stage: the stage name for usage and messages.
        usage: where the call is recorded: one call on success, its retries and wall seconds
            either way (tokens from the answer's ``usage_metadata``; an answer the provider
            refused, e.g. cut off by the token limit, with the tokens it cost).

    Returns:
        What the runnable returned.

    Raises:
        ProviderCallError: retries exhausted or the budget spent (``transient``), or at once for
            what retrying cannot fix (``auth``: 401/403; ``fatal``: other 4xx, unknown errors;
            ``output``: the provider refused the answer itself). The message names the provider,
            the model and the stage, e.g. ``openai:gpt-4o (refine)``.

    """
    models = settings.models
    attempts = 0
    started = time.monotonic()
    asked = (0.0, 0.0)  # (when, seconds): a server's Retry-After on the last failure

    def attempt(msgs: list[BaseMessage]) -> Any:
        nonlocal attempts
        when, seconds = asked
        rest = when + seconds - time.monotonic()  # the backoff may have waited less than asked
        if attempts and rest > 0:
            time.sleep(rest)
        attempts += 1
        return runnable.invoke(msgs)

    def retry_on(exc: BaseException) -> bool:
        nonlocal asked
        hint = min(retry_after_of(exc) or 0.0, MAX_DELAY_S)
        asked = (time.monotonic(), hint)
        in_budget = time.monotonic() - started + hint + models.timeout_s <= models.retry_budget_s
        return in_budget and not isinstance(exc, DTwinError) and classify_error(exc) == "transient"

    retrying = RunnableLambda(attempt, name=stage).with_retry(
        retry_if_exception_type=retry_on,
        stop_after_attempt=models.max_retries + 1,
        wait_exponential_jitter=True,
        exponential_jitter_params={
            "initial": models.backoff_s,
            "max": MAX_DELAY_S,
            "jitter": models.backoff_s,
        },
    )
    try:
        result = retrying.invoke(list(messages))
    except DTwinError:
        raise
    except Exception as exc:
        seconds = time.monotonic() - started
        if usage is not None:
            usage.add(stage, seconds=seconds, retries=max(0, attempts - 1), **_rejected_answer_usage(exc))
        raise _provider_error(exc, label, stage, attempts, seconds, settings) from exc
    if usage is not None:
        message = result.get("raw") if isinstance(result, dict) else result
        usage.add_message(stage, message, seconds=time.monotonic() - started, retries=attempts - 1)
    return result

"""Transport failures: classified by what they are, retried by with_retry, every retry counted.

The last tests go through the real ``ChatOpenAI`` client against a small OpenAI-compatible HTTP
server on 127.0.0.1, built exactly as the package builds its clients (``chat_model`` for
``openai:`` with a base URL, ``local_client_options`` for the local llama.cpp server): a request
the server does not answer in time is re-sent only by the retry layer, and counted.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Any

import pytest
from helpers.fakes import ScriptedChatModel, StatusError
from helpers.openai_server import Behave, OpenAIServer, send_completion, send_stream
from langchain_core.messages import HumanMessage, SystemMessage

from dtwin_agent.config import Settings
from dtwin_agent.errors import ProviderCallError
from dtwin_agent.llm.call import invoke_structured
from dtwin_agent.llm.parsing import parse_granularity
from dtwin_agent.llm.retry import classify_error, invoke_with_retry, model_label
from dtwin_agent.llm.schemas import GranularityChoice
from dtwin_agent.llm.usage import Usage

MESSAGES = [SystemMessage("Choose a granularity."), HumanMessage("<query>the mug's handle</query>")]
ANSWER = '{"granularity": "part", "reason": "a handle"}'


class RateLimited(Exception):
    status_code = 429


def scripted(*answers: Any) -> ScriptedChatModel:
    """A chat model answering ``answers`` in turn (an exception is raised); ``len(model.calls)`` counts."""
    script = iter(answers)
    return ScriptedChatModel(respond=lambda messages: next(script))


def settings(**models: Any) -> Settings:
    return Settings(models={"max_retries": 3, "backoff_s": 0.0, "structured_output": "prompt", **models})


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff waits (tenacity sleeps through ``time.sleep``), recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


# -- the retry policy -------------------------------------------------------------------------------


def test_rate_limit_twice_then_answer_is_retried_and_counted(waits):
    model = scripted(RateLimited("slow down"), StatusError(503), ANSWER)
    usage = Usage()
    result = invoke_structured(
        model,
        MESSAGES,
        GranularityChoice,
        parse=parse_granularity,
        settings=settings(backoff_s=0.5),
        usage=usage,
        stage="granularity",
    )
    assert result.parsed.granularity == "part" and len(model.calls) == 3
    row = usage.stages["granularity"]
    assert (row.calls, row.retries) == (1, 2)
    # exponential backoff with jitter: 0.5 * 2**n plus up to 0.5
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 1.5


def test_a_servers_retry_after_is_honoured_when_longer_than_the_backoff(waits):
    limited = RateLimited("slow down")
    limited.response = SimpleNamespace(headers={"retry-after": "7"})
    model = scripted(limited, ANSWER)
    usage = Usage()
    invoke_with_retry(model, MESSAGES, settings(), label="openai:m", stage="refine", usage=usage)
    assert len(model.calls) == 2 and usage.stages["refine"].retries == 1
    assert max(waits) == pytest.approx(7.0, abs=0.5)  # backoff 0 s, the server asked for 7


def test_unauthorized_fails_at_once_naming_the_key_variable(waits):
    model = scripted(StatusError(401, "Incorrect API key provided"), ANSWER)
    with pytest.raises(ProviderCallError, match="API key was rejected") as info:
        invoke_with_retry(model, MESSAGES, settings(), label="openai:gpt-4o", stage="granularity")
    assert len(model.calls) == 1 and waits == []
    assert (info.value.kind, info.value.status_code, info.value.attempts) == ("auth", 401, 1)
    assert str(info.value).startswith("openai:gpt-4o (granularity): the API key was rejected (HTTP 401)")
    assert "OPENAI_API_KEY" in str(info.value)


def test_bad_request_is_not_retried():
    model = scripted(StatusError(400, "invalid model"), ANSWER)
    with pytest.raises(ProviderCallError, match=r"openai:nope \(refine\): request failed \(HTTP 400\)"):
        invoke_with_retry(model, MESSAGES, settings(), label="openai:nope", stage="refine")
    assert len(model.calls) == 1


def test_timeouts_exhausted_give_one_clear_line_and_count_the_retries(waits):
    model = scripted(*[TimeoutError("read timed out")] * 3)
    usage = Usage()
    with pytest.raises(ProviderCallError) as info:
        invoke_with_retry(
            model, MESSAGES, settings(max_retries=2), label="openai:gpt-4o", stage="refine", usage=usage
        )
    message = str(info.value)
    assert message.startswith("openai:gpt-4o (refine) failed after 3 attempt(s)")
    assert "models.timeout_s = 60" in message and "TimeoutError: read timed out" in message
    assert "\n" not in message
    assert info.value.kind == "transient" and len(model.calls) == 3 and len(waits) == 2
    assert (usage.stages["refine"].calls, usage.stages["refine"].retries) == (0, 2)


def test_no_retry_starts_that_could_end_after_the_budget(waits):
    model = scripted(TimeoutError("read timed out"), ANSWER)
    with pytest.raises(ProviderCallError, match="after 1 attempt"):
        invoke_with_retry(
            model, MESSAGES, settings(timeout_s=30, retry_budget_s=20), label="openai:m", stage="refine"
        )
    assert len(model.calls) == 1


def _errors() -> dict[str, tuple[BaseException, str]]:
    openai = pytest.importorskip("openai")
    import httpx2
    from langchain_core import exceptions as lc

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")

    def response(code: int) -> Any:
        return httpx2.Response(code, request=request)

    return {
        "rate_limit": (openai.RateLimitError("rate", response=response(429), body=None), "transient"),
        "timeout": (openai.APITimeoutError(request=request), "transient"),
        "connection": (openai.APIConnectionError(request=request), "transient"),
        "internal_server": (openai.InternalServerError("x", response=response(500), body=None), "transient"),
        "bad_gateway": (openai.APIStatusError("bad gw", response=response(502), body=None), "transient"),
        "overloaded_529": (
            openai.APIStatusError("overloaded", response=response(529), body=None),
            "transient",
        ),
        "unauthorized": (openai.AuthenticationError("bad key", response=response(401), body=None), "auth"),
        "forbidden": (openai.PermissionDeniedError("no", response=response(403), body=None), "auth"),
        "bad_request": (openai.BadRequestError("bad", response=response(400), body=None), "fatal"),
        "not_found": (openai.NotFoundError("no model", response=response(404), body=None), "fatal"),
        "httpx_read_timeout": (httpx2.ReadTimeout("slow", request=request), "transient"),
        "httpx_status": (
            httpx2.HTTPStatusError("503", request=request, response=response(503)),
            "transient",
        ),
        "langchain_timeout": (lc.ModelTimeoutError("slow"), "transient"),
        "langchain_rate_limit": (lc.ModelRateLimitError("slow down"), "transient"),
        "langchain_auth": (lc.ModelAuthenticationError("bad key"), "auth"),
        "langchain_context_overflow": (lc.ContextOverflowError("too long"), "fatal"),
        "builtin_timeout": (TimeoutError(), "transient"),
        "builtin_connection": (ConnectionResetError(), "transient"),
        "named_like_a_rate_limit": (type("RateLimitError", (Exception,), {})(), "fatal"),
        "value_error": (ValueError("bug"), "fatal"),
    }


@pytest.mark.parametrize("case", list(_errors()))
def test_classify_error_by_status_and_class(case):
    exc, kind = _errors()[case]
    assert classify_error(exc) == kind


def test_an_answer_cut_off_is_an_output_error():
    openai = pytest.importorskip("openai")
    from langchain_core.exceptions import OutputParserException
    from openai.types.chat import ChatCompletion

    cut = ChatCompletion.model_construct(id="c", choices=[], created=0, model="m", object="chat.completion")
    assert classify_error(openai.LengthFinishReasonError(completion=cut)) == "output"
    assert classify_error(OutputParserException("not JSON")) == "output"


# -- through the real client, against an OpenAI-compatible server ----------------------------------


@pytest.fixture
def serve() -> Iterator[Callable[[Behave], OpenAIServer]]:
    pytest.importorskip("langchain_openai")
    servers: list[OpenAIServer] = []

    def start(behave: Behave) -> OpenAIServer:
        servers.append(OpenAIServer(behave))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _remote(server: OpenAIServer, **models: Any) -> tuple[Any, Settings]:
    from dtwin_agent.llm.models import chat_model

    config = settings(llm="openai:test-llm", llm_base_url=server.url, llm_api_key="k", **models)
    return chat_model("llm", config), config


def _ask(model: Any, config: Settings, usage: Usage) -> Any:
    return invoke_structured(
        model,
        MESSAGES,
        GranularityChoice,
        parse=parse_granularity,
        settings=config,
        usage=usage,
        stage="refine",
    )


def test_a_request_past_its_timeout_is_resent_only_by_the_retry_layer_and_counted(serve):
    """Issue 12: ~630 s lost to a client re-sending after its timeout while usage said 0 retries."""

    def behave(n: int, handler: BaseHTTPRequestHandler, body: dict) -> None:
        if n == 1:
            time.sleep(3.0)  # past the client's timeout: the client gives up
        send_completion(handler, ANSWER, model=body["model"])

    server = serve(behave)
    model, config = _remote(server, timeout_s=1.0, max_retries=3)
    assert model.max_retries == 0  # the client itself never re-sends
    usage = Usage()
    result = _ask(model, config, usage)
    assert result.parsed.granularity == "part"
    row = usage.stages["refine"]
    assert len(server.requests) >= 2  # (more only when a loaded machine delays the answer past 1 s)
    assert row.retries == len(server.requests) - 1  # every request the server saw is in usage
    assert (row.calls, row.input_tokens) == (1, 50) and row.seconds >= 1.0


def test_without_retries_a_timed_out_request_is_sent_once_and_named(serve):
    def behave(n: int, handler: BaseHTTPRequestHandler, body: dict) -> None:
        time.sleep(2.0)
        send_completion(handler, ANSWER, model=body["model"])

    server = serve(behave)
    model, config = _remote(server, timeout_s=0.5, max_retries=0)
    with pytest.raises(ProviderCallError) as info:
        _ask(model, config, Usage())
    assert len(server.requests) == 1
    assert str(info.value).startswith("openai:test-llm (refine) failed after 1 attempt(s)")
    assert "TimeoutError: Request timed out" in str(info.value)


def test_local_server_a_long_prompt_with_heartbeats_is_not_a_stall(serve):
    """llama.cpp streams SSE comments while it reads a prompt: slow but alive is never cut off."""
    from langchain_openai import ChatOpenAI

    from dtwin_agent.offline.local_llm import local_client_options

    server = serve(
        lambda n, handler, body: send_stream(handler, ANSWER, model=body["model"], heartbeats=10, every=0.2)
    )
    config = settings(local_stall_s=1.0, structured_output="auto")  # json_schema, streamed
    model = ChatOpenAI(**local_client_options(server.url, "tiny-gguf", config))
    usage = Usage()
    result = _ask(model, config, usage)  # 2 s in all, twice the 1 s stall limit
    assert result.parsed.granularity == "part"
    assert len(server.requests) == 1 and server.requests[0]["stream"] is True
    row = usage.stages["refine"]
    assert (row.calls, row.retries, row.input_tokens, row.output_tokens) == (1, 0, 50, 9)


def test_local_server_streams_without_langchains_parsed_false_alarm(serve):
    from langchain_openai import ChatOpenAI

    from dtwin_agent.offline.local_llm import _PARSED_FALSE_ALARM, local_client_options

    server = serve(lambda n, handler, body: send_stream(handler, ANSWER, model=body["model"]))
    config = settings(structured_output="auto")
    model = ChatOpenAI(**local_client_options(server.url, "tiny-gguf", config))
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")  # what langchain-openai says when nothing filters it
        _ask(model, config, Usage())
    alarms = [str(w.message) for w in raw if "serializer" in str(w.message)]
    assert alarms and all(re.match(_PARSED_FALSE_ALARM, text) for text in alarms)
    with warnings.catch_warnings(record=True) as shown:
        warnings.filterwarnings("always", category=UserWarning, append=True)  # behind ours
        _ask(model, config, Usage())
    assert not [w for w in shown if "serializer" in str(w.message)]


def test_local_server_a_stall_is_retried_counted_and_named_local(serve):
    from langchain_openai import ChatOpenAI

    from dtwin_agent.offline.local_llm import local_client_options

    def behave(n: int, handler: BaseHTTPRequestHandler, body: dict) -> None:
        stall = 3.0 if n == 1 else 0.0  # the first one stalls
        send_stream(handler, ANSWER, model=body["model"], heartbeats=1, every=stall)

    server = serve(behave)
    config = settings(local_stall_s=1.0, max_retries=3)
    model = ChatOpenAI(**local_client_options(server.url, "tiny-gguf", config))
    assert model_label(model) == "local:tiny-gguf"
    usage = Usage()
    result = _ask(model, config, usage)
    assert result.parsed.granularity == "part"
    assert len(server.requests) >= 2 and usage.stages["refine"].retries == len(server.requests) - 1
    assert usage.stages["refine"].calls == 1


def test_errors_name_provider_and_model_not_the_runnable(serve):
    """Issue 11: "RunnableSequence (granularity)" becomes "openai:test-llm (granularity)"."""

    def behave(n: int, handler: BaseHTTPRequestHandler, body: dict) -> None:
        data = b'{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}'
        handler.send_response(401)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    server = serve(behave)
    model, config = _remote(server, structured_output="auto")
    with pytest.raises(ProviderCallError) as info:
        invoke_structured(
            model, MESSAGES, GranularityChoice, parse=parse_granularity, settings=config, stage="granularity"
        )
    assert str(info.value).startswith("openai:test-llm (granularity): the API key was rejected (HTTP 401)")
    assert "RunnableSequence" not in str(info.value) and len(server.requests) == 1


def test_an_answer_cut_off_by_the_token_limit_is_counted_with_its_tokens(serve):
    """Issue 12: a local answer that ran to max_tokens cost minutes, and usage showed none of it."""

    def behave(n: int, handler: BaseHTTPRequestHandler, body: dict) -> None:
        if n == 1:  # the native call: cut off at the token limit
            cut = '{"granularity": "pa'
            send_completion(
                handler, cut, model=body["model"], tokens=(1452, 1024), finish_reason="length", cached=1400
            )
        else:  # the repair round-trip
            send_completion(handler, ANSWER, model=body["model"], tokens=(1500, 12))

    server = serve(behave)
    model, config = _remote(server, structured_output="json_schema", max_retries=0)
    usage = Usage()
    result = _ask(model, config, usage)
    assert result.parsed.granularity == "part" and result.attempts == 2
    assert any("length limit" in note for note in result.report.notes)
    row = usage.stages["refine"]
    assert len(server.requests) == 2 and row.calls == 2 and row.retries == 0
    assert (row.input_tokens, row.output_tokens, row.cached_input_tokens) == (1452 + 1500, 1024 + 12, 1400)

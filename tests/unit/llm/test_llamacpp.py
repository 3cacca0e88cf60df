"""The local LLM reports what it reads and writes as it streams; its server start-up is a stage of its own."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TypedDict

import pytest
from helpers.openai_server import OpenAIServer, send_completion
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from dtwin_agent.llm.usage import Usage
from dtwin_agent.progress import ProgressEvent, stream_graph

pytest.importorskip("langchain_openai")

ANSWER = '{"granularity": "part", "reason": "a wheel is a part"}'


class Choice(BaseModel):
    granularity: str
    reason: str


def llamacpp_stream(handler: BaseHTTPRequestHandler, body: dict, *, trailing: bool) -> None:
    """As llama.cpp's server streams with return_progress: prompt progress, tokens, usage."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}

    def send(chunk: dict) -> None:
        handler.wfile.write(f"data: {json.dumps({**base, **chunk})}\n\n".encode())
        handler.wfile.flush()

    role = [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    for processed in (0, 512, 1024, 1200):
        progress = {"total": 1200, "cache": 0, "processed": processed, "time_ms": processed * 10}
        send({"choices": role, "prompt_progress": progress})
    for piece in (ANSWER[:15], ANSWER[15:30], ANSWER[30:]):
        send({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
    send({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 1200, "completion_tokens": 9, "total_tokens": 1209}
    send({"choices": [], "usage": {**usage, "prompt_tokens_details": {"cached_tokens": 1000}}})
    if trailing:  # a last chunk without usage (the structured-output stream keeps the last chunk's)
        send({"choices": [], "timings": {"prompt_n": 1200, "predicted_n": 9}})
    handler.wfile.write(b"data: [DONE]\n\n")
    handler.wfile.flush()


class _S(TypedDict, total=False):
    raw: object


@pytest.mark.parametrize("trailing", [False, True], ids=["usage-last", "chunk-after-usage"])
def test_tokens_read_and_written_stream_as_progress(trailing):
    from dtwin_agent.llm.llamacpp import LlamaCppChatOpenAI
    from dtwin_agent.offline.local_llm import local_client_options

    server = OpenAIServer(lambda n, handler, body: llamacpp_stream(handler, body, trailing=trailing))
    try:
        model = LlamaCppChatOpenAI(**local_client_options(server.url, "tiny-gguf"))

        def refine(state):
            out = model.with_structured_output(Choice, include_raw=True).invoke("which level?")
            return {"raw": out}

        builder = StateGraph(_S)
        builder.add_node("refine", refine)
        builder.add_edge(START, "refine")
        builder.add_edge("refine", END)
        events: list[ProgressEvent] = []
        final = stream_graph(builder.compile(), {}, on_progress=events.append)
    finally:
        server.close()
    assert server.requests[0]["return_progress"] is True and server.requests[0]["stream"] is True
    read = [(e.done, e.total) for e in events if e.unit == "tokens read"]
    assert read[0] == (0, 1200) and read[-1] == (1200, 1200)
    assert all(e.stage == "refine" for e in events if e.unit)
    written = [(e.done, e.total) for e in events if e.unit == "tokens written"]
    assert written[0][0] == 1 and written[-1] == (9, 9)
    out = final["raw"]
    assert out["parsed"].granularity == "part"
    assert (
        out["raw"].usage_metadata["input_tokens"] == 1200 and out["raw"].usage_metadata["output_tokens"] == 9
    )
    # the tokens llama.cpp served from its prompt cache reach the run's usage
    assert out["raw"].usage_metadata["input_token_details"]["cache_read"] == 1000
    recorded = Usage().add_message("refine", out["raw"]).stages["refine"]
    assert recorded.cached_input_tokens == 1000 and recorded.input_tokens == 1200


def test_a_model_invoked_outside_a_graph_reports_nothing_and_works():
    """A benchmark or script calling the local model directly must not fail on the progress stream."""
    from dtwin_agent.llm.llamacpp import LlamaCppChatOpenAI
    from dtwin_agent.offline.local_llm import local_client_options

    with OpenAIServer(lambda n, handler, body: llamacpp_stream(handler, body, trailing=False)) as server:
        model = LlamaCppChatOpenAI(**local_client_options(server.url, "tiny-gguf"))
        out = model.with_structured_output(Choice, include_raw=True).invoke("which level?")
    assert out["parsed"].granularity == "part"


def test_server_start_up_is_its_own_progress_line_and_usage_stage(monkeypatch, tmp_path):
    from dtwin_agent.offline import local_llm

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")

    class FakeServer:
        started_s = 12.5

        def alive(self):
            return True

    monkeypatch.setattr(local_llm, "start_server", lambda *a, **k: FakeServer())
    monkeypatch.setattr(local_llm, "_SERVERS", {})
    usage = Usage()

    def granularity(state):
        with usage.recording():
            local_llm.ensure_server(gguf, n_ctx=512, threads=2)
            local_llm.ensure_server(gguf, n_ctx=512, threads=2)  # running: no second start
        return {}

    builder = StateGraph(_S)
    builder.add_node("select_granularity", granularity)
    builder.add_edge(START, "select_granularity")
    builder.add_edge("select_granularity", END)
    events: list[ProgressEvent] = []
    stream_graph(builder.compile(), {}, on_progress=events.append)
    startup = [e for e in events if e.stage == "local_llm_start"]
    assert [e.kind for e in startup] == ["start", "end"] and startup[-1].seconds == 12.5
    assert "tiny.gguf, 2 threads" in startup[0].message
    assert usage.stages["local_llm_start"].seconds == 12.5 and usage.stages["local_llm_start"].calls == 1
    assert set(usage.stages) == {"local_llm_start"}  # not counted under the node's own stage


def test_structured_output_sends_llamacpp_a_bounded_schema_and_validates_the_answer():
    """Issue 12: a 1.5B model copying T_i into "semantic" repeated relations for 1024 tokens (7 min)."""
    from dtwin_agent.llm.llamacpp import LlamaCppChatOpenAI
    from dtwin_agent.llm.schemas import MAX_CHARS, RefineStepOutput, bounded_json_schema
    from dtwin_agent.offline.local_llm import local_client_options

    answers = iter([ANSWER, '{"granularity": 3}'])
    server = OpenAIServer(
        lambda n, handler, body: send_completion(handler, next(answers), model=body["model"])
    )
    try:
        model = LlamaCppChatOpenAI(**{**local_client_options(server.url, "tiny-gguf"), "streaming": False})
        good = model.with_structured_output(Choice, include_raw=True).invoke("which level?")
        bad = model.with_structured_output(Choice, include_raw=True).invoke("which level?")
    finally:
        server.close()
    schema = server.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["reason"]["maxLength"] == MAX_CHARS["reason"]
    assert isinstance(good["parsed"], Choice) and good["parsed"].granularity == "part"
    assert bad["parsed"] is None and bad["parsing_error"] is not None  # not valid: the caller repairs
    refine = bounded_json_schema(RefineStepOutput)
    kept = refine["$defs"]["KeptObject"]["properties"]
    assert kept["semantic"]["maxLength"] == MAX_CHARS["semantic"] and "maxLength" not in kept["id"]
    assert refine["properties"]["reasoning"]["maxLength"] == MAX_CHARS["reasoning"]
    assert refine["required"] == ["reasoning", "ids", "objects"]  # none left out: "ids" always written
    assert refine["$defs"]["KeptObject"]["required"] == ["id", "semantic", "reasoning"]
    assert "maxLength" not in RefineStepOutput.model_json_schema()["properties"]["reasoning"]  # others: none

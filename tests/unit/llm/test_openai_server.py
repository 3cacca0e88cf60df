"""End to end through ChatOpenAI against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server is a small scripted one (stdlib ``http.server``); it checks what it receives: the VLM
requests carry images, the LLM requests carry JSON(D) and no image.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("langchain_openai")

from helpers.fakes import StaticProposer, three_box_scene  # noqa: E402

from dtwin_agent.api import segment  # noqa: E402
from dtwin_agent.config import Settings  # noqa: E402

NAMES = {1: "blue bowl", 2: "red apple", 3: "green pear"}


class Handler(BaseHTTPRequestHandler):
    log: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.log.append(body)
        messages = body["messages"]
        user = messages[-1]["content"]
        parts = user if isinstance(user, list) else [{"type": "text", "text": user}]
        text = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
        if "Which granularity" in text:
            answer = {"granularity": "object", "reason": "whole objects"}
        elif "Label these regions" in text:
            ids = [int(x) for x in re.findall(r"#(\d+)", text.split("Label these regions:")[1].split(".")[0])]
            answer = {"objects": [{"id": i, "observation": "o", "semantic": NAMES[i]} for i in ids]}
        else:
            twin = json.loads(re.search(r"<digital_twin>(.*?)</digital_twin>", text, re.S).group(1))
            keep = [int(k) for k, v in twin.items() if "apple" in v["semantic"] or "pear" in v["semantic"]]
            answer = {
                "objects": [
                    {"id": i, "semantic": twin[str(i)]["semantic"], "reasoning": "fruit"} for i in keep
                ]
            }
        content = json.dumps(answer)
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "m"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    Handler.log = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_segment_through_chatopenai_base_url(server):
    img, masks = three_box_scene()
    settings = Settings().merged(
        {
            "models.vlm": "openai:test-vlm",
            "models.vlm_base_url": server,
            "models.vlm_api_key": "k",
            "models.llm": "openai:test-llm",
            "models.llm_base_url": server,
            "models.llm_api_key": "k",
            "cache.enabled": False,
            "perception.max_image_side": 96,
        }
    )
    result = segment(img, "something to eat", settings=settings, proposer=StaticProposer(masks))
    assert result.ids == [2, 3] and result.stop_reason == "converged"
    models = [b["model"] for b in Handler.log]
    assert models[:4] == ["test-vlm"] * 4 and set(models[4:]) == {"test-llm"}
    for body in Handler.log:
        content = json.dumps(body["messages"])
        if body["model"] == "test-vlm":
            assert "image_url" in content or '"image"' in content
        else:
            assert "base64" not in content and "<digital_twin>" in content
    # native structured output was requested with a JSON schema
    assert any("response_format" in b or "tools" in b for b in Handler.log)
    assert result.usage["stages"]["refine"]["input_tokens"] == 200

"""End to end through ChatOpenAI against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server is a small scripted one (stdlib ``http.server``); it checks what it receives: the VLM
requests carry images, the LLM requests carry JSON(D) and no image.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("langchain_openai")

from helpers.fakes import StaticProposer, three_box_scene  # noqa: E402
from helpers.openai_server import OpenAIServer, send_completion  # noqa: E402

from dtwin_agent.api import segment  # noqa: E402
from dtwin_agent.config import resolve_settings  # noqa: E402

NAMES = {1: "blue bowl", 2: "red apple", 3: "green pear"}


def answer(body: dict) -> str:
    """What the scripted VLM / LLM says to one request."""
    user = body["messages"][-1]["content"]
    parts = user if isinstance(user, list) else [{"type": "text", "text": user}]
    text = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
    if "Which granularity" in text:
        return json.dumps({"granularity": "object", "reason": "whole objects"})
    if "Label these regions" in text:
        ids = [int(x) for x in re.findall(r"#(\d+)", text.split("Label these regions:")[1].split(".")[0])]
        return json.dumps({"objects": [{"id": i, "observation": "o", "semantic": NAMES[i]} for i in ids]})
    if "<digital_twin" not in text:  # the request restated in plain words
        return json.dumps({"plain": re.search(r"<query>(.*?)</query>", text, re.S).group(1)})
    twin = json.loads(re.search(r"<digital_twin[^>]*>(.*?)</digital_twin>", text, re.S).group(1))
    keep = [int(k) for k, v in twin.items() if "apple" in v["semantic"] or "pear" in v["semantic"]]
    return json.dumps(
        {"objects": [{"id": i, "semantic": twin[str(i)]["semantic"], "reasoning": "fruit"} for i in keep]}
    )


@pytest.fixture
def server():
    def behave(n, handler, body):
        send_completion(handler, answer(body), model=body.get("model", "m"), tokens=(100, 20))

    with OpenAIServer(behave) as running:
        yield running


def test_segment_through_chatopenai_base_url(server):
    img, masks = three_box_scene()
    settings = resolve_settings(
        overrides={
            "models.vlm": "openai:test-vlm",
            "models.vlm_base_url": server.url,
            "models.vlm_api_key": "k",
            "models.llm": "openai:test-llm",
            "models.llm_base_url": server.url,
            "models.llm_api_key": "k",
            "cache.enabled": False,
            "perception.max_image_side": 96,
            "perception.granularity": "auto",  # the granularity call goes through the server too
        }
    )
    result = segment(img, "something to eat", settings=settings, proposer=StaticProposer(masks))
    assert result.ids == [2, 3] and result.stop_reason == "converged"
    models = [b["model"] for b in server.requests]
    assert models[:4] == ["test-vlm"] * 4 and set(models[4:]) == {"test-llm"}
    for body in server.requests:
        content = json.dumps(body["messages"])
        if body["model"] == "test-vlm":
            assert "image_url" in content or '"image"' in content
        else:  # the request restated in plain words (text only), then JSON(D), never pixels
            assert "base64" not in content
            assert "<digital_twin>" in content or "plain words" in content
    llm_calls = [json.dumps(b["messages"]) for b in server.requests if b["model"] == "test-llm"]
    assert "plain words" in llm_calls[0] and all("<digital_twin objects" in c for c in llm_calls[1:])
    # native structured output was requested with a JSON schema
    assert any("response_format" in b or "tools" in b for b in server.requests)
    assert result.usage["stages"]["refine"]["input_tokens"] == 100 * len(llm_calls) == 300

"""``dtwin segment`` against an OpenAI-compatible server that answers prose: exit 1, one line, files kept.

Issue 12 item 1: an unusable answer is a failure, not "every object": the mask is empty,
``result.json`` is written and says ``"ok": false``, stderr ends with one line naming the model and
what it answered.
"""

from __future__ import annotations

import json

import numpy as np
from helpers.openai_server import OpenAIServer, send_completion
from PIL import Image
from typer.testing import CliRunner

from dtwin_agent.cli import app

PROSE = "The dog is clearly waiting for its food: I would pick the bowl near the massage machine."


def test_segment_against_a_prose_server_exits_1_with_one_line(tmp_path) -> None:
    img = np.full((96, 128, 3), 230, np.uint8)
    img[10:50, 10:60] = (220, 30, 30)
    img[55:90, 70:120] = (30, 60, 210)
    Image.fromarray(img).save(tmp_path / "scene.png")
    out = tmp_path / "out"
    with OpenAIServer(
        lambda n, handler, body: send_completion(handler, PROSE, model="prose-model")
    ) as server:
        result = CliRunner().invoke(
            app,
            ["segment", str(tmp_path / "scene.png"), "the red region", "--llm", "openai:prose-model",
             "--base-url", server.url, "--proposer", "offline", "--out", str(out)],
        )  # fmt: skip
    log = server.requests
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0]
    line = errors[0]
    assert "openai:prose-model" in line and "prose instead of JSON" in line and "result.json" in line
    mask = np.asarray(Image.open(out / "mask.png"))
    assert mask.shape == (96, 128) and not mask.any()
    data = json.loads((out / "result.json").read_text())
    assert data["ok"] is False and data["ids"] == [] and data["stop_reason"] == "failed"
    assert "prose instead of JSON" in data["error"] and data["warnings"][-1] == data["error"]
    refine_calls = [b for b in log if "<digital_twin" in json.dumps(b)]
    repairs = [b for b in refine_calls if "could not be used" in b["messages"][-1]["content"]]
    assert len(repairs) == 1 and refine_calls[-1] is repairs[0]  # one repair request, then the failure

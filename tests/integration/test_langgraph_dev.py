"""``langgraph dev`` serves the graphs of langgraph.json; a langgraph-sdk client runs them on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BACKGROUND = (235, 235, 225)
SHAPES = {(220, 30, 30): (8, 40, 40, 88), (30, 160, 40): (52, 40, 76, 88), (30, 60, 210): (88, 40, 120, 88)}


def langgraph_command() -> list[str] | None:
    exe = Path(sys.executable).with_name("langgraph")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("langgraph")
    return [found] if found else None


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 2024:
            return port


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"langgraph dev exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"langgraph dev not ready after {timeout} s")


@pytest.fixture(params=["default", "strict_msgpack"])
def server(tmp_path: Path, request: pytest.FixtureRequest):
    command = langgraph_command()
    if command is None:
        pytest.skip("langgraph CLI not installed (pip install 'langgraph-cli[inmem]')")
    pytest.importorskip("langgraph_api", reason="langgraph-cli[inmem] extra not installed")
    pytest.importorskip("langgraph_sdk")
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),  # nothing the server writes lands in the real home
        "DTWIN_CACHE_DIR": str(tmp_path / "cache"),
        "DTWIN_PERCEPTION__MAX_IMAGE_SIDE": "128",
        "DTWIN_PERCEPTION__PROPOSER": "offline",
        "DTWIN_PERCEPTION__GRANULARITY": "object",
        "DTWIN_ACCESS__IMAGE_ROOTS": str(tmp_path),  # the served graphs read images only here
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        # strict: checkpoints rebuild only allow-listed types (the typed state must survive both)
        "LANGGRAPH_STRICT_MSGPACK": "true" if request.param == "strict_msgpack" else "false",
    }
    config = json.loads((REPO / "langgraph.json").read_text())
    # the repo's langgraph.json with its paths made absolute, so the server's files stay in tmp_path
    config["dependencies"] = [str((REPO / d).resolve()) for d in config["dependencies"]]
    config["graphs"] = {name: str(REPO / spec) for name, spec in config["graphs"].items()}
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            *command,
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(tmp_path / "langgraph.json"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, proc, timeout=120)
        except AssertionError as exc:
            log.flush()
            raise AssertionError(f"{exc}\n{(tmp_path / 'server.log').read_text()[-3000:]}") from None
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        log.close()


def test_langgraph_dev_serves_segment_and_chat(server: str, tmp_path: Path) -> None:
    from langgraph_sdk import get_sync_client

    rgb = np.full((128, 128, 3), BACKGROUND, dtype=np.uint8)
    for colour, (x0, y0, x1, y1) in SHAPES.items():
        rgb[y0:y1, x0:x1] = colour
    image = tmp_path / "scene.png"
    Image.fromarray(rgb).save(image)

    client = get_sync_client(url=server, timeout=120)
    graphs = {a["graph_id"] for a in client.assistants.search(limit=20)}
    assert {"segment", "chat"} <= graphs

    out = client.runs.wait(None, "segment", input={"image": str(image), "query": "the blue shape"})
    assert len(out["ids"]) == 1 and out["mask"]["size"] == [128, 128], out
    assert out["message"].startswith("chose 1 object(s)")
    refused = client.runs.wait(
        None, "segment", input={"image": "/etc/passwd", "query": "the blue shape"}, raise_error=False
    )
    assert "outside the allowed folders" in json.dumps(refused), refused

    thread = client.threads.create()
    first = client.runs.wait(
        thread["thread_id"],
        "chat",
        input={"image": str(image), "messages": [{"role": "user", "content": "the red shape"}]},
    )
    second = client.runs.wait(
        thread["thread_id"], "chat", input={"messages": [{"role": "user", "content": "the green shape"}]}
    )
    assert [t["turn"] for t in second["turns"]] == [1, 2]
    assert first["ids"] != second["ids"]
    assert [m["type"] for m in second["messages"]] == ["human", "ai", "human", "ai"]
    assert Path(second["turns"][1]["files"]["mask"]).is_relative_to(tmp_path / "cache")  # DTWIN_* applied

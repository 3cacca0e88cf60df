"""The MCP server, driven by the mcp SDK's own client: over stdio (a subprocess) and in-process."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mcp", reason="the mcp extra is not installed")

from helpers.scenes import ColourProposer, scene_settings, write_scene  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

from dtwin_agent.config import resolve_settings  # noqa: E402
from dtwin_agent.integrations.mcp_server import build_server  # noqa: E402
from dtwin_agent.integrations.tool import DTwinSegmentTool  # noqa: E402


def png_mask(result) -> np.ndarray:
    image = next(block for block in result.content if block.type == "image")
    assert image.mime_type == "image/png"
    return np.array(Image.open(io.BytesIO(base64.b64decode(image.data)))) > 0


async def exercise(client: Client, scene: Path, outside: Path) -> None:
    tools = await client.list_tools()
    names = {tool.name: tool for tool in tools.tools}
    assert set(names) == {"segment", "describe_twin"}
    assert set(names["segment"].input_schema["properties"]) == {"image_path", "query", "session_id"}

    described = await client.call_tool("describe_twin", {"image_path": str(scene)})
    assert not described.is_error, described.content
    objects = described.structured_content["objects"]
    assert len(objects) >= 3 and all(o["semantic"] and o["spatial"] for o in objects)
    assert described.content[0].text.startswith(f"{len(objects)} objects")

    result = await client.call_tool("segment", {"image_path": str(scene), "query": "the blue shape"})
    assert not result.is_error, result.content
    assert result.content[0].type == "text" and result.content[0].text.startswith("Chose 1 object(s): #")
    mask = png_mask(result)
    assert mask.shape == (128, 128) and mask[60, 100] and not mask[60, 20]
    artifact = result.structured_content
    assert artifact["mask_rle"]["size"] == [128, 128] and len(artifact["ids"]) == 1
    from dtwin_agent import masks as mask_ops
    from dtwin_agent.twin import RLE

    assert np.array_equal(mask_ops.decode(RLE.model_validate(artifact["mask_rle"])), mask)

    refused = await client.call_tool("segment", {"image_path": str(outside), "query": "the blue shape"})
    assert refused.is_error and "outside the allowed folders" in refused.content[0].text


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return write_scene(root / "scene.png")


@pytest.mark.slow
def test_mcp_server_over_stdio_with_the_sdk_client(scene: Path, tmp_path: Path) -> None:
    outside = write_scene(tmp_path / "outside.png")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DTWIN_CACHE_DIR": str(tmp_path / "cache"),
        "DTWIN_PERCEPTION__MAX_IMAGE_SIDE": "128",
        "DTWIN_PERCEPTION__PROPOSER": "offline",
        "DTWIN_PERCEPTION__GRANULARITY": "object",
        **{k: os.environ[k] for k in ("PYTHONPATH", "SYSTEMROOT") if k in os.environ},
    }
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "dtwin_agent.integrations.mcp_server", "--root", str(scene.parent)],
        env=env,
        cwd=str(Path(__file__).resolve().parents[3]),
    )

    async def main() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            await exercise(client, scene, outside)

    asyncio.run(asyncio.wait_for(main(), timeout=180))


def test_mcp_server_in_process_with_an_injected_tool(scene: Path, tmp_path: Path) -> None:
    settings = scene_settings(tmp_path / "cache")
    tool = DTwinSegmentTool(settings=settings, allowed_roots=[scene.parent], proposer=ColourProposer())
    outside = write_scene(tmp_path / "outside.png")

    async def main() -> None:
        async with Client(build_server(tool)) as client:
            await exercise(client, scene, outside)
            first = await client.call_tool(
                "segment", {"image_path": "scene.png", "query": "the red shape", "session_id": "m1"}
            )
            second = await client.call_tool(
                "segment", {"image_path": "scene.png", "query": "the green shape", "session_id": "m1"}
            )
            assert (first.structured_content["turn"], second.structured_content["turn"]) == (1, 2)

    asyncio.run(asyncio.wait_for(main(), timeout=120))


def call_tool(server_or_tool, name: str, args: dict):
    async def main():
        async with Client(server_or_tool) as client:
            return await client.call_tool(name, args)

    return asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_without_roots_the_server_reads_no_image(scene: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(scene.parent)  # the old default (the working directory) would have served it
    server = build_server(settings=resolve_settings(overrides={"cache.dir": str(tmp_path / "cache")}))
    for path in (str(scene), "scene.png", "/etc/shadow", "/no/such/file.png"):
        result = call_tool(server, "segment", {"image_path": path, "query": "the red shape"})
        assert result.is_error and "no image folders are allowed here" in result.content[0].text
        assert "--root" in result.content[0].text


def test_outside_the_roots_existing_and_missing_paths_get_the_same_answer(
    scene: Path, tmp_path: Path
) -> None:
    server = build_server(settings=resolve_settings(), roots=[scene.parent])
    answers = {}
    for path in ("/etc/shadow", "/etc/no-such-file", "/etc", str(tmp_path / "nope.png"), "../../etc/shadow"):
        result = call_tool(server, "describe_twin", {"image_path": path})
        assert result.is_error
        answers[path] = result.content[0].text.replace(path, "PATH")
    assert len(set(answers.values())) == 1, answers
    assert "outside the allowed folders" in next(iter(answers.values()))


def test_roots_come_from_the_settings_when_no_root_is_given(scene: Path, tmp_path: Path) -> None:
    settings = scene_settings(tmp_path / "cache", **{"access.image_roots": [str(scene.parent)]})
    tool = build_server(settings=settings)
    result = call_tool(tool, "segment", {"image_path": "missing.png", "query": "the red shape"})
    assert result.is_error and "no image at missing.png" in result.content[0].text


def test_a_busy_port_is_one_error_line_and_exit_1(tmp_path: Path) -> None:
    import socket

    from typer.testing import CliRunner

    from dtwin_agent.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["mcp", "--http", "--port", str(port), "--root", str(tmp_path)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}"), lines
    assert "--port" in lines[0]


@pytest.mark.slow
def test_the_module_entry_point_keeps_the_exit_codes(tmp_path: Path) -> None:
    import socket
    import subprocess

    env = {**os.environ, "DTWIN_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "dtwin_agent.integrations.mcp_server", "--http"]
    bad = subprocess.run([*command, "--port", "99999"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "1..65535" in bad.stderr
    usage = subprocess.run([*command, "--port", "x"], capture_output=True, text=True, env=env, timeout=120)
    assert usage.returncode == 2 and usage.stderr.strip().count("\n") == 0, usage.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        taken = subprocess.run(
            [*command, "--port", port], capture_output=True, text=True, env=env, timeout=120
        )
    assert taken.returncode == 1, taken.stderr
    lines = taken.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot listen on") and not any("Traceback" in x for x in lines)


def test_the_bound_port_queues_a_client_before_the_server_accepts() -> None:
    """The start line is printed after bind_port: a client connecting at once must not be refused."""
    import socket

    from dtwin_agent.integrations.mcp_server import bind_port

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sock = bind_port(port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # nobody accepts yet
            pass
    finally:
        sock.close()


@pytest.mark.slow
def test_the_http_server_serves_the_tools(scene: Path, tmp_path: Path) -> None:
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DTWIN_CACHE_DIR": str(tmp_path / "cache"),
        "DTWIN_PERCEPTION__MAX_IMAGE_SIDE": "128",
        "DTWIN_PERCEPTION__PROPOSER": "offline",
        "DTWIN_PERCEPTION__GRANULARITY": "object",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "dtwin_agent.integrations.mcp_server", "--http", "--port", str(port)]
        + ["--root", str(scene.parent)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert "MCP server on http://127.0.0.1" in server.stderr.readline()

        async def main() -> None:
            for _ in range(100):
                try:
                    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                        described = await client.call_tool("describe_twin", {"image_path": "scene.png"})
                        assert not described.is_error, described.content
                        assert len(described.structured_content["objects"]) >= 3
                        return
                except OSError:
                    await asyncio.sleep(0.2)
            raise AssertionError("the HTTP server never answered")

        asyncio.run(asyncio.wait_for(main(), timeout=120))
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_root_that_is_not_a_folder_is_refused_before_serving(tmp_path: Path, kind: str) -> None:
    """A typo'd --root would refuse every image while blaming the image: refuse the root at start."""
    from typer.testing import CliRunner

    from dtwin_agent.cli import app

    root = tmp_path / "fotos"
    if kind == "file":
        root.write_text("not a folder")
    result = CliRunner().invoke(app, ["mcp", "--root", str(root)])
    what = "does not exist" if kind == "missing" else "is not a folder"
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: allowed image folder {root} {what} (--root / access.image_roots)"
    )


def test_stdio_mode_says_on_stderr_that_it_serves(tmp_path: Path) -> None:
    """A person who types `dtwin mcp` sees one line, not a silent hang; stdout stays the protocol's."""
    import subprocess

    env = {**os.environ, "DTWIN_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "dtwin_agent.integrations.mcp_server", "--root", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.strip() == "MCP server on stdio, for an MCP client (Ctrl-C stops it)"

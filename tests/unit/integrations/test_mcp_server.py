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

from helpers.scenes import ColourProposer, write_scene  # noqa: E402
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
    settings = resolve_settings(
        overrides={
            "perception.max_image_side": 128,
            "perception.granularity": "object",
            "cache.dir": str(tmp_path / "cache"),
        }
    )
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

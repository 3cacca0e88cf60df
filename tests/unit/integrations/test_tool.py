"""DTwinSegmentTool: the standard LangChain tool tests, path confinement, and a run inside create_agent."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.scenes import ColourProposer, scene_settings, write_scene
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import ToolException
from langchain_tests.unit_tests import ToolsUnitTests
from PIL import Image

from dtwin_agent.api import SegmentationResult
from dtwin_agent.config import resolve_settings
from dtwin_agent.errors import ProviderCallError, SessionBusyError
from dtwin_agent.integrations.tool import DTwinSegmentTool, confine_path

PROVIDER = {"provider": "openai", "stage": "refine", "kind": "transient", "status_code": 503, "attempts": 5}


class ToolCallingFakeModel(GenericFakeChatModel):
    """A scripted chat model that accepts ``bind_tools`` (it ignores the tools)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFakeModel:
        return self


fast_settings = scene_settings


def fake_result(image_path: Path) -> SegmentationResult:
    """A finished result with one chosen object (what DTwinSegmentTool reads from a segmenter)."""
    from dtwin_agent import masks as mask_ops
    from dtwin_agent.twin import DigitalTwin, ImageInfo, ObjectDecision, ReasoningStep, TwinObject

    mask = np.zeros((128, 128), dtype=bool)
    mask[40:88, 8:40] = True
    obj = TwinObject(
        id=1,
        mask=mask_ops.encode(mask),
        bbox=(8, 40, 39, 87),
        area_pct=9.4,
        centroid=(23.5, 63.5),
        semantic="a red block",
        spatial="left",
    )
    twin = DigitalTwin(
        image=ImageInfo(width=128, height=128, sha256="ab" * 32, source=str(image_path)),
        granularity="object",
        objects=[obj],
    )
    step = ReasoningStep(step=1, objects={1: ObjectDecision(semantic="a red block", reasoning="it is red")})
    return SegmentationResult.from_state(
        {
            "twin": twin,
            "steps": [ReasoningStep(step=0, ids=[1]), step],
            "ids": [1],
            "mask": mask_ops.encode(mask),
            "message": "chose 1 object(s): 1 (converged)",
        }
    )


def fake_segmenter(path: Path, query: str, *, settings: Any = None) -> SegmentationResult:
    return fake_result(path)


class TestDTwinSegmentToolStandard(ToolsUnitTests):
    """langchain-tests' own checks (init, name, input schema, example args)."""

    @property
    def tool_constructor(self) -> type[DTwinSegmentTool]:
        return DTwinSegmentTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"segmenter": fake_segmenter, "max_file_mb": 5.0}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image_path": "kitchen.jpg", "query": "what would I cut bread with?", "session_id": "s1"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        env = {"DTWIN_PERCEPTION__MAX_IMAGE_SIDE": "96", "DTWIN_LLM": "offline"}
        expected = resolve_settings(environ={**os.environ, **env})
        assert expected.perception.max_image_side == 96
        return env, {}, {"settings": expected}


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return write_scene(root / "scene.png")


def call(tool: DTwinSegmentTool, **args: Any) -> ToolMessage:
    return tool.invoke({"type": "tool_call", "id": "call-1", "name": tool.name, "args": args})


def test_tool_schema_is_written_for_the_model() -> None:
    schema = DTwinSegmentTool(segmenter=fake_segmenter).tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"image_path", "query", "session_id"}
    assert schema["required"] == ["image_path", "query"]
    for prop in schema["properties"].values():
        assert len(prop["description"]) > 30


def test_tool_returns_content_and_artifact_with_fake_backend(scene: Path, tmp_path: Path) -> None:
    tool = DTwinSegmentTool(
        segmenter=fake_segmenter, allowed_roots=[scene.parent], output_dir=tmp_path / "out"
    )
    message = call(tool, image_path="scene.png", query="the red one")
    assert message.status == "success"
    assert message.content == "Chose 1 object(s): #1 a red block (it is red)"
    artifact = message.artifact
    assert artifact["ids"] == [1]
    assert artifact["mask_rle"]["size"] == [128, 128]
    assert Path(artifact["files"]["mask"]).is_file() and Path(artifact["files"]["overlay"]).is_file()
    assert artifact["twin_id"] == "abababababababab:object"


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("outside", "outside the allowed folders"),
        ("dotdot", "outside the allowed folders"),
        ("symlink_escape", "outside the allowed folders"),
        ("too_large", "over the"),
        ("missing", "no image at"),
        ("directory", "not a file"),
        ("empty_path", "image path is empty"),
    ],
)
def test_tool_refuses_bad_paths_with_a_hint(name: str, hint: str, scene: Path, tmp_path: Path) -> None:
    root = scene.parent
    secret = write_scene(tmp_path / "secret.png")
    paths = {
        "outside": str(secret),
        "dotdot": "../secret.png",
        "symlink_escape": "link.png",
        "too_large": "big.png",
        "missing": "nope.png",
        "directory": "sub",
        "empty_path": " ",
    }
    (root / "link.png").symlink_to(secret)
    (root / "big.png").write_bytes(b"\0" * (2 * 2**20))
    (root / "sub").mkdir()
    tool = DTwinSegmentTool(segmenter=fake_segmenter, allowed_roots=[root], max_file_mb=1.0)
    message = call(tool, image_path=paths[name], query="the red one")
    assert message.status == "error"
    assert hint in message.content


def test_symlink_inside_the_root_is_allowed(scene: Path) -> None:
    (scene.parent / "alias.png").symlink_to(scene)
    assert confine_path("alias.png", [scene.parent], 2**20) == scene.resolve()


def test_tool_refuses_an_empty_query(scene: Path) -> None:
    message = call(
        DTwinSegmentTool(segmenter=fake_segmenter, allowed_roots=[scene.parent]),
        image_path="scene.png",
        query="  ",
    )
    assert message.status == "error" and "query is empty" in message.content


def test_tool_reports_unreadable_images(scene: Path) -> None:
    (scene.parent / "broken.png").write_bytes(b"not an image at all")
    tool = DTwinSegmentTool(
        settings=fast_settings(scene.parent / "cache"),
        allowed_roots=[scene.parent],
        proposer=ColourProposer(),
    )
    message = call(tool, image_path="broken.png", query="the red one")
    assert message.status == "error" and message.content.startswith("bad input:")


def test_tool_runs_the_graph_on_a_scene(scene: Path, tmp_path: Path) -> None:
    proposer = ColourProposer()
    tool = DTwinSegmentTool(
        settings=fast_settings(tmp_path / "cache"), allowed_roots=[scene.parent], proposer=proposer
    )
    message = call(tool, image_path="scene.png", query="the red shape")
    assert message.status == "success", message.content
    assert message.content.startswith("Chose 1 object(s): #")
    artifact = message.artifact
    assert len(artifact["ids"]) == 1
    from dtwin_agent import masks as mask_ops
    from dtwin_agent.twin import RLE

    mask = mask_ops.decode(RLE.model_validate(artifact["mask_rle"]))
    assert mask.shape == (128, 128) and mask[60, 20] and not mask[60, 100]
    assert np.array_equal(np.array(Image.open(artifact["files"]["mask"])) > 0, mask)


def test_create_agent_receives_content_and_artifact(scene: Path, tmp_path: Path) -> None:
    from langchain.agents import create_agent

    tool = DTwinSegmentTool(
        settings=fast_settings(tmp_path / "cache"), allowed_roots=[scene.parent], proposer=ColourProposer()
    )
    model = ToolCallingFakeModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {
                            "id": "call-7",
                            "name": "dtwin_segment",
                            "args": {"image_path": str(scene), "query": "the blue shape"},
                        }
                    ],
                ),
                AIMessage(content="The blue shape is object 3."),
            ]
        )
    )
    agent = create_agent(model, tools=[tool], system_prompt="Use dtwin_segment for images.")
    result = agent.invoke({"messages": [HumanMessage("Segment the blue shape in scene.png")]})
    tool_messages = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 1
    reply = tool_messages[0]
    assert reply.tool_call_id == "call-7" and reply.status == "success"
    assert reply.content.startswith("Chose 1 object(s): #") and "blue" in reply.content
    assert reply.artifact["ids"] and reply.artifact["mask_rle"]["size"] == [128, 128]
    assert Path(reply.artifact["files"]["mask"]).is_file()
    assert result["messages"][-1].content == "The blue shape is object 3."


def test_create_agent_gets_the_error_hint(scene: Path) -> None:
    from langchain.agents import create_agent

    tool = DTwinSegmentTool(segmenter=fake_segmenter, allowed_roots=[scene.parent])
    model = ToolCallingFakeModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {
                            "id": "c1",
                            "name": "dtwin_segment",
                            "args": {"image_path": "/etc/passwd", "query": "x"},
                        }
                    ],
                ),
                AIMessage(content="I cannot read that file."),
            ]
        )
    )
    result = create_agent(model, tools=[tool]).invoke({"messages": [HumanMessage("segment /etc/passwd")]})
    reply = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert reply.status == "error" and "outside the allowed folders" in reply.content


def test_tool_session_turns_share_one_twin(scene: Path, tmp_path: Path) -> None:
    proposer = ColourProposer()
    tool = DTwinSegmentTool(
        settings=fast_settings(tmp_path / "cache"), allowed_roots=[scene.parent], proposer=proposer
    )
    first = call(tool, image_path="scene.png", query="the red shape", session_id="t1")
    second = call(tool, image_path="scene.png", query="the green shape", session_id="t1")
    assert first.status == second.status == "success", (first.content, second.content)
    assert (first.artifact["turn"], second.artifact["turn"]) == (1, 2)
    assert first.artifact["session_id"] == "t1"
    assert len(proposer.calls) == 1
    assert first.artifact["ids"] != second.artifact["ids"]


def _raise_cv2_error() -> None:
    import cv2

    cv2.resize(np.zeros((0, 0), np.uint8), (2, 2))


@pytest.mark.parametrize(
    ("failure", "hint"),
    [
        (MemoryError, "ran out of memory; try a smaller image"),
        (lambda: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")), "dtwin cache clear"),
        (_raise_cv2_error, "image processing failed (OpenCV: "),
        (lambda: {}["missing"], "an internal error (KeyError"),
        (lambda: (_ for _ in ()).throw(ProviderCallError("boom", **PROVIDER)), "try again later"),
        (
            lambda: (_ for _ in ()).throw(SessionBusyError("session s is busy: try again")),
            "session s is busy",
        ),
    ],
    ids=["memory", "sqlite", "opencv", "bug", "provider", "busy"],
)
def test_every_failure_becomes_a_tool_error_with_a_hint(
    failure: Any, hint: str, scene: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def segmenter(path: Path, query: str, *, settings: Any = None) -> SegmentationResult:
        if isinstance(failure, type):
            raise failure()
        failure()
        raise AssertionError("unreachable")

    tool = DTwinSegmentTool(segmenter=segmenter, allowed_roots=[scene.parent])
    with caplog.at_level(logging.WARNING, logger="dtwin_agent.integrations.tool"):
        message = call(tool, image_path="scene.png", query="the red one")
    assert message.status == "error" and hint in message.content, message.content
    record = next(r for r in caplog.records if r.name == "dtwin_agent.integrations.tool")
    assert record.getMessage().startswith("segmentation failed")


def test_unexpected_failures_are_logged_with_their_cause(
    scene: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def segmenter(path: Path, query: str, *, settings: Any = None) -> SegmentationResult:
        raise MemoryError("cannot allocate 8 GiB")

    tool = DTwinSegmentTool(segmenter=segmenter, allowed_roots=[scene.parent])
    with caplog.at_level(logging.WARNING, logger="dtwin_agent.integrations.tool"):
        with pytest.raises(ToolException, match="ran out of memory"):
            tool.segment_image("scene.png", "the red one")
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR and isinstance(record.exc_info[1], MemoryError)


def test_describe_twin_failures_become_tool_errors(scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dtwin_agent.api as api

    def boom(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.DatabaseError("file is not a database")

    monkeypatch.setattr(api, "build_twin", boom)
    tool = DTwinSegmentTool(segmenter=fake_segmenter, allowed_roots=[scene.parent])
    with pytest.raises(ToolException, match="building the twin failed: a database error"):
        tool.describe_twin("scene.png")


@pytest.mark.parametrize(
    ("session_id", "hint"),
    [("x" * 300, "session id is 300 characters long"), ("a\x00b", "control characters"), ("  ", "is empty")],
    ids=["300-chars", "nul", "spaces"],
)
def test_bad_session_ids_are_tool_errors(session_id: str, hint: str, scene: Path, tmp_path: Path) -> None:
    tool = DTwinSegmentTool(
        settings=fast_settings(tmp_path / "cache"), allowed_roots=[scene.parent], proposer=ColourProposer()
    )
    message = call(tool, image_path="scene.png", query="the red shape", session_id=session_id)
    assert message.status == "error" and hint in message.content, message.content


def test_a_failed_run_is_a_tool_error_with_a_hint(scene: Path, tmp_path: Path) -> None:
    """Issue 12: an unusable reasoning answer is an error the agent sees, never an empty success."""

    def failing(path: Path, query: str, *, settings: Any = None) -> SegmentationResult:
        error = "reasoning failed: the LLM openai:m gave prose instead of JSON at step 1"
        return fake_result(path).model_copy(update={"ids": [], "error": error, "stop_reason": "failed"})

    tool = DTwinSegmentTool(segmenter=failing, allowed_roots=[scene.parent], output_dir=tmp_path / "out")
    message = call(tool, image_path="scene.png", query="the red one")
    assert message.status == "error"
    assert "prose instead of JSON" in message.content and "stronger reasoning model" in message.content


def test_a_tool_without_roots_reads_no_image(scene: Path) -> None:
    """No ``allowed_roots`` and no ``access.image_roots``: every path is refused, existing or not."""
    cache = {"cache.dir": str(scene.parent / "cache")}  # environ={} drops the suite's cache folder
    tool = DTwinSegmentTool(segmenter=fake_segmenter, settings=resolve_settings(overrides=cache, environ={}))
    assert tool.settings.access.image_roots == []
    answers = [call(tool, image_path=path, query="the red one") for path in (str(scene), "/no/such.png")]
    assert all(m.status == "error" and "no image folders are allowed here" in m.content for m in answers)
    assert answers[0].content == answers[1].content.replace("/no/such.png", str(scene))
    with_setting = DTwinSegmentTool(
        segmenter=fake_segmenter,
        settings=resolve_settings(overrides={**cache, "access.image_roots": [str(scene.parent)]}, environ={}),
    )
    assert call(with_setting, image_path=str(scene), query="the red one").status == "success"

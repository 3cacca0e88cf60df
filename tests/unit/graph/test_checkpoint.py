"""The typed state checkpoints: a run interrupted before ``refine`` resumes from SQLite in a new graph."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from helpers.scenes import ColourProposer, write_scene
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from dtwin_agent.api import SegmentationResult
from dtwin_agent.config import resolve_settings
from dtwin_agent.graph import build_graph, recursion_limit
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.state import ProposedMask, checkpoint_serializer
from dtwin_agent.twin import DigitalTwin, ReasoningStep


def _settings(tmp_path: Path):
    return resolve_settings(
        overrides={
            "perception.max_image_side": 128,
            "perception.granularity": "object",
            "cache.enabled": False,
            "models.llm": "offline:lexical",
        }
    )


def _saver(path: Path) -> tuple[sqlite3.Connection, SqliteSaver]:
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn, serde=checkpoint_serializer())
    saver.setup()
    return conn, saver


def test_segment_graph_resumes_from_sqlite_in_a_new_graph_object(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = str(write_scene(tmp_path / "scene.png"))
    settings = _settings(tmp_path)
    context = Context(settings=settings, proposer=ColourProposer())
    inputs = {"image": image, "query": "the blue shape"}
    config = {"configurable": {"thread_id": "resume-1"}, "recursion_limit": recursion_limit(settings)}
    db = tmp_path / "checkpoints.sqlite"
    expected = SegmentationResult.from_state(build_graph().compile().invoke(inputs, context=context))

    conn, saver = _saver(db)
    first = build_graph().compile(checkpointer=saver, interrupt_before=["refine"])
    with caplog.at_level(logging.WARNING):
        first.invoke(inputs, config, context=context)
        paused = first.get_state(config)
    conn.close()
    assert paused.next == ("refine",)
    assert isinstance(paused.values["twin"], DigitalTwin) and "ids" not in paused.values

    conn, saver = _saver(db)  # a new connection and a new compiled graph: only the file is shared
    second = build_graph().compile(checkpointer=saver)
    with caplog.at_level(logging.WARNING):
        before = second.get_state(config).values
        final = second.invoke(None, config, context=context)
    conn.close()
    assert before["twin"] == paused.values["twin"]
    assert all(isinstance(p, ProposedMask) for p in before["proposals"])
    result = SegmentationResult.from_state(final)
    assert all(isinstance(step, ReasoningStep) for step in final["steps"])
    assert result.ids == expected.ids and len(result.ids) == 1
    assert result.steps == expected.steps and result.twin == expected.twin
    assert (result.mask == expected.mask).all() and result.message == expected.message
    assert not [r for r in caplog.records if "unregistered type" in r.getMessage()]


def test_checkpoint_serializer_rebuilds_the_state_types_a_strict_one_refuses(tmp_path: Path) -> None:
    image = str(write_scene(tmp_path / "scene.png"))
    settings = _settings(tmp_path)
    state = (
        build_graph()
        .compile()
        .invoke(
            {"image": image, "query": "the red shape"},
            context=Context(settings=settings, proposer=ColourProposer()),
        )
    )
    for value in (state["twin"], state["steps"], state["mask"]):
        allowed = checkpoint_serializer()
        assert allowed.loads_typed(allowed.dumps_typed(value)) == value
    strict = JsonPlusSerializer(allowed_msgpack_modules=None)  # LANGGRAPH_STRICT_MSGPACK=true
    assert isinstance(strict.loads_typed(strict.dumps_typed(state["twin"])), dict)

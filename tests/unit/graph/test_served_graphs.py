"""The LangGraph server entry points (graphs/*.py) read images only under the server's access.image_roots."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from helpers.scenes import ColourProposer, write_scene

from dtwin_agent.config import resolve_settings
from dtwin_agent.errors import ImageError
from dtwin_agent.graph.context import Context

GRAPHS = Path(__file__).resolve().parents[3] / "graphs"


def load_graph(name: str) -> Any:
    """Import graphs/NAME.py as the LangGraph server does (a file, not a package module)."""
    spec = importlib.util.spec_from_file_location(f"served_{name}", GRAPHS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.graph


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    return write_scene(tmp_path / "images" / "scene.png")


def context(tmp_path: Path, **extra: Any) -> Context:
    settings = resolve_settings(
        overrides={"perception.max_image_side": 128, "perception.granularity": "object", **extra}
    )
    return Context(settings=settings, proposer=ColourProposer())


def run(graph: Any, inputs: dict, ctx: Any, thread: str = "t") -> dict:
    from langgraph.checkpoint.memory import InMemorySaver

    graph = graph.copy(update={"checkpointer": InMemorySaver()}) if graph.checkpointer is None else graph
    return graph.invoke(inputs, {"configurable": {"thread_id": thread}}, context=ctx)


@pytest.mark.parametrize("name", ["segment", "chat"])
def test_without_roots_a_served_graph_reads_no_image(name: str, scene: Path, tmp_path: Path) -> None:
    graph = load_graph(name)
    with pytest.raises(ImageError, match="no image folders are allowed here"):
        run(graph, {"image": str(scene), "query": "the red shape"}, context(tmp_path))


@pytest.mark.parametrize("name", ["segment", "chat"])
def test_served_graphs_read_only_under_the_servers_roots(
    name: str, scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DTWIN_ACCESS__IMAGE_ROOTS", str(scene.parent))
    graph = load_graph(name)
    outside = write_scene(tmp_path / "outside.png")
    answers = set()
    for path in (str(outside), "/etc/shadow", "/etc/no-such-file", "../outside.png"):
        with pytest.raises(ImageError, match="outside the allowed folders") as raised:
            run(graph, {"image": path, "query": "the red shape"}, context(tmp_path))
        answers.add(str(raised.value).replace(path, "PATH"))
    assert len(answers) == 1  # the same answer whether or not the path exists
    # a run's context cannot widen the roots fixed when the server loaded the graph
    widened = {"settings": {"access": {"image_roots": ["/"]}, "perception": {"max_image_side": 128}}}
    with pytest.raises(ImageError, match="outside the allowed folders"):
        run(graph, {"image": str(outside), "query": "the red shape"}, widened)
    state = run(graph, {"image": "scene.png", "query": "the red shape"}, context(tmp_path), thread="ok")
    assert state["ids"]  # relative paths are looked up under the roots


def test_a_later_chat_turn_cannot_switch_to_an_outside_image(
    scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    monkeypatch.setenv("DTWIN_ACCESS__IMAGE_ROOTS", str(scene.parent))
    graph = load_graph("chat").copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "c"}}
    graph.invoke({"image": "scene.png", "query": "the red shape"}, config, context=context(tmp_path))
    with pytest.raises(ImageError, match="outside the allowed folders"):
        graph.invoke({"image": "/etc/passwd", "query": "the blue shape"}, config, context=context(tmp_path))


def test_the_library_graph_reads_any_path_it_is_given(scene: Path, tmp_path: Path) -> None:
    from dtwin_agent.graph import build_graph

    graph = build_graph().compile()
    assert "confine_image" not in graph.get_graph().nodes
    state = graph.invoke({"image": str(scene), "query": "the red shape"}, context=context(tmp_path))
    assert state["ids"]

"""Progress events through the graph: stage starts and ends, counters, any thread, no run -> nothing."""

from __future__ import annotations

import threading
from typing import TypedDict

import pytest
from helpers.fakes import StaticProposer, three_box_scene
from langgraph.graph import END, START, StateGraph

from dtwin_agent.api import build_twin, segment
from dtwin_agent.config import resolve_settings
from dtwin_agent.progress import ProgressEvent, emit, reporter, stream_graph


class BatchedProposer(StaticProposer):
    """A proposer that reports decoder batches as the protocol's ``on_progress(done, total)``."""

    def propose(self, image, granularity, *, on_progress=None):
        for done in (16, 32, 48, 64):
            on_progress(done, 64)
        return super().propose(image, granularity)


@pytest.fixture
def offline_settings():
    return resolve_settings(
        overrides={
            "models.vlm": "offline",
            "models.llm": "offline:lexical",
            "perception.granularity": "auto",  # every stage reports, the granularity choice included
            "cache.enabled": False,
        }
    )


def segment_scene(settings, proposer_class):
    """Segment the three-box scene; returns the result and every progress event."""
    img, masks = three_box_scene()
    events: list[ProgressEvent] = []
    result = segment(
        img, "the red box", settings=settings, proposer=proposer_class(masks), on_progress=events.append
    )
    return result, events


def test_segment_reports_every_stage_and_counter(offline_settings):
    result, events = segment_scene(offline_settings, BatchedProposer)
    assert result.ids
    starts = [e.stage for e in events if e.kind == "start"]
    ends = [e.stage for e in events if e.kind == "end"]
    expected = ["load_image", "select_granularity", "lookup_twin", "propose_masks", "assign_semantics"]
    assert starts[:5] == expected and ends[:5] == expected
    assert starts.count("refine") == ends.count("refine") == len(result.steps) - 1
    assert all(e.seconds is not None and e.seconds >= 0 for e in events if e.kind == "end")
    prompts = [(e.done, e.total) for e in events if e.stage == "propose_masks" and e.unit == "prompts"]
    assert prompts[-1] == (64, 64)
    labelled = [(e.done, e.total) for e in events if e.unit == "masks labelled"]
    assert labelled[-1] == (3, 3)
    steps = [(e.done, e.total) for e in events if e.stage == "refine" and e.unit == "steps"]
    assert steps[0] == (1, offline_settings.reasoning.max_refine_steps)
    end_of = {e.stage: e.message for e in events if e.kind == "end"}
    assert end_of["propose_masks"] == "3 masks" and end_of["select_granularity"] == "object level"
    assert end_of["refine"].startswith("step ") and "kept [" in end_of["refine"]


def test_build_twin_reports_too_and_events_are_ordered_per_stage(offline_settings):
    img, masks = three_box_scene()
    events: list[ProgressEvent] = []
    build_twin(img, settings=offline_settings, proposer=BatchedProposer(masks), on_progress=events.append)
    stages = [e.stage for e in events]
    for stage in set(stages):
        kinds = [e.kind for e in events if e.stage == stage]
        assert kinds[0] == "start" and kinds[-1] == "end"
    assert "refine" not in stages


def test_proposer_without_on_progress_still_works(offline_settings):
    result, events = segment_scene(offline_settings, StaticProposer)
    assert result.ids and not [e for e in events if e.unit == "prompts"]


class _S(TypedDict, total=False):
    x: int


def _graph(node):
    builder = StateGraph(_S)
    builder.add_node("work", node)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder.compile()


def test_reporter_works_from_other_threads_and_throttles():
    def node(state):
        report = reporter(unit="items", min_interval_s=60.0)
        threads = [threading.Thread(target=report, args=(i, 10)) for i in range(1, 10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report(10, 10)  # the last one always passes
        return {"x": 1}

    events: list[ProgressEvent] = []
    final = stream_graph(_graph(node), {}, on_progress=events.append)
    counters = [e for e in events if e.kind == "progress"]
    assert final == {"x": 1}
    assert len(counters) == 2 and counters[-1].done == 10 and counters[-1].stage == "work"


def test_errors_become_error_events_and_still_raise():
    def node(state):
        emit(message="about to fail")
        raise ValueError("disk on fire")

    events: list[ProgressEvent] = []
    with pytest.raises(ValueError, match="disk on fire"):
        stream_graph(_graph(node), {}, on_progress=events.append)
    assert [e.kind for e in events] == ["start", "progress", "error"]
    assert events[-1].message == "disk on fire" and events[1].message == "about to fail"


def test_emit_and_reporter_outside_a_graph_do_nothing():
    emit("anything", done=1, total=2)
    reporter("anything")(1, 2)


def test_event_round_trips_and_ignores_other_custom_data():
    event = ProgressEvent("refine", "progress", done=2, total=4, unit="steps")
    assert ProgressEvent.from_dict(event.to_dict()) == event
    assert ProgressEvent.from_dict({"something": "else"}) is None
    assert event.line() == "refine: 2/4 steps"
    assert ProgressEvent("refine", "end", message="kept [3]", seconds=1.25).line() == (
        "refine: done in 1.2 s (kept [3])"
    )


def test_segment_inside_another_graphs_node_returns_its_result(offline_settings):
    img, masks = three_box_scene()
    seen = {}

    def node(state):
        events: list[ProgressEvent] = []
        seen["result"] = segment(
            img,
            "the red box",
            settings=offline_settings,
            proposer=StaticProposer(masks),
            on_progress=events.append,
        )
        seen["events"] = events
        return {"x": 1}

    stream_graph(_graph(node), {}, on_progress=lambda e: None)
    assert seen["result"].ids and any(e.stage == "refine" and e.kind == "end" for e in seen["events"])

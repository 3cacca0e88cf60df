"""The whole graph with scripted fake chat models (paper 3.1-3.3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.fakes import (
    ScriptedChatModel,
    StaticProposer,
    human_text,
    in_question,
    region_ids,
    three_box_scene,
    twin_of,
)
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image

from dtwin_agent.api import build_twin, segment
from dtwin_agent.config import resolve_settings
from dtwin_agent.errors import InputError
from dtwin_agent.graph import build_graph
from dtwin_agent.graph.context import Context

LABELS = {1: "red apple", 2: "green pear", 3: "blue bowl"}  # ids are by decreasing area: bowl is largest


def label_vlm():
    def respond(messages):
        text = human_text(messages)
        if "Which granularity" in text:
            return '{"granularity": "object", "reason": "whole objects"}'
        ids = region_ids(messages)
        return json.dumps({"objects": [{"id": i, "observation": "seen", "semantic": NAMES[i]} for i in ids]})

    return ScriptedChatModel(respond=respond)


NAMES = {1: "blue bowl", 2: "red apple", 3: "green pear"}


def scripted_llm(step_answers):
    answers = iter(step_answers)
    return ScriptedChatModel(respond=lambda messages: next(answers))


def settings_with(vlm, llm, **extra):
    base = {"models.vlm": vlm, "models.llm": llm, "cache.enabled": False, "perception.max_image_side": 96}
    base["reasoning.restate"] = False  # scripted answers in order; the restatement has its own tests
    base["perception.granularity"] = "auto"  # the VLM's choice (paper Eq. 1) is one of the calls under test
    return resolve_settings(overrides=base | extra)  # the environment the isolating fixture set, too


@pytest.fixture
def scene():
    img, masks = three_box_scene()
    return img, masks, StaticProposer(masks)


def test_messages_each_node_sends(scene):
    img, _, proposer = scene
    vlm = label_vlm()
    llm = scripted_llm(
        [
            '{"objects": [{"id": 2, "semantic": "red apple, edible", "reasoning": "fruit"}]}',
            '{"objects": [{"id": 2, "semantic": "red apple", "reasoning": "still fruit"}]}',
        ]
    )
    result = segment(img, "something to eat", settings=settings_with(vlm, llm), proposer=proposer)
    # granularity: the VLM sees the image as a standard image content block and the query
    gran = vlm.calls[0]
    blocks = gran[-1].content
    assert any(b.get("type") == "image" and b.get("mime_type") == "image/jpeg" for b in blocks)
    assert "<query>something to eat</query>" in human_text(gran)
    # semantics: one call per mask (batch_size 1), each with a crop and the outlined whole image
    label_calls = vlm.calls[1:]
    assert len(label_calls) == 3
    for call in label_calls:
        images = [b for b in call[-1].content if isinstance(b, dict) and b.get("type") == "image"]
        assert len(images) == 2
        assert "Think first" in call[0].content  # brainstorm system prompt
    # refinement: JSON(D) with spatial + semantic, never pixels
    for call in llm.calls:
        assert all(isinstance(m.content, str) for m in call)
        text = human_text(call)
        assert "base64" not in text and "counts" not in text
        twin = twin_of(call)
        assert twin and all(set(v) >= {"spatial", "semantic"} for v in twin.values())
    assert twin_of(llm.calls[0])["2"]["semantic"] == "red apple"
    # step 2 reads the same twin first (a cached prefix), then D^(1): the kept object with its notes
    assert twin_of(llm.calls[1]) == twin_of(llm.calls[0]) and in_question(llm.calls[0]) is None
    assert in_question(llm.calls[1]) == {
        "2": {
            "spatial": twin_of(llm.calls[0])["2"]["spatial"],
            "semantic": "red apple, edible",
            "reasoning": "fruit",
        }
    }
    assert result.ids == [2] and result.stop_reason == "converged"
    assert result.mask.shape == img.shape[:2] and result.mask.sum() == 35 * 35


def test_loop_stops_on_empty(scene):
    img, _, proposer = scene
    llm = scripted_llm(
        [
            '{"objects": [{"id": 1, "reasoning": "maybe"}, {"id": 3, "reasoning": "maybe"}]}',
            '{"objects": []}',
            '{"reason": "no car here", "ids": []}',  # the single-shot pick agrees: nothing
        ]
    )
    result = segment(img, "a car", settings=settings_with(label_vlm(), llm), proposer=proposer)
    assert result.ids == [] and result.stop_reason == "empty" and len(llm.calls) == 3
    assert not result.mask.any() and "empty" in result.message
    assert [s.ids for s in result.steps] == [[1, 2, 3], [1, 3], []]


def test_loop_stops_at_step_limit_with_monotone_ids(scene):
    img, _, proposer = scene
    llm = scripted_llm(
        [
            '{"objects": [{"id": 1}, {"id": 2}]}',
            '{"objects": [{"id": 1}, {"id": 9}]}',
            '{"objects": [{"id": 1}]}',
        ]
    )
    settings = settings_with(label_vlm(), llm, **{"reasoning.max_refine_steps": 2})
    result = segment(img, "the bowl", settings=settings, proposer=proposer)
    ids = [set(s.ids) for s in result.steps]
    assert all(b <= a for a, b in zip(ids, ids[1:], strict=False))
    assert result.stop_reason == "max_steps" and len(llm.calls) == 2 and result.ids == [1]
    assert result.steps[2].report["unknown_ids"] == [9]
    assert any("unknown ids [9]" in w for w in result.warnings)


def test_ids_outside_previous_step_are_dropped(scene):
    img, _, proposer = scene
    llm = scripted_llm(['{"objects": [{"id": 2}]}', '{"objects": [{"id": 2}, {"id": 3}]}'])
    result = segment(img, "fruit", settings=settings_with(label_vlm(), llm), proposer=proposer)
    assert result.ids == [2] and result.steps[-1].report["unknown_ids"] == [3]


def test_unparseable_answer_is_repaired_once(scene):
    img, _, proposer = scene
    llm = scripted_llm(
        [
            "I think it is the apple!",
            '```json\n{"objects": [{"id": 2}]}\n```',
            '{"objects": [{"id": 2}]} and that is final.',
        ]
    )
    result = segment(img, "fruit", settings=settings_with(label_vlm(), llm), proposer=proposer)
    assert len(llm.calls) == 3  # bad, repaired, then the convergence step
    repair = llm.calls[1][-1].content
    assert "could not be used" in repair
    assert result.ids == [2]


def test_unparseable_twice_is_a_reported_failure_not_every_object(scene):
    img, _, proposer = scene
    llm = scripted_llm(["no idea", "still no idea"])
    result = segment(img, "fruit", settings=settings_with(label_vlm(), llm), proposer=proposer)
    assert result.stop_reason == "failed" and result.ids == [] and not result.ok and not result.mask.any()
    assert result.warnings == [result.error] and "prose instead of JSON" in result.error


def test_single_shot_mode(scene):
    img, _, proposer = scene
    llm = scripted_llm(['{"ids": ["2", 3, 3], "reason": "fruit and bowl"}'])
    settings = settings_with(label_vlm(), llm, **{"reasoning.mode": "single_shot"})
    result = segment(img, "fruit", settings=settings, proposer=proposer)
    assert result.ids == [2, 3] and len(llm.calls) == 1 and result.stop_reason == "single_shot"


def test_batched_labelling_cuts_calls(scene):
    img, _, proposer = scene
    vlm = label_vlm()
    settings = settings_with(
        vlm,
        scripted_llm(['{"objects": [{"id": 1}]}'] * 3),
        **{"semantics.batch_size": 3, "perception.granularity": "object"},
    )
    twin = build_twin(img, "x", settings=settings, proposer=proposer)
    assert len(vlm.calls) == 1  # granularity fixed, three masks in one call
    images = [b for b in vlm.calls[0][-1].content if isinstance(b, dict) and b.get("type") == "image"]
    assert len(images) == 6
    assert [o.semantic for o in twin.objects] == ["blue bowl", "red apple", "green pear"]


def test_missing_labels_are_reported(scene):
    img, _, proposer = scene

    def respond(messages):
        return '{"objects": [{"id": 1, "semantic": "bowl"}]}'

    settings = settings_with(
        ScriptedChatModel(respond=respond),
        "offline",
        **{"semantics.batch_size": 3, "perception.granularity": "object"},
    )
    result = segment(img, "bowl", settings=settings, proposer=proposer)
    assert result.twin.get(2).semantic == "unlabelled region"
    assert any("no usable label for object 2" in w for w in result.warnings)


def test_stream_yields_one_update_per_node(scene, tmp_path):
    img, _, proposer = scene
    graph = build_graph().compile(checkpointer=InMemorySaver())
    llm = scripted_llm(['{"objects": [{"id": 2}]}', '{"objects": [{"id": 2}]}'])
    settings = settings_with(label_vlm(), llm)
    path = tmp_path / "scene.png"
    Image.fromarray(img).save(path)
    inputs = {"image": str(path), "query": "fruit"}
    nodes = [
        next(iter(chunk))
        for chunk in graph.stream(
            inputs,
            context=Context(settings=settings, proposer=proposer),
            config={"configurable": {"thread_id": "t"}},
            stream_mode="updates",
        )
    ]
    assert nodes == [
        "load_image",
        "select_granularity",
        "lookup_twin",
        "propose_masks",
        "assign_semantics",
        "build_spatial",
        "store_twin",
        "refine",
        "refine",
        "finalize",
    ]
    state = graph.get_state({"configurable": {"thread_id": "t"}}).values
    assert "twin" in state and all(p.mask.counts for p in state["proposals"])
    assert not any(isinstance(v, np.ndarray) for v in state.values())


def test_rate_limit_retried_inside_graph(scene, monkeypatch):
    img, _, proposer = scene
    import time as _time

    monkeypatch.setattr(_time, "sleep", lambda s: None)

    class RateLimitError(Exception):
        status_code = 429

    answers = iter(
        [
            RateLimitError("slow down"),
            RateLimitError("slow down"),
            '{"objects": [{"id": 2}]}',
            '{"objects": [{"id": 2}]}',
        ]
    )
    llm = ScriptedChatModel(respond=lambda m: next(answers))
    settings = settings_with(label_vlm(), llm, **{"models.backoff_s": 0.0})
    result = segment(img, "fruit", settings=settings, proposer=proposer)
    assert result.ids == [2] and result.usage["stages"]["refine"]["retries"] == 2


@pytest.mark.parametrize(
    "query, match",
    [("   ", "query is empty"), ("x" * 10_000, "reasoning.max_query_chars")],
    ids=["empty", "10k-chars"],
)
def test_bad_queries(scene, query, match):
    img, _, proposer = scene
    with pytest.raises(InputError, match=match):
        segment(img, query, settings=settings_with("offline", "offline"), proposer=proposer)


def test_the_default_twin_is_hierarchical_and_asks_no_granularity_call(scene):
    img, _, proposer = scene
    vlm = label_vlm()
    llm = scripted_llm(['{"objects": [{"id": 2}]}', '{"objects": [{"id": 2}]}'])
    settings = resolve_settings(
        overrides={
            "models.vlm": vlm,
            "models.llm": llm,
            "cache.enabled": False,
            "perception.max_image_side": 96,
            "reasoning.restate": False,
        }
    )
    assert settings.perception.granularity == "hierarchy"
    result = segment(img, "fruit", settings=settings, proposer=proposer)
    assert result.granularity == "hierarchy"
    assert result.granularity_reason == "set by perception.granularity"
    assert not any("Which granularity" in human_text(call) for call in vlm.calls)
    assert "granularity" not in result.usage["stages"] and len(vlm.calls) == 3  # the labels only
    assert proposer.granularities == ["hierarchy"]  # the proposer was asked for objects and parts
    assert result.ids == [2]


def test_usage_per_stage(scene):
    img, _, proposer = scene
    llm = scripted_llm(['{"objects": [{"id": 2}]}', '{"objects": [{"id": 2}]}'])
    result = segment(img, "fruit", settings=settings_with(label_vlm(), llm), proposer=proposer)
    stages = result.usage["stages"]
    assert stages["granularity"]["calls"] == 1 and stages["semantics"]["calls"] == 3
    assert stages["refine"]["calls"] == 2 and stages["refine"]["input_tokens"] == 20
    assert result.summary()["usage"] == result.usage

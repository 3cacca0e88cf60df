"""Reasoners behind one interface: selection by name, keyword reasoning on structured input, SFTDT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.fakes import ScriptedChatModel
from helpers.scenes import ColourProposer, write_scene
from helpers.twins import box, toy_twin

from dtwin_agent.api import SegmentationResult, segment
from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.graph import build_graph
from dtwin_agent.graph.context import Context
from dtwin_agent.llm.usage import Usage
from dtwin_agent.offline.lexical import LexicalReasoner
from dtwin_agent.reasoning import Reasoner, get_reasoner
from dtwin_agent.reasoning.llm import LLMReasoner
from dtwin_agent.sft.build import build_skeleton
from dtwin_agent.sft.records import parse_record, render_messages, render_target
from dtwin_agent.twin import DigitalTwin, ReasoningStep


def reason(twin: DigitalTwin, query: str, settings: Settings, dialogue: str = "") -> SegmentationResult:
    """Run the reasoning graph alone over ``twin`` (as chat sessions do) and make the result."""
    graph = build_graph(perception=False).compile()
    out = graph.invoke(
        {"query": query, "twin": twin, "dialogue": dialogue}, context=Context(settings=settings, cache=None)
    )
    return SegmentationResult.from_state({**out, "twin": twin})


# ------------------------------------------------------------------------------------- selection


@pytest.mark.parametrize("spec", ["offline", "OFFLINE", "", "offline:lexical", " Offline:Lexical "])
def test_offline_settings_give_the_keyword_reasoner_without_the_local_llm(spec: str) -> None:
    reasoner = get_reasoner(Settings(models={"llm": spec}))
    assert isinstance(reasoner, LexicalReasoner) and isinstance(reasoner, Reasoner)
    assert reasoner.name == "offline:lexical (keyword matcher, not an LLM)"


def test_offline_lexical_is_chosen_even_when_the_local_llm_is_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dtwin_agent.llm import models
    from dtwin_agent.offline import profile

    local = ScriptedChatModel(respond=lambda m: "{}")
    monkeypatch.setattr(profile, "offline_llm_name", lambda settings: "qwen-test")
    monkeypatch.setattr(models, "_local", lambda name, settings: local)
    offline = get_reasoner(Settings(models={"llm": "offline"}))
    assert isinstance(offline, LLMReasoner) and offline.model is local
    assert offline.name == "local:qwen-test (offline profile)"
    assert isinstance(get_reasoner(Settings(models={"llm": "offline:lexical"})), LexicalReasoner)


def test_a_chat_model_instance_gives_the_llm_reasoner() -> None:
    model = ScriptedChatModel(respond=lambda m: "{}")
    reasoner = get_reasoner(Settings(models={"llm": model}))
    assert isinstance(reasoner, LLMReasoner) and reasoner.model is model


def test_segment_with_offline_lexical_by_name(tmp_path: Path) -> None:
    """``models.llm = "offline:lexical"`` used to be refused as an unknown provider."""
    image = write_scene(tmp_path / "scene.png")
    settings = resolve_settings(
        overrides={
            "models.llm": "offline:lexical",
            "perception.max_image_side": 128,
            "perception.granularity": "auto",
            "cache.enabled": False,
        }
    )
    result = segment(image, "the green shape", settings=settings, proposer=ColourProposer())
    assert len(result.ids) == 1 and "green" in result.chosen[0].semantic
    assert result.components["reasoning"] == "llm offline:lexical (keyword matcher, not an LLM) (refine)"
    assert result.components["granularity"] == "llm offline:lexical (keyword matcher, not an LLM)"
    assert result.chosen[0].reasoning.startswith("offline:lexical: shares green")


# ----------------------------------------------------------------------------- keyword reasoner


def test_keyword_reasoner_reads_no_prompt_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing (here: breaking) the prompt files cannot change what the keyword reasoner does."""
    import dtwin_agent.llm.prompts as prompts
    import dtwin_agent.reasoning.llm as llm_reasoner

    def broken(*args: object, **kwargs: object) -> str:
        raise AssertionError("the keyword reasoner read a prompt file")

    monkeypatch.setattr(prompts, "load_prompt", broken)
    monkeypatch.setattr(prompts, "render_prompt", broken)
    monkeypatch.setattr(prompts, "system_prompt", broken)
    monkeypatch.setattr(llm_reasoner, "render_prompt", broken)
    monkeypatch.setattr(llm_reasoner, "system_prompt", broken)
    settings = Settings(models={"llm": "offline:lexical"})
    twin = toy_twin()
    for mode in ("refine", "single_shot", "sftdt"):
        result = reason(
            twin, "something to cut with, made of steel", settings.merged({"reasoning.mode": mode})
        )
        assert result.ids == [3], mode
        assert result.chosen[0].reasoning.startswith("offline:lexical: shares steel")


def test_keyword_reasoner_steps_decide_every_previous_object() -> None:
    twin = toy_twin()
    reasoner = LexicalReasoner(Settings())
    usage = Usage()
    first = reasoner.refine(
        twin, "the white mug or the table", ReasoningStep(step=0, ids=twin.ids), "", usage
    )
    assert first.value.step == 1 and first.value.ids == [1, 2]
    assert {i: d.decision for i, d in first.value.objects.items()} == {1: "kept", 2: "kept", 3: "rejected"}
    second = reasoner.refine(twin, "the white mug or the table", first.value, "", usage)
    assert second.value.ids == [1] and set(second.value.objects) == {1, 2}  # only D^(1)'s objects
    assert usage.stages["refine"].calls == 2 and usage.stages["refine"].input_tokens == 0
    choice = reasoner.granularity("the handle of the mug", usage).value
    assert choice.granularity == "part" and "handle" in choice.reason


# ------------------------------------------------------------------------------------------ SFTDT


def annotated_record(twin: DigitalTwin, query: str):
    """A Seg-DT record for ``twin`` made by the training-data code, with annotated reasoning."""
    skeleton = build_skeleton(twin, query, box(40, 60, 0, 25, 30, 35), record_id="toy-knife")
    data = json.loads(skeleton.model_dump_json())
    for step in data["target"]["steps"]:
        for object_id, decided in step["objects"].items():
            decided["reasoning"] = (
                f"object {object_id} {'cuts' if decided['decision'] == 'kept' else 'does not cut'}"
            )
    return parse_record(data | {"status": "annotated"})


def test_sftdt_train_and_serve_messages_are_byte_identical() -> None:
    """One record rendered for training and the same twin + query served: the same bytes."""
    twin = toy_twin()
    query = "what would you use to cut the bread?"
    record = annotated_record(twin, query)
    trained = render_messages(record)
    answer, _, _ = render_target(record)
    llm = ScriptedChatModel(respond=lambda messages: answer)
    settings = Settings(models={"llm": llm}, reasoning={"mode": "sftdt"})
    result = reason(twin, query, settings)

    assert len(llm.calls) == 1
    served = [
        {"role": {"system": "system", "human": "user"}[m.type], "content": m.content} for m in llm.calls[0]
    ]
    assert json.dumps(served, ensure_ascii=False).encode() == json.dumps(trained, ensure_ascii=False).encode()
    assert record.input.twin_json() == twin.to_prompt_json()  # JSON(D) rendered in one place
    # the answer is parsed into the reasoning path the record holds
    assert result.stop_reason == "sftdt" and result.ids == record.target.ids == [3]
    assert [s.model_copy(update={"report": None}) for s in result.steps[1:]] == record.target.steps
    assert result.chosen[0].reasoning == "object 3 cuts"
    assert result.summary()["steps"][1]["objects"]["3"]["decision"] == "kept"


def test_sftdt_answer_repaired_once_then_reported() -> None:
    twin = toy_twin()
    answers = iter(["I would use the knife.", '{"path": [], "ids": [3, 9]}'])
    llm = ScriptedChatModel(respond=lambda messages: next(answers))
    result = reason(twin, "cut bread", Settings(models={"llm": llm}, reasoning={"mode": "sftdt"}))
    assert len(llm.calls) == 2 and "could not be used" in llm.calls[1][-1].content
    assert result.ids == [3] and result.steps[-1].report["unknown_ids"] == [9]
    assert any("dropped unknown ids [9]" in w for w in result.warnings)

    bad = ScriptedChatModel(respond=lambda messages: "no idea")
    failed = reason(twin, "cut bread", Settings(models={"llm": bad}, reasoning={"mode": "sftdt"}))
    assert failed.stop_reason == "failed" and not failed.ok and failed.ids == []
    assert "prose instead of JSON" in failed.error and failed.warnings == [failed.error]


def test_sftdt_in_a_chat_puts_the_dialogue_before_the_request() -> None:
    twin = toy_twin()
    llm = ScriptedChatModel(respond=lambda messages: '{"path": [], "ids": [1]}')
    reason(
        twin, "only the left one", Settings(models={"llm": llm}, reasoning={"mode": "sftdt"}), "Turn 1 ..."
    )
    user = llm.calls[0][-1].content
    assert user.startswith("<digital_twin>")  # the twin first: the prefix a server caches
    assert user.endswith("</digital_twin>\n<query>Turn 1 ...\n\nCurrent request: only the left one</query>")

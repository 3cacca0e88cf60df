"""Chat sessions: turns, dialogue for the reasoner, /undo, /objects, /show, and resume after a kill."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.fakes import ScriptedChatModel, human_text, twin_of
from helpers.scenes import SHAPES, ColourProposer, scene_settings, write_scene
from langchain_core.messages import BaseMessage
from PIL import Image

from dtwin_agent.config import Settings
from dtwin_agent.errors import InputError
from dtwin_agent.integrations.chat import ChatSession, dialogue_for, dialogue_text
from dtwin_agent.offline.lexical import keyword_scores

PROMPTS: list[str] = []


def recording_llm() -> ScriptedChatModel:
    """A chat model keeping the objects whose semantic shares words with the request; records every prompt."""

    def respond(messages: list[BaseMessage]) -> str:
        PROMPTS.append("\n".join(m.text for m in messages))
        query = re.findall(r"<query>(.*?)</query>", human_text(messages), re.S)[-1]
        if "<digital_twin" not in human_text(messages):  # the request restated in plain words
            return json.dumps({"plain": query})
        scores = keyword_scores(query, {int(k): v["semantic"] for k, v in twin_of(messages).items()})
        kept = [{"reasoning": f"it shares {', '.join(w)}", "id": i} for i, w in scores.items() if w]
        return json.dumps({"objects": kept})

    return ScriptedChatModel(respond=respond)


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return scene_settings(tmp_path / "cache", **extra)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "scene.png")


TURNS = [
    {
        "turn": 1,
        "query": "the red and blue shapes",
        "ids": [1, 3],
        "objects": [
            {"id": 1, "semantic": "red block", "reasoning": "it is red"},
            {"id": 3, "semantic": "blue block", "reasoning": "it is blue"},
        ],
        "message": "chose 2",
    },
    {"turn": 2, "query": "only the one on the left", "ids": [], "objects": [], "message": "empty answer"},
]


def test_dialogue_text_names_requests_ids_and_reasons() -> None:
    text = dialogue_text(TURNS)
    assert 'Turn 1 - user: "the red and blue shapes"' in text
    assert "#1 red block (because: it is red)" in text and "#3 blue block" in text
    assert "you chose no object (empty answer)" in text
    assert text.endswith("The previous answer was objects none.")
    assert dialogue_text([]) == ""
    assert "2 older turn(s) omitted" in dialogue_text([dict(TURNS[0], turn=i) for i in range(1, 9)])


def test_dialogue_for_fits_the_limit_and_is_empty_on_the_first_turn() -> None:
    short = Settings.model_validate({"reasoning": {"max_query_chars": 300}})
    text = dialogue_for(TURNS, short)
    assert len(text) <= 303 and text.endswith("The previous answer was objects none.")
    assert dialogue_for([], Settings()) == ""
    assert dialogue_for(TURNS, Settings()) == dialogue_text(TURNS)


def test_earlier_answers_reach_the_model_whole() -> None:
    long = " ".join(f"word{i}" for i in range(120))  # about 900 characters: no 200-character cut
    turns = [dict(TURNS[0], objects=[{"id": 1, "semantic": "red block", "reasoning": long}], ids=[1])]
    assert long in dialogue_text(turns)
    assert long in dialogue_for(turns, Settings())


def test_an_over_long_dialogue_is_shortened_at_word_boundaries() -> None:
    long = " ".join(f"word{i}" for i in range(120))
    turns = [dict(TURNS[0], objects=[{"id": 1, "semantic": "red block", "reasoning": long}], ids=[1])]
    short = Settings.model_validate({"reasoning": {"max_query_chars": 300}})
    text = dialogue_for(turns, short)
    assert len(text) <= 300 and text.endswith("The previous answer was objects [1].")
    words = set(long.split()) | set(dialogue_text(turns).split())
    assert all(w in words or w == "..." for w in text.split())  # no word cut in half


def test_a_chat_turn_result_json_has_the_fields_of_segment(scene: Path, tmp_path: Path) -> None:
    from dtwin_agent.api import segment

    config = settings(tmp_path)
    with ChatSession(scene, session_id="fields", settings=config, proposer=ColourProposer()) as chat:
        first = chat.ask("the red shape")
        second = chat.ask("the blue shape")
    direct = segment(scene, "the red shape", settings=config, proposer=ColourProposer()).summary()
    for turn in (first, second):
        saved = json.loads(Path(turn["files"]["result"]).read_text())
        assert set(saved) == set(direct)
        assert saved["components"] and saved["granularity"] == "object" and saved["objects"]
        assert saved["objects"][0]["id"] == saved["ids"][0] and saved["objects"][0]["semantic"]
    stages = set(json.loads(Path(first["files"]["result"]).read_text())["usage"]["stages"])
    assert {"propose", "semantics", "refine"} <= stages  # the first turn built the twin


def test_three_turns_share_one_twin_and_write_files(scene: Path, tmp_path: Path) -> None:
    proposer = ColourProposer()
    with ChatSession(scene, session_id="s1", settings=settings(tmp_path), proposer=proposer) as chat:
        first = chat.ask("the red shape")
        second = chat.ask("the blue shape")
        third = chat.ask("the green shape")
        assert [t["turn"] for t in chat.turns] == [1, 2, 3]
        assert len({tuple(t["ids"]) for t in (first, second, third)}) == 3
        assert len(proposer.calls) == 1
        for turn in chat.turns:
            assert Path(turn["files"]["mask"]).is_file() and Path(turn["files"]["overlay"]).is_file()
            assert Path(turn["files"]["mask"]).parent.name == f"turn-{turn['turn']:03d}"
        mask = np.array(Image.open(third["files"]["mask"])) > 0
        assert mask[60, 60] and not mask[60, 20]
        messages = chat.values["messages"]
        assert [m.type for m in messages] == ["human", "ai"] * 3
        assert messages[-1].content.startswith("Chose 1 object(s): #")


def test_each_turn_reports_progress(scene: Path, tmp_path: Path) -> None:
    from dtwin_agent.progress import ProgressEvent

    with ChatSession(scene, session_id="p1", settings=settings(tmp_path), proposer=ColourProposer()) as chat:
        first: list[ProgressEvent] = []
        chat.ask("the red shape", on_progress=first.append)
        second: list[ProgressEvent] = []
        chat.ask("the blue shape", on_progress=second.append)
    ended = [e.stage for e in first if e.kind == "end"]
    for stage in ("start_turn", "load_image", "propose_masks", "assign_semantics", "build_twin", "refine"):
        assert stage in ended, ended
    assert ended[-1] == "record_turn" and any(e.unit == "masks labelled" for e in first)
    later = [e.stage for e in second if e.kind == "end"]
    assert "build_twin" not in later and "propose_masks" not in later  # the twin is reused
    assert later[0] == "start_turn" and "refine" in later and later[-1] == "record_turn"


def test_reasoner_sees_the_dialogue_and_previous_answer(scene: Path, tmp_path: Path) -> None:
    PROMPTS.clear()
    config = settings(tmp_path, **{"models.llm": recording_llm()})
    with ChatSession(scene, session_id="s2", settings=config, proposer=ColourProposer()) as chat:
        first = chat.ask("the red shape")
        PROMPTS.clear()
        chat.ask("add the other one")
    refine_prompts = [p for p in PROMPTS if "<digital_twin>" in p]
    assert refine_prompts, PROMPTS
    prompt = refine_prompts[0]
    assert "add the other one" in prompt
    assert 'Turn 1 - user: \\"the red shape\\"' in prompt or 'Turn 1 - user: "the red shape"' in prompt
    assert f"The previous answer was objects {first['ids']}" in prompt
    reason = first["objects"][0]["reasoning"]
    assert first["objects"][0]["id"] == first["ids"][0] and reason
    assert reason[:40] in prompt


def test_undo_objects_and_show(scene: Path, tmp_path: Path) -> None:
    with ChatSession(scene, session_id="s3", settings=settings(tmp_path), proposer=ColourProposer()) as chat:
        assert chat.objects() == [] and chat.undo() is None
        with pytest.raises(InputError, match="ask something first"):
            chat.show(1)
        first = chat.ask("the red shape")
        chat.ask("the blue shape")
        removed = chat.undo()
        assert removed["query"] == "the blue shape"
        assert [t["query"] for t in chat.turns] == ["the red shape"]
        assert chat.values["ids"] == first["ids"]
        assert [m.type for m in chat.values["messages"]] == ["human", "ai"]
        again = chat.ask("the green shape")
        assert again["turn"] == 2
        rows = chat.objects()
        assert [r["id"] for r in rows] == [1, 2, 3] and all(r["semantic"] for r in rows)
        path = chat.show(2)
        assert path.is_file() and Image.open(path).size == (128, 128)
        with pytest.raises(InputError, match="no object #9"):
            chat.show(9)


def test_session_resumes_in_a_new_process_object(scene: Path, tmp_path: Path) -> None:
    proposer = ColourProposer()
    with ChatSession(scene, session_id="s4", settings=settings(tmp_path), proposer=proposer) as chat:
        chat.ask("the red shape")
    with ChatSession(scene, session_id="s4", settings=settings(tmp_path), proposer=proposer) as chat:
        assert len(chat.turns) == 1 and not chat.interrupted
        assert chat.ask("the blue shape")["turn"] == 2
    assert len(proposer.calls) == 1


def test_session_refuses_another_image(scene: Path, tmp_path: Path) -> None:
    with ChatSession(scene, session_id="s5", settings=settings(tmp_path), proposer=ColourProposer()) as chat:
        chat.ask("the red shape")
    other = write_scene(tmp_path / "other.png", {(30, 160, 40): (10, 10, 50, 50)})
    with pytest.raises(InputError, match="about another image"):
        ChatSession(other, session_id="s5", settings=settings(tmp_path))


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import dtwin_agent.graph.builder as graph_module
    from dtwin_agent.config import resolve_settings
    from dtwin_agent.perception.base import Proposal
    from dtwin_agent.integrations.chat import ChatSession

    SHAPES = {shapes!r}

    class ColourProposer:
        name = "colour-test"
        def propose(self, image, granularity):
            return [Proposal(mask=np.all(image == np.array(c, dtype=np.uint8), axis=-1)) for c in SHAPES]

    real_refine = graph_module.refine
    def refine(state, runtime):
        if "hang" in state["query"]:
            print("HANGING", flush=True)
            time.sleep(120)
        return real_refine(state, runtime)
    graph_module.refine = refine  # build_graph() reads the node from its module

    settings = resolve_settings(overrides={settings!r})
    chat = ChatSession(sys.argv[1], session_id="killed", settings=settings, proposer=ColourProposer())
    for query in ("the red shape", "the blue shape"):
        print("TURN", chat.ask(query)["turn"], flush=True)
    chat.ask("hang here")
    """
)


@pytest.mark.slow
def test_killed_process_loses_no_completed_turn(scene: Path, tmp_path: Path) -> None:
    overrides = {
        "perception.max_image_side": 128,
        "perception.granularity": "object",
        "cache.dir": str(tmp_path / "cache"),
    }
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(shapes=SHAPES, settings=overrides))
    child = subprocess.Popen(
        [sys.executable, str(script), str(scene)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("HANGING"):
                break
        assert lines[-1:] == ["HANGING"], (lines, child.stderr.read() if child.poll() is not None else "")
    finally:
        child.kill()  # SIGKILL: no cleanup runs in the child
        child.wait(timeout=30)
    assert child.returncode == -9
    assert lines == ["TURN 1", "TURN 2", "HANGING"]

    with ChatSession(
        scene, session_id="killed", settings=settings(tmp_path), proposer=ColourProposer()
    ) as chat:
        turns = chat.turns
        assert [t["query"] for t in turns] == ["the red shape", "the blue shape"]
        assert all(Path(t["files"]["mask"]).is_file() for t in turns)
        assert chat.interrupted  # the third turn started and never finished
        third = chat.ask("the green shape")
        assert third["turn"] == 3 and not chat.interrupted
        assert [m.type for m in chat.values["messages"]] == ["human", "ai"] * 3


def test_chat_loop_commands(scene: Path, tmp_path: Path) -> None:
    from dtwin_agent.cli.chat import chat_loop

    said: list[str] = []
    with ChatSession(scene, session_id="s6", settings=settings(tmp_path), proposer=ColourProposer()) as chat:
        chat_loop(
            chat,
            [
                "/objects",
                "the red shape",
                "/objects",
                "/show 2",
                "/show x",
                "/undo",
                "/undo",
                "/nope",
                "/quit",
                "never read",
            ],
            said.append,
        )
        assert chat.turns == []
    assert said[0] == "no objects yet: ask something first"
    assert said[1].startswith("       mask: ")
    assert said[2].startswith("dtwin> chose #")  # what was chosen (and why), the turn's last lines
    assert said[3].startswith("#1 ") and said[3].count("\n") == 2
    assert said[4].startswith("object #2: ") and said[4].endswith(".png")
    assert said[5].startswith("usage: /show ID")
    assert said[6] == "undid turn 1 ('the red shape')"
    assert said[7] == "nothing to undo"
    assert said[8].startswith("unknown command /nope")
    assert len(said) == 9


def test_chat_command_runs_turns_from_stdin(
    scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from dtwin_agent.cli.chat import chat as chat_command

    monkeypatch.setenv("DTWIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DTWIN_PERCEPTION__MAX_IMAGE_SIDE", "128")
    monkeypatch.setenv("DTWIN_PERCEPTION__PROPOSER", "offline")
    app = typer.Typer()
    app.command()(chat_command)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    result = runner.invoke(app, ["chat", str(scene), "--session", "cli1"], input="the red shape\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "you> the red shape" in result.output and "dtwin> " in result.output
    again = runner.invoke(app, ["chat", str(scene), "--session", "cli1"], input="/undo\n")
    assert again.exit_code == 0 and "undid turn 1" in again.output
    missing = runner.invoke(app, ["chat", str(tmp_path / "nope.png")])
    assert missing.exit_code == 2


def test_chat_state_is_json_serialisable(scene: Path, tmp_path: Path) -> None:
    from pydantic_core import to_jsonable_python

    with ChatSession(scene, session_id="s7", settings=settings(tmp_path), proposer=ColourProposer()) as chat:
        chat.ask("the red shape")
        values = chat.values
    json.dumps(to_jsonable_python({k: v for k, v in values.items() if k != "messages"}))
    assert all(isinstance(turn, dict) for turn in values["turns"])
    json.dumps(values["turns"])  # turn records are plain JSON


def test_chat_graph_composes_the_perception_and_reasoning_graphs() -> None:
    from langgraph.graph.state import CompiledStateGraph

    from dtwin_agent.graph import PERCEPTION_NODES, REASONING_NODES
    from dtwin_agent.integrations.chat import build_chat_graph

    builder = build_chat_graph()
    assert list(builder.nodes) == ["start_turn", "build_twin", "reason", "record_turn"]
    assert isinstance(builder.nodes["build_twin"].runnable, CompiledStateGraph)
    assert isinstance(builder.nodes["reason"].runnable, CompiledStateGraph)
    drawn = set(builder.compile().get_graph(xray=1).nodes)
    assert {f"build_twin:{n}" for n in PERCEPTION_NODES} | {f"reason:{n}" for n in REASONING_NODES} <= drawn


def test_follow_up_turns_skip_the_perception_subgraph(scene: Path, tmp_path: Path) -> None:
    with ChatSession(scene, session_id="s8", settings=settings(tmp_path), proposer=ColourProposer()) as chat:
        visited = []
        for query in ("the red shape", "the blue shape"):
            nodes = []
            for namespace, update in chat.graph.stream(
                {"image": chat.image, "query": query},
                chat.config,
                context=chat.context,
                stream_mode="updates",
                subgraphs=True,
            ):
                nodes += [f"{namespace[0].split(':')[0]}:{n}" if namespace else n for n in update]
            visited.append(nodes)
    first, second = visited
    assert (
        first[0] == "start_turn" and "build_twin:load_image" in first and "build_twin:propose_masks" in first
    )
    assert "reason:refine" in first and first[-1] == "record_turn"
    assert not any(n.startswith("build_twin") for n in second) and "reason:refine" in second


def test_a_chat_turn_writes_the_same_result_json_as_segment(scene: Path, tmp_path: Path) -> None:
    from dtwin_agent.api import segment

    config = settings(tmp_path)
    single = segment(scene, "the red shape", settings=config, proposer=ColourProposer())
    with ChatSession(scene, session_id="s9", settings=config, proposer=ColourProposer()) as chat:
        turn = chat.ask("the red shape")
    written = json.loads(Path(turn["files"]["result"]).read_text())
    assert set(written) == set(single.summary())
    assert written["ids"] == single.ids and written["objects"] == single.summary()["objects"]
    assert written["steps"] == single.summary()["steps"]
    assert {k: turn[k] for k in written} == written  # the turn record holds the same fields


def test_a_provider_failure_keeps_the_chat_going(scene: Path, tmp_path: Path) -> None:
    from dtwin_agent.cli.chat import chat_loop

    healthy = recording_llm()
    calls = {"n": 0}

    def respond(messages: list[BaseMessage]) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return RuntimeError("503 Service Unavailable: the provider is down")
        return healthy.respond(messages)

    config = settings(tmp_path, **{"models.llm": ScriptedChatModel(respond=respond), "models.max_retries": 0})
    said: list[str] = []
    with ChatSession(scene, session_id="flaky", settings=config, proposer=ColourProposer()) as chat:
        chat_loop(chat, ["the red shape", "the red shape", "/objects"], said.append)
        turns = chat.turns
    assert said[0].startswith("error: ") and "the session is kept" in said[0], said
    assert "(refine): request failed" in said[0]  # the provider's ProviderCallError, reported
    assert said[2].startswith("dtwin> chose #")
    assert said[3].startswith("#1 ")  # still chatting after the failure
    assert [t["turn"] for t in turns] == [1]


def test_an_unexpected_error_in_a_turn_is_reported_and_the_loop_goes_on() -> None:
    from dtwin_agent.cli.chat import chat_loop

    class Flaky:
        def __init__(self) -> None:
            self.asked = 0

        def ask(self, line: str, **_: Any) -> dict[str, Any]:
            self.asked += 1
            if self.asked == 1:
                raise MemoryError("cannot allocate")
            return {
                "ids": [1],
                "objects": [{"id": 1, "semantic": "fine", "reasoning": ""}],
                "message": "chose 1",
                "files": {"mask": "m.png", "overlay": "o.png"},
            }

    said: list[str] = []
    chat_loop(Flaky(), ["first", "second"], said.append)
    assert said[0] == "error: MemoryError: cannot allocate (the session is kept: ask again, or /quit)"
    assert said[2] == "dtwin> chose #1 fine"


def test_a_turn_running_elsewhere_is_not_called_interrupted(scene: Path, tmp_path: Path) -> None:
    """Another tab's turn in progress leaves a pending checkpoint; only a dead turn is interrupted."""
    import threading

    started, go_on = threading.Event(), threading.Event()

    class SlowProposer(ColourProposer):
        def propose(self, image: np.ndarray, granularity: str) -> list:
            started.set()
            assert go_on.wait(60)
            return super().propose(image, granularity)

    config = settings(tmp_path)
    with ChatSession(scene, session_id="tabs", settings=config, proposer=SlowProposer()) as busy:
        worker = threading.Thread(target=busy.ask, args=("the red shape",))
        worker.start()
        try:
            assert started.wait(60)
            with ChatSession(scene, session_id="tabs", settings=config, proposer=ColourProposer()) as other:
                assert other.graph.get_state(other.config).next  # the running turn's checkpoint is pending
                assert not other.interrupted
        finally:
            go_on.set()
            worker.join(60)
    with ChatSession(scene, session_id="tabs", settings=config, proposer=ColourProposer()) as after:
        assert len(after.turns) == 1 and not after.interrupted

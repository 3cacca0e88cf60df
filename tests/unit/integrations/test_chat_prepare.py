"""ChatSession.prepare (the twin before the first request) and list_sessions (a database's sessions)."""

from __future__ import annotations

from pathlib import Path

from helpers.scenes import ColourProposer, scene_settings, write_scene

from dtwin_agent.integrations.chat import ChatSession, list_sessions, sessions_db


def settings(tmp_path: Path):
    return scene_settings(tmp_path / "cache", **{"models.llm": "offline:lexical"})


def test_prepare_builds_the_twin_once_and_the_first_turn_only_reasons(tmp_path: Path) -> None:
    scene, proposer, events = write_scene(tmp_path / "scene.png"), ColourProposer(), []
    with ChatSession(scene, session_id="p1", settings=settings(tmp_path), proposer=proposer) as chat:
        twin = chat.prepare(on_progress=events.append)
        assert [o.id for o in twin.objects] == [1, 2, 3] and chat.twin.ids == twin.ids
        assert {"propose_masks", "build_spatial"} <= {e.stage for e in events if e.kind == "end"}
        assert chat.values["usage"]["stages"]["propose"]["calls"] == 1 and chat.turns == []
        assert chat.prepare() == twin  # already built: nothing runs
        turn = chat.ask("the blue shape")
        assert turn["turn"] == 1 and len(turn["ids"]) == 1 and "blue" in turn["objects"][0]["semantic"]
    assert len(proposer.calls) == 1
    with ChatSession(scene, session_id="p1", settings=settings(tmp_path), proposer=proposer) as again:
        assert again.twin.ids == [1, 2, 3] and len(again.turns) == 1


def test_list_sessions_newest_first_and_one_by_id(tmp_path: Path) -> None:
    config = settings(tmp_path)
    assert list_sessions(config) == [] and not sessions_db(config).exists()  # not created by looking
    scene = write_scene(tmp_path / "scene.png")
    for session_id, queries in (
        ("old", ["the red shape"]),
        ("new", []),
        ("newest", ["the red shape", "the blue"]),
    ):
        with ChatSession(scene, session_id=session_id, settings=config, proposer=ColourProposer()) as chat:
            chat.prepare()
            for query in queries:
                chat.ask(query)
    found = list_sessions(config)
    assert [s.session_id for s in found] == ["newest", "new", "old"]
    newest = found[0]
    assert newest.turns == 2 and newest.last_query == "the blue" and newest.has_twin
    assert newest.image == str(scene.resolve()) and newest.updated.startswith("20")
    assert found[1].turns == 0 and found[1].last_query == ""
    assert [s.session_id for s in list_sessions(config, limit=1)] == ["newest"]
    assert [s.turns for s in list_sessions(config, session_id="old")] == [1]
    assert list_sessions(config, session_id="missing") == []

"""The page's open sessions: the same SQLite sessions as dtwin chat, images confined, turns serialised."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from helpers.scenes import write_scene

from dtwin_agent.errors import InputError
from dtwin_agent.integrations.chat import ChatSession
from dtwin_agent.integrations.session_store import session_dir


def test_an_upload_starts_a_session_in_whose_folder_it_is_stored(pool, settings, tmp_path: Path) -> None:
    received = write_scene(tmp_path / "received.png")
    chat = pool.from_upload(received, original_name="kitchen.png")
    assert Path(chat.image) == session_dir(settings, chat.session_id) / "upload-kitchen.png"
    assert not received.exists()
    chat.prepare()
    assert [s.session_id for s in pool.sessions()] == [chat.session_id]
    assert pool.get(chat.session_id) is chat  # one object per session, shared by every tab


def test_a_terminal_session_is_continued_here_and_back(pool, settings, photos: Path, proposer) -> None:
    with ChatSession(photos / "scene.png", session_id="k1", settings=settings, proposer=proposer) as terminal:
        terminal.ask("the red shape")
    chat = pool.get("k1")
    assert chat.ask("the blue shape")["turn"] == 2
    with ChatSession(photos / "scene.png", session_id="k1", settings=settings, proposer=proposer) as terminal:
        assert [t["query"] for t in terminal.turns] == ["the red shape", "the blue shape"]
        assert terminal.ask("the green shape")["turn"] == 3
    assert [t["turn"] for t in pool.get("k1").turns] == [1, 2, 3]


def test_sessions_are_reopened_only_with_allowed_images(pool, settings, tmp_path: Path, proposer) -> None:
    elsewhere = write_scene(tmp_path / "elsewhere.png")
    with ChatSession(elsewhere, session_id="outside", settings=settings, proposer=proposer) as terminal:
        terminal.ask("the red shape")
    with pytest.raises(InputError, match="outside the folders this page may read"):
        pool.get("outside")
    with pytest.raises(InputError, match="no session 'nope'"):
        pool.get("nope")
    with pytest.raises(InputError, match="control characters"):
        pool.get("bad\nid")
    moved = tmp_path / "photos" / "gone.png"
    shutil.copy(elsewhere, moved)
    with ChatSession(moved, session_id="gone", settings=settings, proposer=proposer) as terminal:
        terminal.ask("the red shape")
    moved.unlink()
    with pytest.raises(InputError, match="no longer exists"):
        pool.get("gone")


def test_picks_are_confined_and_the_command_line_image_is_allowed(
    settings, photos: Path, tmp_path: Path
) -> None:
    from dtwin_agent.integrations.ui.pool import SessionPool

    outside = write_scene(tmp_path / "given.png")
    pool = SessionPool(settings, [photos], max_bytes=2**20, extra_images=[outside])
    try:
        with pytest.raises(InputError, match="outside the allowed folders"):
            pool.from_path(str(tmp_path / "other.png"))
        assert Path(pool.from_path(str(outside)).image) == outside.resolve()
        assert Path(pool.from_path("scene.png").image) == (photos / "scene.png").resolve()
        with pytest.raises(InputError, match="not the image this page was started with"):
            pool.open_image(photos / "scene.png", "x1")
        assert pool.open_image(outside, "start").session_id == "start"
    finally:
        pool.close()


def test_a_new_session_on_the_same_image_reuses_the_cached_twin(pool, photos: Path, proposer) -> None:
    first = pool.from_path("scene.png")
    first.prepare()
    second = pool.fresh(first.session_id)
    assert second.session_id != first.session_id and second.image == first.image
    assert second.prepare().ids == first.twin.ids
    assert len(proposer.calls) == 1  # the twin came from the twin cache


def test_turns_from_several_tabs_are_serialised_by_the_session_layer(pool, photos: Path) -> None:
    chat = pool.from_path("scene.png")
    chat.prepare()
    queries = ["the red shape", "the green shape", "the blue shape", "the red one"]
    errors: list[BaseException] = []

    def tab(query: str) -> None:
        try:
            pool.get(chat.session_id).ask(query)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=tab, args=(q,)) for q in queries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    turns = pool.get(chat.session_id).turns
    assert [t["turn"] for t in turns] == [1, 2, 3, 4] and sorted(t["query"] for t in turns) == sorted(queries)
    for turn in turns:
        assert Path(turn["files"]["mask"]).parent.name == f"turn-{turn['turn']:03d}"

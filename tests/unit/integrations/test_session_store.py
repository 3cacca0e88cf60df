"""Session ids as folder names (safe, injective), the per-session turn lock, a damaged or lost database."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers.scenes import ColourProposer, scene_settings, write_scene
from hypothesis import given
from hypothesis import strategies as st

from dtwin_agent.config import Settings
from dtwin_agent.errors import InputError, SessionBusyError, SessionStoreError
from dtwin_agent.integrations.chat import ChatSession
from dtwin_agent.integrations.session_store import (
    MAX_SESSION_ID_CHARS,
    check_session_id,
    session_dir,
    session_folder_name,
    session_lock,
    sessions_db,
    sessions_root,
    turn_dir,
)


def settings(tmp_path: Path) -> Settings:
    return scene_settings(tmp_path / "cache")


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "scene.png")


def is_safe_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and not any(c in name for c in "/\\\0:")
        and len(name.encode()) <= 255
        and not name.endswith((".", " "))
    )


@pytest.mark.parametrize(
    ("session_id", "kept"),
    [
        ("s1", True),
        ("kitchen-2026.v2_a", True),
        ("..", False),
        (".", False),
        ("a/b", False),
        ("a\\b", False),
        ("../../etc", False),
        ("Kitchen", False),  # upper case: case-insensitive file systems would merge it with "kitchen"
        ("café", False),
        ("猫", False),
        ("con", False),
        ("nul.txt", False),
        ("a" * 64, True),
        ("a" * 65, False),
        ("a" * MAX_SESSION_ID_CHARS, False),
        ("trailing.", False),
    ],
)
def test_session_folder_names_are_safe(session_id: str, kept: bool) -> None:
    name = session_folder_name(session_id)
    assert is_safe_name(name), name
    assert (name == session_id) is kept
    assert ("~" in name) is not kept


def test_ids_that_used_to_share_a_folder_do_not() -> None:
    ids = ["a/b", "a_b", "a b", "a:b", "A_b", "a_B", "..", "_", ".", "a\\b", "kitchen", "Kitchen"]
    names = [session_folder_name(i) for i in ids]
    assert len(set(names)) == len(ids), names
    assert session_folder_name("a/b").startswith("a_b~")


@given(st.lists(st.text(min_size=1, max_size=MAX_SESSION_ID_CHARS), min_size=2, max_size=20, unique=True))
def test_folder_names_are_injective_and_safe(ids: list[str]) -> None:
    names = [session_folder_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert all(is_safe_name(n) for n in names)


@pytest.mark.parametrize(
    ("session_id", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 300, "300 characters"),
        ("a\x00b", "control characters"),
        ("a\nb", "control characters"),
        (42, "must be a string"),
    ],
    ids=["empty", "spaces", "300-chars", "nul", "newline", "int"],
)
def test_unusable_session_ids_are_refused(session_id: object, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        check_session_id(session_id)


def test_turn_dirs_stay_inside_the_sessions_folder(tmp_path: Path) -> None:
    config = settings(tmp_path)
    root = sessions_root(config).resolve()
    for session_id in ("..", ".", "../x", "a/../../b", "/abs", "~", "x" * 200):
        folder = turn_dir(config, session_id, 1).resolve()
        assert folder.parent.parent == root, (session_id, folder)


def test_dotdot_session_writes_inside_its_own_folder(scene: Path, tmp_path: Path) -> None:
    config = settings(tmp_path)
    with ChatSession(scene, session_id="..", settings=config, proposer=ColourProposer()) as chat:
        turn = chat.ask("the red shape")
    mask = Path(turn["files"]["mask"]).resolve()
    assert mask.parent.parent == session_dir(config, "..").resolve()
    assert mask.parent.parent.parent == sessions_root(config).resolve()


def test_slash_and_underscore_sessions_keep_their_own_masks(scene: Path, tmp_path: Path) -> None:
    config = settings(tmp_path)
    masks = {}
    for session_id, query in (("a/b", "the red shape"), ("a_b", "the blue shape")):
        with ChatSession(scene, session_id=session_id, settings=config, proposer=ColourProposer()) as chat:
            masks[session_id] = Path(chat.ask(query)["files"]["mask"])
    assert masks["a/b"] != masks["a_b"]
    assert masks["a/b"].read_bytes() != masks["a_b"].read_bytes()


def test_a_300_character_session_id_is_a_clear_error(scene: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="session id is 300 characters long"):
        ChatSession(scene, session_id="x" * 300, settings=settings(tmp_path))


def test_a_busy_session_waits_then_says_so(scene: Path, tmp_path: Path) -> None:
    config = settings(tmp_path)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with session_lock(config, "busy"):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30)
        with ChatSession(
            scene, session_id="busy", settings=config, proposer=ColourProposer(), busy_timeout_s=0.3
        ) as chat:
            started = time.monotonic()
            with pytest.raises(SessionBusyError, match="session busy is busy"):
                chat.ask("the red shape")
            assert time.monotonic() - started >= 0.25
            with pytest.raises(SessionBusyError):
                chat.undo()
            release.set()
            holder.join(30)
            assert chat.ask("the red shape")["turn"] == 1  # free again
    finally:
        release.set()
        holder.join(30)


def test_threads_sharing_one_session_object_take_turns(scene: Path, tmp_path: Path) -> None:
    queries = ["the red shape", "the green shape", "the blue shape", "the red shape"]
    results: list[dict] = []
    with ChatSession(
        scene, session_id="shared", settings=settings(tmp_path), proposer=ColourProposer()
    ) as chat:
        threads = [threading.Thread(target=lambda q=q: results.append(chat.ask(q))) for q in queries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        turns = chat.turns
    assert sorted(r["turn"] for r in results) == [1, 2, 3, 4]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4]
    assert sorted(t["query"] for t in turns) == sorted(queries)


def test_a_damaged_sessions_database_is_named_with_what_to_do(scene: Path, tmp_path: Path) -> None:
    config = settings(tmp_path)
    with ChatSession(scene, session_id="d1", settings=config, proposer=ColourProposer()) as chat:
        chat.ask("the red shape")
    db = sessions_db(config)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SessionStoreError) as raised:
        ChatSession(scene, session_id="d1", settings=config)
    text = str(raised.value)
    assert str(db) in text and "damaged" in text and "move the database aside" in text
    assert str(sessions_root(config)) in text  # where the kept turn files are
    assert turn_dir(config, "d1", 1).joinpath("mask.png").is_file()  # nothing was removed


def test_a_lost_database_never_starts_an_empty_session_over_old_turns(scene: Path, tmp_path: Path) -> None:
    config = settings(tmp_path)
    with ChatSession(scene, session_id="lost", settings=config, proposer=ColourProposer()) as chat:
        chat.ask("the red shape")
    db = sessions_db(config)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with pytest.raises(SessionStoreError, match="has turn files in .* but no record in"):
        ChatSession(scene, session_id="lost", settings=config)
    with ChatSession(scene, session_id="fresh", settings=config, proposer=ColourProposer()) as chat:
        assert chat.ask("the red shape")["turn"] == 1  # other sessions still start

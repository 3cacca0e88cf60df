"""Where chat sessions live on disk: session ids as folder names, the per-session lock, the database.

- :func:`check_session_id` validates an id where it enters (chat sessions, the tool, MCP, the web
  page): a non-empty string of at most :data:`MAX_SESSION_ID_CHARS` characters without control
  characters.
- :func:`session_folder_name` maps ids to folder names injectively and safely: an id made only of
  lower-case letters, digits, ``.``, ``_`` and ``-`` (not starting with ``.``, not ending with
  ``.``, at most 64 characters, not a Windows device name) is its own folder name; any other id
  becomes a readable slug, ``~`` and the first 16 hex digits of its sha256 (``a/b`` ->
  ``a_b~5b6f...``). ``~`` never occurs in a plain name, so the two forms never meet, and two ids
  share a folder only on a 64-bit hash collision. Lower-case only, so case-insensitive file
  systems keep ``Kitchen`` and ``kitchen`` apart.
- :func:`session_lock` is an OS file lock per session (``filelock``; ``flock`` on POSIX), held for
  a whole turn by :class:`~dtwin_agent.integrations.chat.ChatSession`: turns on one session are
  serialised across threads and processes, so each is numbered once and its files match its record.
- :func:`database_errors` turns SQLite failures of the sessions database into a
  :class:`~dtwin_agent.errors.SessionStoreError` that names the file and what to do;
  :func:`open_checkpointer` is LangGraph's ``SqliteSaver`` with every database access guarded so.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dtwin_agent.config import Settings
from dtwin_agent.errors import InputError, SessionBusyError, SessionStoreError

MAX_SESSION_ID_CHARS = 200
"""Longer session ids are refused (their folder names stay short either way)."""
LOCK_NAME = ".turn.lock"
"""The lock file inside a session's folder."""

_PLAIN = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9_-])?")
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_session_id(session_id: object) -> str:
    """Return ``session_id`` unchanged when it is usable.

    Raises:
        InputError: not a string, empty or only spaces, over :data:`MAX_SESSION_ID_CHARS`
            characters, or holding control characters (NUL, newlines...).

    """
    if not isinstance(session_id, str):
        raise InputError(f"session id must be a string, got {type(session_id).__name__}")
    if not session_id.strip():
        raise InputError("session id is empty: pass a name, or none for a new session")
    if len(session_id) > MAX_SESSION_ID_CHARS:
        raise InputError(
            f"session id is {len(session_id)} characters long; the limit is {MAX_SESSION_ID_CHARS}"
        )
    if _CONTROL.search(session_id):
        raise InputError(f"session id {session_id!r} holds control characters (NUL, newline...)")
    return session_id


def session_folder_name(session_id: str) -> str:
    """The folder name of a session: the id itself when plain, else ``slug~hash`` (module docstring)."""
    stem = session_id.split(".")[0]
    if _PLAIN.fullmatch(session_id) and stem not in _WINDOWS_DEVICES:
        return session_id
    slug = re.sub(r"[^a-z0-9_-]+", "_", session_id.lower())[:40].strip("_") or "session"
    return f"{slug}~{hashlib.sha256(session_id.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def sessions_root(settings: Settings) -> Path:
    """The folder of every session's files: ``<cache.dir>/sessions``."""
    return Path(settings.cache.dir) / "sessions"


def session_dir(settings: Settings, session_id: str) -> Path:
    """A session's folder: ``<cache.dir>/sessions/<session_folder_name(id)>``."""
    return sessions_root(settings) / session_folder_name(session_id)


def turn_dir(settings: Settings, session_id: str, turn: int) -> Path:
    """Where a turn's files go: ``<session_dir>/turn-<n>`` (three digits at least)."""
    return session_dir(settings, session_id) / f"turn-{turn:03d}"


def turn_folders(settings: Settings, session_id: str) -> list[Path]:
    """The turn folders a session has written so far (whatever its database says)."""
    folder = session_dir(settings, session_id)
    return sorted(p for p in folder.glob("turn-*") if p.is_dir()) if folder.is_dir() else []


def sessions_db(settings: Settings) -> Path:
    """The checkpoint database of chat sessions: ``<cache.dir>/sessions.sqlite``."""
    return Path(settings.cache.dir) / "sessions.sqlite"


def session_lock(settings: Settings, session_id: str) -> FileLock:
    """The OS file lock of one session (reentrant in a thread; each thread and process waits its turn)."""
    folder = session_dir(settings, session_id)
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / LOCK_NAME)


def turn_running(lock: FileLock) -> bool:
    """True while another holder (a thread with its own lock object, or another process) runs a turn."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def turn_lock(lock: FileLock, session_id: str, timeout_s: float) -> Iterator[None]:
    """Hold ``lock`` for one turn, waiting at most ``timeout_s`` seconds for another turn to finish.

    Raises:
        SessionBusyError: the other turn did not finish in time.

    """
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise SessionBusyError(
            f"session {session_id} is busy: another turn (in this or another process) has not finished "
            f"after {timeout_s:g} s; try again when it is done, or use another session"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def database_errors(path: Path, files: Path) -> Iterator[None]:
    """Turn SQLite errors about the sessions database ``path`` into a :class:`SessionStoreError`.

    A damaged file (not a database, malformed) says how to start afresh and that the turn files
    (under ``files``) are kept; other SQLite errors (locked too long, disk full, read-only) name the
    file and the cause.
    """
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if any(s in text for s in ("not a database", "malformed", "file is encrypted", "disk image")):
            raise SessionStoreError(
                f"the chat sessions database {path} is damaged ({text}). Completed turns' files are kept "
                f"under {files}; move the database aside (e.g. rename it to "
                f"{path.name}.damaged) to start new sessions, or restore it from a backup to resume old ones"
            ) from exc
        raise SessionStoreError(f"the chat sessions database {path} failed: {text}") from exc


def open_checkpointer(path: Path, files: Path, serde: Any = None) -> Any:
    """LangGraph's ``SqliteSaver`` on the database ``path``, set up, with errors as :func:`database_errors`.

    Args:
        path: the sessions database (created when missing).
        files: the folder of the sessions' turn files (named in the errors).
        serde: the checkpoint serializer.

    Raises:
        SessionStoreError: the file is damaged or cannot be opened.

    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    class GuardedSaver(SqliteSaver):
        def setup(self) -> None:
            with database_errors(path, files):
                super().setup()

        @contextmanager
        def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
            with database_errors(path, files), super().cursor(transaction) as cur:
                yield cur

    # two processes creating the database at the same moment: SQLite answers the second's switch to WAL
    # "database is locked" at once (no busy wait), so the opening and set-up are one process at a time
    with FileLock(path.with_name(path.name + ".setup.lock")):
        with database_errors(path, files):
            conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
        saver = GuardedSaver(conn, serde=serde)
        try:
            saver.setup()
        except BaseException:
            conn.close()
            raise
    return saver

"""The chat sessions the web page has open: one :class:`ChatSession` per session id, shared by every tab.

Turns are serialised by the session layer (the OS file lock each
:class:`~dtwin_agent.integrations.chat.ChatSession` holds for a whole turn), not here: two tabs
on one session share one object, two processes (the page and ``dtwin chat``) share the lock file.
The pool only keeps sessions open between requests (one database connection and one compiled
graph each) and decides which image a session may be reopened with.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dtwin_agent.config import Settings
from dtwin_agent.errors import InputError
from dtwin_agent.integrations.chat import ChatSession, SessionSummary, list_sessions, new_session_id
from dtwin_agent.integrations.session_store import check_session_id, session_dir, sessions_root
from dtwin_agent.integrations.ui.intake import inside, pick_image, store_upload


class SessionPool:
    """Open chat sessions by id, and the rules for opening images and sessions on the page.

    Args:
        settings: the page's settings (models, cache folder: the sessions database is
            ``<cache.dir>/sessions.sqlite``, the same as ``dtwin chat``'s).
        roots: folders images may be picked from (resolved; symbolic links followed).
        max_bytes: larger image files are refused.
        extra_images: files allowed besides the roots (the image named on the command line).
        proposer: an already-built mask proposer (tests; services keeping weights loaded).

    """

    def __init__(
        self,
        settings: Settings,
        roots: Sequence[Path],
        *,
        max_bytes: int,
        extra_images: Sequence[Path] = (),
        proposer: Any = None,
    ):
        self.settings = settings
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        self.max_bytes = max_bytes
        self.extra_images = [Path(p).resolve() for p in extra_images]
        self.proposer = proposer
        self._open: dict[str, ChatSession] = {}
        self._lock = threading.Lock()

    # -- opening

    def _register(self, chat: ChatSession) -> ChatSession:
        with self._lock:
            known = self._open.get(chat.session_id)
            if known is not None:  # another tab opened it meanwhile: keep one object per session
                chat.close()
                return known
            self._open[chat.session_id] = chat
            return chat

    def _new(self, image: Path, session_id: str) -> ChatSession:
        chat = ChatSession(image, session_id=session_id, settings=self.settings, proposer=self.proposer)
        return self._register(chat)

    def from_upload(self, upload: str | Path, original_name: str = "") -> ChatSession:
        """A new session for an uploaded file, stored in the new session's folder first.

        Raises:
            ImageError: too large or not an image (the received file is removed).

        """
        session_id = new_session_id()
        stored = store_upload(
            upload,
            session_dir(self.settings, session_id),
            max_bytes=self.max_bytes,
            original_name=original_name,
        )
        return self._new(stored, session_id)

    def from_path(self, path: str) -> ChatSession:
        """A new session for an image picked by path: inside the roots, or the command line's image.

        Raises:
            InputError: outside the roots, missing, too large or not an image.

        """
        if path and Path(path).expanduser().resolve() in self.extra_images:
            picked = Path(path).expanduser().resolve()
        else:
            picked = pick_image(path, self.roots, max_bytes=self.max_bytes)
        return self._new(picked, new_session_id())

    def open_image(self, image: Path, session_id: str) -> ChatSession:
        """Session ``session_id`` about the command line's ``image`` (opened once, shared by every tab).

        Raises:
            InputError: ``image`` is not the command line's image, or the session is about another image.

        """
        if Path(image).resolve() not in self.extra_images:
            raise InputError(f"{image} is not the image this page was started with")
        with self._lock:
            known = self._open.get(session_id)
        return known if known is not None else self._new(Path(image), session_id)

    def fresh(self, session_id: str) -> ChatSession:
        """A new session about the image of session ``session_id`` (its twin comes from the twin cache)."""
        return self._new(Path(self.get(session_id).image), new_session_id())

    def get(self, session_id: str) -> ChatSession:
        """The open session ``session_id``, reopened from the database when this process has not opened it.

        A session is reopened with the image it is about only when that file lies inside the roots,
        in the sessions folder (uploads) or is the command line's image.

        Raises:
            InputError: a bad or unknown session id, its image is gone or outside the allowed folders.
            SessionStoreError: the sessions database is damaged.

        """
        check_session_id(session_id)
        with self._lock:
            known = self._open.get(session_id)
        if known is not None:
            return known
        summary = self.summary(session_id)
        if summary is None or not summary.image:
            raise InputError(f"no session {session_id!r} in the sessions database; start a new one")
        image = Path(summary.image)
        allowed = [*self.roots, sessions_root(self.settings)]
        if not (inside(image, allowed) or image.resolve() in self.extra_images):
            folders = ", ".join(str(f) for f in allowed)
            raise InputError(
                f"session {session_id} is about {image}, outside the folders this page may read ({folders}); "
                "restart dtwin ui with --root naming its folder"
            )
        if not image.is_file():
            raise InputError(f"session {session_id} is about {image}, which no longer exists")
        return self._new(image, session_id)

    def summary(self, session_id: str) -> SessionSummary | None:
        """The database's summary of one session (None when it has none)."""
        found = list_sessions(self.settings, session_id=session_id)
        return found[0] if found else None

    def sessions(self, limit: int = 50) -> list[SessionSummary]:
        """The sessions of the database, most recently used first (``dtwin chat``'s included)."""
        return list_sessions(self.settings, limit=limit)

    def close(self) -> None:
        """Close every open session's database connection."""
        with self._lock:
            sessions, self._open = list(self._open.values()), {}
        for chat in sessions:
            chat.close()

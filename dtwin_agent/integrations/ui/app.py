"""The Gradio page of ``dtwin ui``: open an image, watch its twin being built, chat, inspect, download.

:func:`build_page` makes a :class:`Page` (``blocks()`` lays it out and wires its events);
:func:`serve` launches it on ``127.0.0.1`` (default) and blocks. Each browser tab keeps only its session id (a
``gr.State``); sessions live in the same SQLite database as ``dtwin chat``'s, held open by a
:class:`~dtwin_agent.integrations.ui.pool.SessionPool` and serialised by the session layer's lock.

Long work (building a twin, a turn) runs in a worker thread while the handler streams the
:class:`~dtwin_agent.progress.ProgressEvent` lines that
:class:`~dtwin_agent.outputs.progress.ProgressDisplay` writes (one per graph stage, with its
seconds and summary, counters in between). Every failure becomes one ``error:`` line on the page
(the cause of an unexpected one goes to the server's log), never a stack trace.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from rich.console import Console

from dtwin_agent.config import Settings
from dtwin_agent.errors import DTwinError
from dtwin_agent.images import load_image
from dtwin_agent.integrations.chat import ChatSession, new_session_id
from dtwin_agent.integrations.session_store import session_dir, sessions_root
from dtwin_agent.integrations.ui import views
from dtwin_agent.integrations.ui.intake import images_under
from dtwin_agent.integrations.ui.pool import SessionPool
from dtwin_agent.outputs.files import write_png
from dtwin_agent.outputs.overlay import twin_overlay
from dtwin_agent.outputs.progress import ProgressDisplay
from dtwin_agent.progress import ProgressCallback

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
OBJECTS_PNG = "objects.png"
"""Every object numbered, written once per session into its folder."""
IMAGE_HEIGHT = 380
CSS = "#progress textarea {font-family: ui-monospace, monospace; font-size: 12px;}"
T = TypeVar("T")


def error_message(exc: BaseException) -> str:
    """One line for the page: the project's errors as they are, anything else named with its type."""
    if isinstance(exc, DTwinError):
        return " ".join(str(exc).split())
    logger.error("web page request failed", exc_info=exc)
    return f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())}); the session is kept"


def stream_work(
    work: Callable[[ProgressCallback], T], interval_s: float = 0.3
) -> Iterator[tuple[str, T | None]]:
    """Run ``work(on_progress)`` in a thread; yield ``(progress lines, None)`` while it runs, then the result.

    The lines are what :class:`ProgressDisplay` prints in plain mode. The last item is
    ``(lines, result)``; an exception of ``work`` is raised here.
    """
    buffer = io.StringIO()
    display = ProgressDisplay(Console(file=buffer, width=200, no_color=True), live=False, interval_s=10.0)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work(display)
        except BaseException as exc:  # noqa: BLE001 - handed to the request's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="dtwin-ui-work", daemon=True)
    shown = None
    with display:
        worker.start()
        while worker.is_alive():
            worker.join(interval_s)
            text = buffer.getvalue()
            if text != shown:
                shown = text
                yield text, None
    if "error" in outcome:
        raise outcome["error"]
    yield buffer.getvalue(), outcome["value"]


class Page:
    """The page's handlers over a :class:`SessionPool` (one instance per running app).

    Args:
        pool: the open sessions and the rules for images.
        image: the command line's image: each tab without a session opens it in one shared session.

    """

    def __init__(self, pool: SessionPool, image: Path | None = None):
        self.pool = pool
        self.image = image
        self.startup_session = new_session_id() if image is not None else None
        self.c: dict[str, Any] = {}  # the components, by name (set by blocks())

    # -- the page's values for a session

    def _objects_overlay(self, chat: ChatSession) -> str | None:
        twin = chat.twin
        if twin is None:
            return None
        path = session_dir(self.pool.settings, chat.session_id) / OBJECTS_PNG
        if not path.is_file():
            write_png(path, twin_overlay(load_image(chat.image).rgb, twin))
        return str(path)

    def _turn_values(self, chat: ChatSession, turn: dict[str, Any] | None) -> dict[Any, Any]:
        c = self.c
        files = (turn or {}).get("files") or {}
        twin = chat.twin
        usage = turn.get("usage") if turn else chat.values.get("usage")
        return {
            c["answer_image"]: files.get("overlay"),
            c["answer"]: views.short_answer(turn).replace("\n", "\n\n") if turn else "*ask about the image*",
            c["chosen"]: views.chosen_rows(turn),
            c["download_mask"]: gr.DownloadButton(value=files.get("mask"), interactive=bool(files)),
            c["download_result"]: gr.DownloadButton(value=files.get("result"), interactive=bool(files)),
            c["components"]: views.components_text(
                twin.components if twin else None, (turn or {}).get("components")
            ),
            c["usage"]: views.usage_rows(usage),
        }

    def values(self, chat: ChatSession | None, status: str = "") -> dict[Any, Any]:
        """Every component's value for ``chat`` (its last turn shown), or for no session."""
        c = self.c
        if chat is None:
            return {
                c["session"]: None,
                c["header"]: views.session_header(None, None, 0),
                c["status"]: status,
                c["objects_image"]: None,
                c["answer_image"]: None,
                c["answer"]: "",
                c["chosen"]: [],
                c["chat"]: [],
                c["object"]: gr.Dropdown(choices=[], value=None),
                c["object_info"]: views.object_details(None, None),
                c["object_image"]: None,
                c["turn"]: gr.Dropdown(choices=[], value=None),
                c["download_mask"]: gr.DownloadButton(value=None, interactive=False),
                c["download_result"]: gr.DownloadButton(value=None, interactive=False),
                c["components"]: views.components_text(),
                c["usage"]: [],
                c["sessions"]: self._session_choices(),
            }
        state = chat.values
        turns = list(state.get("turns") or [])
        twin = state.get("twin")
        last = turns[-1] if turns else None
        return {
            c["session"]: chat.session_id,
            c["header"]: views.session_header(chat.session_id, chat.image, len(turns), chat.interrupted),
            c["status"]: status,
            c["objects_image"]: self._objects_overlay(chat),
            c["chat"]: views.chat_messages(turns),
            c["object"]: gr.Dropdown(choices=views.object_choices(twin), value=None),
            c["object_info"]: views.object_details(twin, None),
            c["object_image"]: None,
            c["turn"]: gr.Dropdown(choices=views.turn_choices(turns), value=last["turn"] if last else None),
            c["sessions"]: self._session_choices(chat.session_id),
            **self._turn_values(chat, last),
        }

    def _session_choices(self, selected: str | None = None) -> gr.Dropdown:
        try:
            choices = views.session_choices(self.pool.sessions())
        except DTwinError as exc:
            return gr.Dropdown(choices=[], value=None, info=f"error: {error_message(exc)}")
        ids = {value for _, value in choices}
        return gr.Dropdown(choices=choices, value=selected if selected in ids else None)

    def _failed(self, exc: BaseException, session_id: str | None = None) -> dict[Any, Any]:
        """The page after a failure: the error line, and the session as it is now."""
        message = f"error: {error_message(exc)}"
        chat = None
        if session_id:
            try:
                chat = self.pool.get(session_id)
            except Exception as again:  # noqa: BLE001 - the first error is the one to show
                logger.warning("session %s cannot be shown after an error: %s", session_id, again)
        return self.values(chat, status=message) if chat is not None else {self.c["status"]: message}

    def _build(
        self, open_session: Callable[[], ChatSession], session_id: str | None
    ) -> Iterator[dict[Any, Any]]:
        """Open a session and build its twin, streaming progress; then the whole page."""
        c = self.c
        yield {c["status"]: "opening the image...", c["progress"]: ""}
        chat = None
        try:
            chat = open_session()
            yield {c["status"]: f"building the digital twin of {Path(chat.image).name}..."}
            for lines, twin in stream_work(lambda show: chat.prepare(on_progress=show)):
                if twin is None:
                    yield {c["progress"]: lines}
                else:
                    status = f"the twin has {twin.summary}; ask about them"
                    yield {c["progress"]: lines, **self.values(chat, status)}
        except Exception as exc:  # noqa: BLE001 - shown on the page, never as a trace
            yield self._failed(exc, chat.session_id if chat is not None else session_id)

    # -- events

    def on_load(self, session_id: str | None) -> Iterator[dict[Any, Any]]:
        """A tab opens: its session, else the command line's image (one shared session), else nothing."""
        if session_id:
            yield self._show(session_id)
        elif self.startup_session is not None:
            startup = self.startup_session
            yield from self._build(lambda: self.pool.open_image(self.image, startup), None)
        else:
            yield self.values(None)

    def _show(self, session_id: str, status: str = "") -> dict[Any, Any]:
        try:
            return self.values(self.pool.get(session_id), status)
        except Exception as exc:  # noqa: BLE001
            return self._failed(exc)

    def on_upload(self, upload: str | None, session_id: str | None) -> Iterator[dict[Any, Any]]:
        """An image was uploaded: a new session in whose folder the file is stored."""
        if not upload:
            yield {self.c["status"]: ""}
            return
        yield from self._build(lambda: self.pool.from_upload(upload), session_id)
        yield {self.c["upload"]: None}

    def on_pick(self, path: str | None, session_id: str | None) -> Iterator[dict[Any, Any]]:
        """An image was picked by path (inside the allowed folders): a new session."""
        yield from self._build(lambda: self.pool.from_path(path or ""), session_id)

    def on_new(self, session_id: str | None) -> Iterator[dict[Any, Any]]:
        """A new session on the current image (its twin comes from the twin cache)."""
        if not session_id:
            yield {self.c["status"]: "error: open an image first (upload one, or pick one)"}
            return
        yield from self._build(lambda: self.pool.fresh(session_id), session_id)

    def on_ask(self, query: str, session_id: str | None) -> Iterator[dict[Any, Any]]:
        """One turn: stream its progress, then show the answer, the chosen objects and the files."""
        c = self.c
        if not session_id:
            yield {c["status"]: "error: open an image first (upload one, or pick one)"}
            return
        yield {c["status"]: f"working on: {views.short_text(query)}", c["progress"]: "", c["query"]: ""}
        try:
            chat = self.pool.get(session_id)
            for lines, turn in stream_work(lambda show: chat.ask(query, on_progress=show)):
                if turn is None:
                    yield {c["progress"]: lines}
                else:
                    chose = f"chose {len(turn['ids'])} object(s)" if turn["ids"] else "nothing chosen"
                    status = f"turn {turn['turn']} done: {chose}"
                    yield {c["progress"]: lines, **self.values(chat, status)}
        except Exception as exc:  # noqa: BLE001
            yield {c["query"]: query, **self._failed(exc, session_id)}

    def on_undo(self, session_id: str | None) -> dict[Any, Any]:
        """Forget the session's last turn."""
        if not session_id:
            return {self.c["status"]: "error: no session to undo in"}
        try:
            chat = self.pool.get(session_id)
            removed = chat.undo()
            status = f"undid turn {removed['turn']} ({removed['query']!r})" if removed else "nothing to undo"
            return self.values(chat, status)
        except Exception as exc:  # noqa: BLE001
            return self._failed(exc, session_id)

    def on_reopen(self, chosen: str | None, session_id: str | None) -> dict[Any, Any]:
        """Reopen a session from the list (one started here or by ``dtwin chat``)."""
        if not chosen:
            return {self.c["status"]: "error: pick a session from the list first"}
        try:
            chat = self.pool.get(chosen)
            status = f"reopened session {chat.session_id} ({len(chat.turns)} turn(s))"
            return {self.c["progress"]: "", **self.values(chat, status)}  # no other session's progress
        except Exception as exc:  # noqa: BLE001
            return self._failed(exc, session_id)

    def on_refresh(self, session_id: str | None) -> dict[Any, Any]:
        """Read the sessions list again."""
        return {self.c["sessions"]: self._session_choices(session_id)}

    def on_turn(self, number: int | None, session_id: str | None) -> dict[Any, Any]:
        """Show an earlier turn's answer, objects, files and usage."""
        if not session_id or number is None:
            return {}
        try:
            chat = self.pool.get(session_id)
            turn = next((t for t in chat.turns if t["turn"] == number), None)
            return self._turn_values(chat, turn)
        except Exception as exc:  # noqa: BLE001
            return self._failed(exc, session_id)

    def on_object(self, object_id: int | None, session_id: str | None) -> dict[Any, Any]:
        """Show one object: its semantic, spatial text and relations, and the object alone on the image."""
        c = self.c
        if not session_id or object_id is None:
            return {c["object_info"]: views.object_details(None, None), c["object_image"]: None}
        try:
            chat = self.pool.get(session_id)
            return {
                c["object"]: object_id,
                c["object_info"]: views.object_details(chat.twin, int(object_id)),
                c["object_image"]: str(chat.show(int(object_id))),
            }
        except Exception as exc:  # noqa: BLE001
            return self._failed(exc, session_id)

    def on_click(self, session_id: str | None, evt: gr.SelectData) -> dict[Any, Any]:
        """A click on an overlay: the smallest object under the pointer."""
        if not session_id:
            return {}
        try:
            twin = self.pool.get(session_id).twin
            x, y = (int(v) for v in evt.index[:2])
            object_id = views.object_at(twin, x, y)
        except Exception as exc:  # noqa: BLE001
            return self._failed(exc, session_id)
        if object_id is None:
            return {self.c["status"]: f"no object at ({x}, {y})"}
        return self.on_object(object_id, session_id)

    # -- the layout

    def blocks(self) -> gr.Blocks:
        """The page's layout, its events wired to this object's handlers."""
        picks = [str(p) for p in images_under(self.pool.roots)]
        with gr.Blocks(title="dtwin: reasoning segmentation", analytics_enabled=False) as app:
            c = self.c
            c["session"] = gr.State(None)
            gr.Markdown("## dtwin: reasoning segmentation over a digital twin")
            c["header"] = gr.Markdown(elem_id="header")
            c["status"] = gr.Markdown(elem_id="status")
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        c["upload"] = gr.File(
                            label=f"upload an image (at most {self.pool.max_bytes / 2**20:g} MiB)",
                            file_types=["image"],
                            type="filepath",
                            height=110,
                            elem_id="upload",
                        )
                        with gr.Column():
                            c["pick"] = gr.Dropdown(
                                choices=picks,
                                value=None,
                                allow_custom_value=True,
                                label=(
                                    "or pick an image under " + ", ".join(str(r) for r in self.pool.roots)
                                    if self.pool.roots
                                    else "no folders to pick from (start dtwin ui with --root DIR)"
                                ),
                                interactive=bool(self.pool.roots),
                                elem_id="pick",
                            )
                            c["pick_button"] = gr.Button("open", size="sm", elem_id="pick-button")
                    with gr.Row():
                        c["objects_image"] = gr.Image(
                            label="objects (click one)",
                            type="filepath",
                            interactive=False,
                            elem_id="objects-image",
                        )
                        c["answer_image"] = gr.Image(
                            label="answer",
                            type="filepath",
                            interactive=False,
                            height=IMAGE_HEIGHT,
                            elem_id="answer-image",
                        )
                    c["progress"] = gr.Textbox(
                        label="progress", lines=8, max_lines=16, interactive=False, elem_id="progress"
                    )
                with gr.Column(scale=2):
                    with gr.Row():
                        c["sessions"] = gr.Dropdown(label="sessions", choices=[], scale=4, elem_id="sessions")
                        with gr.Column(scale=1, min_width=100):
                            c["reopen"] = gr.Button("reopen", size="sm", elem_id="reopen")
                            c["refresh"] = gr.Button("refresh list", size="sm", elem_id="refresh")
                    c["chat"] = gr.Chatbot(label="chat", height=260, elem_id="chat", buttons=["copy"])
                    c["query"] = gr.Textbox(
                        label="ask", placeholder="e.g. what would I cut bread with?", elem_id="query", lines=1
                    )
                    with gr.Row():
                        c["ask"] = gr.Button("ask", variant="primary", elem_id="ask-button")
                        c["undo"] = gr.Button("undo last turn", elem_id="undo-button")
                        c["new"] = gr.Button("new session", elem_id="new-button")
                    c["answer"] = gr.Markdown(elem_id="answer")
                    c["chosen"] = gr.Dataframe(
                        headers=views.CHOSEN_HEADERS,
                        label="chosen objects",
                        interactive=False,
                        wrap=True,
                        column_widths=["10%", "45%", "45%"],
                        elem_id="chosen",
                    )
                    with gr.Row():
                        c["turn"] = gr.Dropdown(label="turn", choices=[], scale=2, elem_id="turn")
                        c["download_mask"] = gr.DownloadButton(
                            "mask.png", interactive=False, size="sm", elem_id="download-mask"
                        )
                        c["download_result"] = gr.DownloadButton(
                            "result.json", interactive=False, size="sm", elem_id="download-result"
                        )
            with gr.Row():
                with gr.Column(scale=2):
                    c["object"] = gr.Dropdown(label="object", choices=[], elem_id="object")
                    c["object_info"] = gr.Markdown(elem_id="object-info")
                c["object_image"] = gr.Image(
                    label="the object alone",
                    type="filepath",
                    interactive=False,
                    scale=1,
                    elem_id="object-image",
                )
            with gr.Accordion("components and usage per stage", open=True):
                c["components"] = gr.Markdown(elem_id="components")
                c["usage"] = gr.Dataframe(
                    headers=views.USAGE_HEADERS, label="usage", interactive=False, elem_id="usage"
                )

            session = c["session"]
            everything = [v for k, v in c.items()]
            quiet = {"show_progress": "hidden", "api_visibility": "private"}
            app.load(self.on_load, [session], everything, **quiet)
            c["upload"].upload(self.on_upload, [c["upload"], session], everything, **quiet)
            c["pick_button"].click(self.on_pick, [c["pick"], session], everything, **quiet)
            c["new"].click(self.on_new, [session], everything, **quiet)
            for trigger in (c["ask"].click, c["query"].submit):
                trigger(self.on_ask, [c["query"], session], everything, **quiet)
            c["undo"].click(self.on_undo, [session], everything, **quiet)
            c["reopen"].click(self.on_reopen, [c["sessions"], session], everything, **quiet)
            c["refresh"].click(self.on_refresh, [session], [c["sessions"]], **quiet)
            c["turn"].input(self.on_turn, [c["turn"], session], everything, **quiet)
            c["object"].input(self.on_object, [c["object"], session], everything, **quiet)
            c["objects_image"].select(self.on_click, [session], everything, **quiet)
            c["answer_image"].select(self.on_click, [session], everything, **quiet)
        return app


def build_page(
    settings: Settings,
    roots: Sequence[Path] | None = None,
    *,
    image: Path | None = None,
    proposer: Any = None,
) -> Page:
    """The page's handlers over a new session pool; ``.blocks()`` lays it out (not launched).

    Args:
        settings: models, limits and the cache folder (sessions database, session folders).
        roots: folders images may be picked from (default: the setting ``access.image_roots``; none:
            picking is off, uploads work). Image files over ``access.max_file_mb`` are refused.
        image: opened in one shared session by every tab that has none (``dtwin ui IMAGE``).
        proposer: an already-built mask proposer (tests; keeping weights loaded).

    """
    pool = SessionPool(
        settings,
        roots if roots is not None else [Path(r) for r in settings.access.image_roots],
        max_bytes=int(settings.access.max_file_mb * 2**20),
        extra_images=[image] if image is not None else [],
        proposer=proposer,
    )
    return Page(pool, image)


def serve(
    settings: Settings,
    roots: Sequence[Path] | None = None,
    *,
    image: Path | None = None,
    host: str = HOST,
    port: int | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Launch the page on ``host:port`` (default 127.0.0.1, the first free port from 7860) until interrupted.

    Args:
        settings: as for :func:`build_page`.
        roots: as for :func:`build_page`.
        image: as for :func:`build_page`.
        host: the address to listen on.
        port: the port (None: Gradio's first free one from 7860).
        on_ready: called with the page's address once it listens.

    """
    page = build_page(settings, roots, image=image)
    app = page.blocks().queue(default_concurrency_limit=4)
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            show_error=False,
            inbrowser=False,
            share=False,
            footer_links=[],
            allowed_paths=[str(sessions_root(settings))],
            max_file_size=page.pool.max_bytes,  # Gradio refuses larger uploads itself too
            css=CSS,
        )
        if on_ready is not None:
            on_ready(url)
        app.block_thread()
    finally:
        app.close()
        page.pool.close()

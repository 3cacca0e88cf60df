"""Chat sessions: several turns of reasoning segmentation over one image's digital twin.

The chat graph composes the two halves of :func:`dtwin_agent.graph.build_graph`, each compiled
once and added as a node sharing state keys with the session (LangGraph subgraphs):

``start_turn -> [build_twin] -> reason -> record_turn``

- ``start_turn`` reads the turn's request (``query``, or the last user message), the dialogue so
  far for the reasoner, and starts the turn's usage and warnings afresh;
- ``build_twin`` is the perception graph (image loading, granularity, twin cache, proposals,
  labels, spatial layer); it runs on the first turn only, so object ids stay the same for the whole
  conversation;
- ``reason`` is the reasoning graph (refinement loop and the union of the chosen masks) over the
  session's twin, the request and the dialogue (earlier requests, the ids chosen and why);
- ``record_turn`` turns the finished state into a :class:`~dtwin_agent.api.SegmentationResult`
  (the one result path), writes the turn's ``mask.png``, ``overlay.png`` and ``result.json``
  atomically and appends the turn and the two messages to the state.

State is checkpointed by a LangGraph checkpointer; :class:`ChatSession` uses
``langgraph-checkpoint-sqlite`` (``<cache.dir>/sessions.sqlite``, one ``thread_id`` per session),
so a session resumes after the process ends and a killed process loses no completed turn: a turn
is committed in the checkpoint written after ``record_turn`` returns, and its files are written before.
"""

from __future__ import annotations

import operator
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from dtwin_agent.config import AccessSettings, Settings, resolve_settings
from dtwin_agent.errors import InputError, SessionStoreError
from dtwin_agent.graph import build_graph, recursion_limit
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes import confine_image
from dtwin_agent.graph.nodes._common import settings_of
from dtwin_agent.graph.state import check_query, checkpoint_serializer, merge_dicts
from dtwin_agent.images import ImageLike
from dtwin_agent.integrations.session_store import (
    check_session_id,
    open_checkpointer,
    session_dir,
    session_lock,
    sessions_db,
    sessions_root,
    turn_dir,
    turn_folders,
    turn_lock,
    turn_running,
)
from dtwin_agent.llm.usage import merge_usage
from dtwin_agent.progress import ProgressCallback, stream_graph
from dtwin_agent.twin import RLE, DigitalTwin, ReasoningStep

MAX_DIALOGUE_TURNS = 6
"""Earlier turns the reasoner sees (older ones are summarised away)."""


class ChatInput(TypedDict, total=False):
    """What a turn gives: the image (first turn at least) and the request, as ``query`` or a message."""

    image: str
    query: str
    messages: list[AnyMessage]


class ChatState(ChatInput, total=False):
    """The checkpointed state of a chat session (the last turn's result fields included)."""

    messages: Annotated[list[AnyMessage], add_messages]
    request_message_id: str  # the user message this turn answers ("" when the request came as query)
    dialogue: str  # the earlier turns, for the reasoner
    twin: DigitalTwin  # built once per session
    granularity: str
    granularity_reason: str
    steps: list[ReasoningStep]  # the last turn's reasoning path
    stop_reason: str
    error: str  # the last turn's failure ("" when it gave an answer)
    ids: list[int]  # the last answer's ids
    mask: RLE | None  # the last answer's mask
    message: str  # the last answer's one-line summary
    usage: Annotated[dict[str, Any], merge_usage]  # this turn's
    warnings: Annotated[list[str], operator.add]  # this turn's
    components: Annotated[dict[str, str], merge_dicts]
    turns: list[dict[str, Any]]  # completed turns (see :func:`record_turn`)


class ChatOutput(TypedDict, total=False):
    """What a turn returns."""

    messages: list[AnyMessage]
    turns: list[dict[str, Any]]
    ids: list[int]
    mask: RLE | None
    message: str
    granularity: str


# --------------------------------------------------------------------------- dialogue


def current_request(state: dict[str, Any]) -> str:
    """The request of this turn: ``query`` if set, else the last message when it is the user's."""
    query = (state.get("query") or "").strip()
    if query:
        return query
    messages = state.get("messages") or []
    if messages and messages[-1].type == "human":
        return messages[-1].text.strip()
    return ""


def dialogue_text(turns: list[dict[str, Any]], max_turns: int = MAX_DIALOGUE_TURNS) -> str:
    """The earlier turns as text for the reasoner: each request, the ids chosen and why.

    Args:
        turns: completed turns, oldest first (``turn``, ``query``, ``ids``, ``objects``: the chosen
            objects with ``id``, ``semantic`` and ``reasoning``, ``message``).
        max_turns: only the most recent ``max_turns`` are written out.

    Returns:
        An empty string when there is no earlier turn.

    """
    if not turns:
        return ""
    shown = turns[-max_turns:]
    lines = ["Earlier turns of this conversation about the same image (object ids are the same):"]
    if len(turns) > len(shown):
        lines.append(f"({len(turns) - len(shown)} older turn(s) omitted)")
    for turn in shown:
        lines.append(f'Turn {turn["turn"]} - user: "{turn["query"]}"')
        if turn["ids"]:
            parts = []
            for entry in turn.get("objects", []):
                why = " ".join((entry.get("reasoning") or "").split())  # whole: the model reads it all
                parts.append(
                    f"#{entry['id']} {entry.get('semantic', '')}" + (f" (because: {why})" if why else "")
                )
            lines.append("  you chose: " + "; ".join(parts))
        else:
            lines.append(f"  you chose no object ({turn.get('message', '')})")
    last = turns[-1]
    lines.append(f"The previous answer was objects {last['ids'] or 'none'}.")
    return "\n".join(lines)


def dialogue_for(turns: list[dict[str, Any]], settings: Settings) -> str:
    """The dialogue shown to the reasoner in its own ``<dialogue>`` block (oldest turns dropped to fit).

    It is kept apart from the current request, so the embedded keyword reasoner, which reads only
    the request, does not match words of earlier turns, while an LLM sees the whole conversation.
    Earlier answers are given whole; when even the last turn alone is longer than
    ``reasoning.max_query_chars``, it is shortened at a word boundary (never mid-word).
    """
    if not turns:
        return ""
    limit = settings.reasoning.max_query_chars
    for shown in range(MAX_DIALOGUE_TURNS, 0, -1):  # drop the oldest turns until it fits
        text = dialogue_text(turns, shown)
        if len(text) <= limit:
            return text
    from dtwin_agent.outputs.answer import shorten

    lines = dialogue_text(turns, 1).splitlines()
    while len("\n".join(lines)) > limit:  # shorten the longest line, at a word boundary
        i = max(range(len(lines)), key=lambda k: len(lines[k]))
        excess = len("\n".join(lines)) - limit
        shorter = shorten(lines[i], max(12, len(lines[i]) - excess))
        if len(shorter) >= len(lines[i]):
            break
        lines[i] = shorter
    return "\n".join(lines)


# --------------------------------------------------------------------------- the chat graph


def _thread_id(config: RunnableConfig | None) -> str:
    return str(((config or {}).get("configurable") or {}).get("thread_id") or "default")


def start_turn(state: ChatState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Read the turn's request and the dialogue so far; the turn's usage and warnings start empty.

    The session's twin enters here when a checkpointer gave it back as plain data.

    Raises:
        InputError: an empty request, or a first turn without an image.
    """
    query = current_request(state)
    if not query:
        raise InputError("the request is empty: say what to segment")
    if not state.get("twin") and not state.get("image"):
        raise InputError("a chat session needs an image: pass 'image' (a file path) with the first turn")
    from_message = not (state.get("query") or "").strip()
    update: dict[str, Any] = {}
    twin = state.get("twin")
    if twin is not None and not isinstance(twin, DigitalTwin):
        # A checkpointer that refuses this package's types (a LangGraph server under
        # LANGGRAPH_STRICT_MSGPACK=true) hands the session's twin back as a dict: validated here.
        update["twin"] = DigitalTwin.model_validate(twin)
    return update | {
        "query": query,
        "request_message_id": state["messages"][-1].id if from_message else "",
        "dialogue": dialogue_for(list(state.get("turns") or []), settings_of(runtime)),
        "usage": Overwrite({}),
        "warnings": Overwrite([]),
        "error": "",
    }


def route_turn(state: ChatState) -> Literal["build_twin", "reason"]:
    """Build the twin on the first turn only."""
    return "reason" if state.get("twin") else "build_twin"


def record_turn(state: ChatState, runtime: Runtime[Context], config: RunnableConfig) -> dict[str, Any]:
    """Make the turn's :class:`~dtwin_agent.api.SegmentationResult`, write its files, record the turn.

    A turn record is the result's :meth:`~dtwin_agent.api.SegmentationResult.summary` (what
    ``result.json`` holds: ``ids``, ``objects``, ``steps``, ``usage``, ``warnings``...) plus ``turn``,
    ``query``, ``answer`` (the reply text), ``files``, ``mask`` (RLE) and ``message_ids`` (the user
    and assistant messages, for ``/undo``).
    """
    from dtwin_agent.api import SegmentationResult
    from dtwin_agent.images import load_image
    from dtwin_agent.outputs.files import write_segment_outputs

    settings = settings_of(runtime)
    turns = list(state.get("turns") or [])
    number = len(turns) + 1
    result = SegmentationResult.from_state(state)
    files = write_segment_outputs(
        turn_dir(settings, _thread_id(config), number), result, load_image(state["image"]).rgb
    )
    content = result.answer()
    new_messages: list[AnyMessage] = []
    human_id = state.get("request_message_id") or ""
    if not human_id:
        human = HumanMessage(content=state["query"], id=str(uuid.uuid4()))
        new_messages.append(human)
        human_id = human.id
    reply = AIMessage(content=content, id=str(uuid.uuid4()))
    new_messages.append(reply)
    mask = state.get("mask")
    record = {
        "turn": number,
        "query": state["query"],
        **result.summary(),
        "answer": content,
        "files": {k: str(v) for k, v in files.items()},
        "mask": mask.model_dump(mode="json") if mask is not None else None,
        "message_ids": [human_id, reply.id],
    }
    return {
        "turns": [*turns, record],
        "query": "",
        "request_message_id": "",
        "messages": new_messages,
    }


def build_chat_graph(access: AccessSettings | None = None) -> StateGraph:
    """The uncompiled chat graph (see the module docstring); compile it with a checkpointer.

    The perception and reasoning graphs are compiled here, once, and added as nodes. With
    ``access`` (a graph served to other programs, ``graphs/chat.py``) a first node,
    ``confine_image``, reads images only under ``access.image_roots`` (none: no image), on every
    turn that names one.
    """
    builder = StateGraph(ChatState, context_schema=Context, input_schema=ChatInput, output_schema=ChatOutput)
    if access is not None:
        builder.add_node("confine_image", confine_image(access))
    builder.add_node("start_turn", start_turn)
    builder.add_node("build_twin", build_graph(reasoning=False).compile())
    builder.add_node("reason", build_graph(perception=False).compile())
    builder.add_node("record_turn", record_turn)
    if access is not None:
        builder.add_edge(START, "confine_image")
        builder.add_edge("confine_image", "start_turn")
    else:
        builder.add_edge(START, "start_turn")
    builder.add_conditional_edges("start_turn", route_turn, ["build_twin", "reason"])
    builder.add_edge("build_twin", "reason")
    builder.add_edge("reason", "record_turn")
    builder.add_edge("record_turn", END)
    return builder


# --------------------------------------------------------------------------- the session object


def new_session_id() -> str:
    """A short random session id."""
    return uuid.uuid4().hex[:12]


class ChatSession:
    """A resumable chat about one image, checkpointed in SQLite.

    Turns on one session are serialised across threads and processes: :meth:`ask` and :meth:`undo`
    hold the session's OS file lock (:func:`~dtwin_agent.integrations.session_store.session_lock`)
    from reading the checkpoint to writing the next one, so every turn is saved, numbered once, and
    its files match its record. One object may be shared by several threads.

    Example:
        >>> with ChatSession("kitchen.jpg", session_id="k1") as chat:  # doctest: +SKIP
        ...     chat.ask("what would I cut bread with?")
        ...     chat.ask("only the one on the left")

    Args:
        image: the image (a file, a PIL image or an array; the same pixels as earlier turns of the
            session).
        session_id: resume this session; a new id when None (see :attr:`session_id`). Any string of
            at most 200 characters without control characters; its folder name is
            :func:`~dtwin_agent.integrations.session_store.session_folder_name`.
        settings: settings or overrides (default: resolved from file and environment).
        proposer: an already-built mask proposer (tests, services keeping weights loaded).
        db_path: the checkpoint database (default :func:`sessions_db`).
        busy_timeout_s: how long a turn waits for another turn of the same session to finish.

    Raises:
        InputError: a bad session id, the session belongs to another image, or the image is unreadable.
        SessionStoreError: the database is damaged, or has no record of a session whose turn files exist.

    """

    def __init__(
        self,
        image: ImageLike,
        *,
        session_id: str | None = None,
        settings: Settings | dict[str, Any] | None = None,
        proposer: Any = None,
        db_path: str | Path | None = None,
        busy_timeout_s: float = 600.0,
    ):
        from dtwin_agent.images import image_path

        self.settings = (
            settings if isinstance(settings, Settings) else resolve_settings(overrides=settings or {})
        )
        self.session_id = new_session_id() if session_id is None else check_session_id(session_id)
        self.busy_timeout_s = busy_timeout_s
        # an in-memory image lives in a temporary file for as long as this object (removed by close)
        self._image_scope = ExitStack()
        self.image = self._image_scope.enter_context(image_path(image))
        self.context = Context(settings=self.settings, proposer=proposer)
        self.db_path = Path(db_path) if db_path else sessions_db(self.settings)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = session_lock(self.settings, self.session_id)
            saver = open_checkpointer(self.db_path, sessions_root(self.settings), checkpoint_serializer())
        except BaseException:
            self._image_scope.close()
            raise
        self._conn = saver.conn
        try:
            self.graph = build_chat_graph().compile(checkpointer=saver)
            self.config: RunnableConfig = {
                "configurable": {"thread_id": self.session_id},
                "recursion_limit": recursion_limit(self.settings),
            }
            known = self.graph.get_state(self.config).created_at is not None
            if not known and turn_folders(self.settings, self.session_id):
                folder = session_dir(self.settings, self.session_id)
                raise SessionStoreError(
                    f"session {self.session_id} has turn files in {folder} "
                    f"but no record in {self.db_path} (the database was deleted or replaced): resume it with "
                    "the database that holds it, or start a new session"
                )
            self._check_image()
        except BaseException:
            self.close()
            raise

    def _check_image(self) -> None:
        from dtwin_agent.images import load_image

        twin = self.twin
        if twin is not None and load_image(self.image).sha256 != twin.image.sha256:
            raise InputError(
                f"session {self.session_id} is about another image ({twin.image.source}); "
                "start a new session for this one"
            )

    # -- state

    @property
    def values(self) -> dict[str, Any]:
        """The latest checkpointed state of the session."""
        return dict(self.graph.get_state(self.config).values)

    @property
    def interrupted(self) -> bool:
        """True when the last turn started but never finished (its process was killed).

        A turn still running elsewhere (another tab, thread or process holds the session's lock) is
        not interrupted: it is in progress.
        """
        return bool(self.graph.get_state(self.config).next) and not turn_running(self._lock)

    @property
    def turns(self) -> list[dict[str, Any]]:
        """The completed turns, oldest first."""
        return list(self.values.get("turns") or [])

    @property
    def twin(self) -> DigitalTwin | None:
        """The session's twin (None before the first turn)."""
        return self.values.get("twin")

    # -- actions

    def prepare(self, *, on_progress: ProgressCallback | None = None) -> DigitalTwin:
        """Build the session's twin now, before the first request; the twin it has when it has one.

        A page shows every object numbered as soon as an image is opened; the first request then
        goes straight to reasoning over this twin, so the numbers seen before asking stay the
        object ids of the whole conversation. The twin is built without a query (granularity and
        labels are not guided by one) and checkpointed; held under the session's turn lock.

        Args:
            on_progress: called with every :class:`~dtwin_agent.progress.ProgressEvent` of the build.

        Raises:
            InputError: the session's twin is of another image.
            ProviderError: a model provider kept failing.
            SessionBusyError: another turn did not finish in time.

        """
        with turn_lock(self._lock, self.session_id, self.busy_timeout_s):
            self._check_image()
            twin = self.twin
            if twin is not None:
                return twin
            state = stream_graph(
                build_graph(reasoning=False).compile(),
                {"image": self.image, "query": ""},
                on_progress=on_progress,
                context=self.context,
                config={"recursion_limit": recursion_limit(self.settings)},
            )
            kept = ("twin", "granularity", "granularity_reason", "components", "usage", "warnings")
            update = {"image": self.image} | {k: state[k] for k in kept if k in state}
            self.graph.update_state(self.config, update, as_node="record_turn")
        return state["twin"]

    def ask(self, query: str, *, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Run one turn and return its record (see :func:`record_turn`).

        Waits (up to ``busy_timeout_s``) while another turn of this session runs, in this process
        or another.

        Args:
            query: the request.
            on_progress: called with every :class:`~dtwin_agent.progress.ProgressEvent` of the turn
                (stage starts and ends, proposal batches, labels, refinement steps, local LLM tokens).

        Raises:
            InputError: an empty or over-long request, or the session's twin is of another image.
            SessionBusyError: another turn did not finish in time.
            SessionStoreError: the sessions database failed.

        """
        query = check_query(query, self.settings, required=True)
        with turn_lock(self._lock, self.session_id, self.busy_timeout_s):
            self._check_image()  # another process may have started the session meanwhile
            state = stream_graph(
                self.graph,
                {"image": self.image, "query": query},
                on_progress=on_progress,
                config=self.config,
                context=self.context,
                durability="sync",
            )
        return state["turns"][-1]

    def objects(self) -> list[dict[str, Any]]:
        """The twin's objects: id, semantic, spatial text, area % and bbox."""
        twin = self.twin
        if twin is None:
            return []
        return [
            {"id": o.id, "semantic": o.semantic, "spatial": o.spatial, "area_pct": o.area_pct, "bbox": o.bbox}
            for o in twin.objects
        ]

    def show(self, object_id: int) -> Path:
        """Write an overlay highlighting one object; returns its path.

        Raises:
            InputError: no twin yet, or an unknown id.

        """
        from dtwin_agent.images import load_image
        from dtwin_agent.outputs.files import write_png
        from dtwin_agent.outputs.overlay import twin_overlay

        twin = self.twin
        if twin is None:
            raise InputError("no objects yet: ask something first")
        if object_id not in twin.ids:
            raise InputError(f"no object #{object_id}; the objects are 1..{max(twin.ids, default=0)}")
        rgb = load_image(self.image).rgb
        path = session_dir(self.settings, self.session_id) / f"object-{object_id:03d}.png"
        return write_png(path, twin_overlay(rgb, twin, highlight={object_id}))

    def undo(self) -> dict[str, Any] | None:
        """Forget the last completed turn (a new checkpoint; earlier ones stay in history).

        Returns:
            The removed turn, or None when there was none.

        Raises:
            SessionBusyError: another turn did not finish in time.

        """
        with turn_lock(self._lock, self.session_id, self.busy_timeout_s):
            turns = self.turns
            if not turns:
                return None
            removed, remaining = turns[-1], turns[:-1]
            previous = remaining[-1] if remaining else {}
            self.graph.update_state(
                self.config,
                {
                    "turns": remaining,
                    "ids": previous.get("ids", []),
                    "mask": RLE.model_validate(previous["mask"]) if previous.get("mask") else None,
                    "message": previous.get("message", ""),
                    "steps": [ReasoningStep.model_validate(step) for step in previous.get("steps", [])],
                    "stop_reason": previous.get("stop_reason", ""),
                    "error": previous.get("error", ""),
                    "query": "",
                    "messages": [RemoveMessage(id=i) for i in removed.get("message_ids", []) if i],
                },
                as_node="record_turn",
            )
        return removed

    def close(self) -> None:
        """Close the checkpoint database and remove the temporary file of an in-memory image."""
        self._conn.close()
        self._image_scope.close()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# --------------------------------------------------------------------------- the sessions a store holds


@dataclass(frozen=True)
class SessionSummary:
    """One chat session of the database, as a list of sessions shows it.

    Attributes:
        session_id: the session's id (``dtwin chat IMAGE --session ID`` resumes it).
        image: the image file the session is about ("" when unknown).
        turns: completed turns.
        last_query: the request of the last completed turn ("" before the first).
        updated: when the session's last checkpoint was written (ISO 8601, UTC).
        has_twin: whether its twin is built.

    """

    session_id: str
    image: str
    turns: int
    last_query: str
    updated: str
    has_twin: bool


def list_sessions(
    settings: Settings, *, db_path: str | Path | None = None, limit: int = 50, session_id: str | None = None
) -> list[SessionSummary]:
    """The chat sessions of the database (``dtwin chat``'s and the web page's), most recently used first.

    Reads the latest checkpoint of each session; a missing database means no session (it is not
    created here).

    Args:
        settings: where the database is (``<cache.dir>/sessions.sqlite``) unless ``db_path`` is given.
        db_path: the checkpoint database.
        limit: at most this many sessions (the most recently used).
        session_id: only this session (an empty list when the database has no record of it).

    Raises:
        SessionStoreError: the database is damaged or cannot be read.

    """
    path = Path(db_path) if db_path else sessions_db(settings)
    if not path.is_file():
        return []
    saver = open_checkpointer(path, sessions_root(settings), checkpoint_serializer())
    try:
        if session_id is not None:
            thread_ids = [session_id]
        else:
            with saver.cursor(transaction=False) as cur:
                cur.execute(  # checkpoint ids are time-ordered (uuid6): the largest is the latest
                    "SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' "
                    "GROUP BY thread_id ORDER BY MAX(checkpoint_id) DESC LIMIT ?",
                    (max(0, int(limit)),),
                )
                thread_ids = [str(row[0]) for row in cur.fetchall()]
        summaries = []
        for thread_id in thread_ids:
            found = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
            if found is None:
                continue
            values = found.checkpoint.get("channel_values") or {}
            turns = list(values.get("turns") or [])
            summaries.append(
                SessionSummary(
                    session_id=thread_id,
                    image=str(values.get("image") or ""),
                    turns=len(turns),
                    last_query=str(turns[-1].get("query", "")) if turns else "",
                    updated=str(found.checkpoint.get("ts") or ""),
                    has_twin=values.get("twin") is not None,
                )
            )
        return summaries
    finally:
        saver.conn.close()

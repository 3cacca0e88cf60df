"""Chat sessions: several turns of reasoning segmentation over one image's digital twin.

The chat graph has two nodes. ``perceive`` builds the twin once per session (the first turn's
request guides the granularity; later turns reuse it, so object ids stay the same for the whole
conversation). ``answer`` runs the refinement loop of :mod:`dtwin_agent.graph.nodes.refine` on that
twin with the dialogue so far (earlier requests, the ids chosen and why), writes the turn's mask
and overlay atomically and appends the turn to the state.

State is checkpointed by a LangGraph checkpointer; :class:`ChatSession` uses
``langgraph-checkpoint-sqlite`` (``<cache.dir>/sessions.sqlite``, one ``thread_id`` per session),
so a session resumes after the process ends and a killed process loses no completed turn: a turn
is committed in the checkpoint written after ``answer`` returns, and its files are written before.
"""

from __future__ import annotations

import sqlite3
import uuid
import warnings
from pathlib import Path
from typing import Annotated, Any, TypedDict

import numpy as np
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime

from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.errors import InputError
from dtwin_agent.graph import build_graph
from dtwin_agent.graph.context import Context
from dtwin_agent.outputs.answer import answer_text
from dtwin_agent.twin import RLE, DigitalTwin

MAX_DIALOGUE_TURNS = 6
"""Earlier turns the reasoner sees (older ones are summarised away)."""
MAX_REASON_CHARS = 200
"""Each earlier reasoning note is cut to this many characters in the dialogue."""


class ChatInput(TypedDict, total=False):
    """What a turn gives: the image (first turn at least) and the request, as ``query`` or a message."""

    image: str
    query: str
    messages: list[AnyMessage]


class ChatState(ChatInput, total=False):
    """The checkpointed state of a chat session."""

    messages: Annotated[list[AnyMessage], add_messages]
    twin: dict[str, Any]  # DigitalTwin.model_dump(mode="json"), built once per session
    granularity: str
    granularity_reason: str
    turns: list[dict[str, Any]]  # completed turns (see :func:`answer`)
    ids: list[int]  # the last answer's ids
    mask: dict[str, Any] | None  # the last answer's mask (RLE)
    message: str  # the last answer's one-line summary


class ChatOutput(TypedDict, total=False):
    """What a turn returns."""

    messages: list[AnyMessage]
    turns: list[dict[str, Any]]
    ids: list[int]
    mask: dict[str, Any] | None
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
        turns: completed turns, oldest first.
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
            for object_id in turn["ids"]:
                entry = turn.get("objects", {}).get(str(object_id), {})
                why = (entry.get("reasoning") or "")[:MAX_REASON_CHARS]
                semantic = entry.get("semantic", "")
                parts.append(f"#{object_id} {semantic}" + (f" (because: {why})" if why else ""))
            lines.append("  you chose: " + "; ".join(parts))
        else:
            lines.append(f"  you chose no object ({turn.get('message', '')})")
    last = turns[-1]
    lines.append(f"The previous answer was objects {last['ids'] or 'none'}.")
    return "\n".join(lines)


def dialogue_for(turns: list[dict[str, Any]], settings: Settings) -> str:
    """The dialogue shown to the reasoner in its own ``<dialogue>`` block (oldest turns dropped to fit).

    It is kept apart from the current request, so the embedded keyword reasoner, which reads only
    ``<query>``, does not match words of earlier turns, while an LLM sees the whole conversation.
    """
    if not turns:
        return ""
    limit = settings.reasoning.max_query_chars
    for shown in range(MAX_DIALOGUE_TURNS, 0, -1):  # drop the oldest turns until it fits
        text = dialogue_text(turns, shown)
        if len(text) <= limit:
            return text
    return "..." + dialogue_text(turns, 1)[-limit:]


def _context(runtime: Runtime[Context] | None) -> Context:
    """The run's context; on a server (context a dict or None) settings are resolved from the environment."""
    from dtwin_agent.cache import open_cache
    from dtwin_agent.graph.nodes._common import context_of

    given = getattr(runtime, "context", None)
    if isinstance(given, Context) and isinstance(given.settings, Settings) and given.settings != Settings():
        return context_of(runtime)
    # A LangGraph server passes nothing, a dict, or Context(**dict) with default or dict settings:
    # the environment and dtwin.toml apply, then the run's own settings.
    if isinstance(given, Context):
        overrides = given.settings if isinstance(given.settings, dict) else None
    else:
        overrides = given.get("settings") if isinstance(given, dict) else None
    settings = resolve_settings(overrides=overrides or {})
    return Context(settings=settings, proposer=getattr(given, "proposer", None), cache=open_cache(settings))


def _thread_id(config: RunnableConfig | None) -> str:
    return str(((config or {}).get("configurable") or {}).get("thread_id") or "default")


def _invoke_inner(
    graph: Any, inputs: dict[str, Any], context: Context, config: RunnableConfig | None = None
) -> Any:
    """Run a checkpointer-less inner graph inside a node.

    ``durability="async"`` is explicit because the parent run's ``"sync"`` is inherited through
    the config, and langgraph 1.2.22 then fails in a graph without a checkpointer
    (``'SyncPregelLoop' object has no attribute '_put_checkpoint_fut'``).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*durability.* has no effect")
        return graph.invoke(inputs, config, context=context, durability="async")


def perceive(state: ChatState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Build the session's twin (first turn only): granularity, proposals, labels, spatial layer."""
    if state.get("twin"):
        return {}

    if not state.get("image"):
        raise InputError("a chat session needs an image: pass 'image' (a file path) with the first turn")
    context = _context(runtime)
    graph = build_graph(reasoning=False).compile(checkpointer=False)
    out = _invoke_inner(graph, {"image": state["image"], "query": current_request(state)}, context)
    return {
        "twin": out["twin"],
        "granularity": out.get("granularity", "object"),
        "granularity_reason": out.get("granularity_reason", ""),
    }


def turn_dir(settings: Settings, session_id: str, turn: int) -> Path:
    """Where a turn's files go: ``<cache.dir>/sessions/<session id>/turn-<n>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session_id)
    return Path(settings.cache.dir) / "sessions" / safe / f"turn-{turn:03d}"


def answer(state: ChatState, runtime: Runtime[Context], config: RunnableConfig) -> dict[str, Any]:
    """One turn: refine the twin for the request and the dialogue, write mask + overlay, record the turn.

    A turn record holds ``turn``, ``query``, ``ids``, ``objects`` (id -> semantic and reasoning of
    the last refinement step), ``message``, ``stop_reason``, ``files``, ``usage``, ``warnings``,
    ``mask`` (RLE) and ``message_ids`` (the user and assistant messages, for ``/undo``).
    """
    from dtwin_agent import masks as mask_ops
    from dtwin_agent.images import load_image
    from dtwin_agent.outputs.files import write_segment_outputs

    query = current_request(state)
    if not query:
        raise InputError("the request is empty: say what to segment")
    context = _context(runtime)
    settings = context.settings
    turns = list(state.get("turns") or [])
    number = len(turns) + 1
    twin = DigitalTwin.model_validate(state["twin"])
    limit = 10 + 2 * settings.reasoning.max_refine_steps
    graph = build_graph(perception=False).compile(checkpointer=False)
    out = _invoke_inner(
        graph,
        {
            "image": state["image"],
            "query": query,
            "dialogue": dialogue_for(turns, settings),
            "twin": state["twin"],
        },
        context,
        {"recursion_limit": limit},
    )
    ids = list(out.get("ids", []))
    steps = list(out.get("steps", []))
    last = steps[-1]["objects"] if steps else {}
    objects = {
        str(i): {
            "semantic": last.get(str(i), {}).get("semantic") or twin.get(i).semantic,
            "reasoning": last.get(str(i), {}).get("reasoning", ""),
        }
        for i in ids
    }
    mask = (
        mask_ops.decode(RLE.model_validate(out["mask"]))
        if out.get("mask")
        else np.zeros((twin.image.height, twin.image.width), dtype=bool)
    )
    result = _TurnResult(
        mask=mask,
        ids=ids,
        twin=twin,
        steps=steps,
        message=out.get("message", ""),
        usage=out.get("usage", {}),
        warnings=out.get("warnings", []),
    )
    files = write_segment_outputs(
        turn_dir(settings, _thread_id(config), number), result, load_image(state["image"]).rgb
    )
    content = answer_text(ids, objects, out.get("message", ""))
    new_messages: list[AnyMessage] = []
    if (state.get("query") or "").strip():
        human = HumanMessage(content=query, id=str(uuid.uuid4()))
        new_messages.append(human)
        human_id = human.id
    else:
        human_id = state["messages"][-1].id
    reply = AIMessage(content=content, id=str(uuid.uuid4()))
    new_messages.append(reply)
    record = {
        "turn": number,
        "query": query,
        "ids": ids,
        "objects": objects,
        "message": out.get("message", ""),
        "stop_reason": out.get("stop_reason", ""),
        "files": {k: str(v) for k, v in files.items()},
        "usage": out.get("usage", {}),
        "warnings": list(out.get("warnings", [])),
        "mask": out.get("mask"),
        "message_ids": [human_id, reply.id],
    }
    return {
        "turns": [*turns, record],
        "ids": ids,
        "mask": out.get("mask"),
        "message": out.get("message", ""),
        "query": "",
        "messages": new_messages,
    }


class _TurnResult:
    """The fields :func:`~dtwin_agent.outputs.files.write_segment_outputs` reads."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)

    def summary(self) -> dict[str, Any]:
        return {
            "ids": self.ids,
            "message": self.message,
            "steps": self.steps,
            "usage": self.usage,
            "warnings": self.warnings,
            "image": self.twin.image.model_dump(),
        }


def build_chat_graph() -> StateGraph:
    """The uncompiled chat graph ``perceive -> answer``; compile it with a checkpointer."""
    builder = StateGraph(ChatState, context_schema=Context, input_schema=ChatInput, output_schema=ChatOutput)
    builder.add_node("perceive", perceive)
    builder.add_node("answer", answer)
    builder.add_edge(START, "perceive")
    builder.add_edge("perceive", "answer")
    builder.add_edge("answer", END)
    return builder


# --------------------------------------------------------------------------- the session object


def new_session_id() -> str:
    """A short random session id."""
    return uuid.uuid4().hex[:12]


def sessions_db(settings: Settings) -> Path:
    """The checkpoint database of chat sessions: ``<cache.dir>/sessions.sqlite``."""
    return Path(settings.cache.dir) / "sessions.sqlite"


class ChatSession:
    """A resumable chat about one image, checkpointed in SQLite.

    Example:
        >>> with ChatSession("kitchen.jpg", session_id="k1") as chat:  # doctest: +SKIP
        ...     chat.ask("what would I cut bread with?")
        ...     chat.ask("only the one on the left")

    Args:
        image: the image file (the same file, by pixel content, as earlier turns of the session).
        session_id: resume this session; a new id when None (see :attr:`session_id`).
        settings: settings or overrides (default: resolved from file and environment).
        proposer: an already-built mask proposer (tests, services keeping weights loaded).
        db_path: the checkpoint database (default :func:`sessions_db`).

    Raises:
        InputError: the session exists and belongs to another image, or the image is unreadable.

    """

    def __init__(
        self,
        image: str | Path,
        *,
        session_id: str | None = None,
        settings: Settings | dict[str, Any] | None = None,
        proposer: Any = None,
        db_path: str | Path | None = None,
    ):
        from langgraph.checkpoint.sqlite import SqliteSaver

        from dtwin_agent.api import image_reference
        from dtwin_agent.cache import open_cache
        from dtwin_agent.images import load_image

        self.settings = (
            settings if isinstance(settings, Settings) else resolve_settings(overrides=settings or {})
        )
        self.session_id = session_id or new_session_id()
        self.image = image_reference(image, self.settings)
        self.context = Context(settings=self.settings, proposer=proposer, cache=open_cache(self.settings))
        path = Path(db_path) if db_path else sessions_db(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
        saver = SqliteSaver(self._conn)
        saver.setup()
        self.graph = build_chat_graph().compile(checkpointer=saver)
        self.config: RunnableConfig = {"configurable": {"thread_id": self.session_id}}
        values = self.values
        if values.get("twin"):
            mine = load_image(self.image).sha256
            theirs = values["twin"]["image"]["sha256"]
            if mine != theirs:
                self.close()
                raise InputError(
                    f"session {self.session_id} is about another image "
                    f"({values['twin']['image'].get('source')}); start a new session for this one"
                )

    # -- state

    @property
    def values(self) -> dict[str, Any]:
        """The latest checkpointed state of the session."""
        return dict(self.graph.get_state(self.config).values)

    @property
    def interrupted(self) -> bool:
        """True when the last turn started but never finished (the process was killed)."""
        return bool(self.graph.get_state(self.config).next)

    @property
    def turns(self) -> list[dict[str, Any]]:
        """The completed turns, oldest first."""
        return list(self.values.get("turns") or [])

    @property
    def twin(self) -> DigitalTwin | None:
        """The session's twin (None before the first turn)."""
        twin = self.values.get("twin")
        return DigitalTwin.model_validate(twin) if twin else None

    # -- actions

    def ask(self, query: str) -> dict[str, Any]:
        """Run one turn and return its record (see :func:`answer`).

        Raises:
            InputError: an empty or over-long request.

        """
        from dtwin_agent.api import check_query

        query = check_query(query, self.settings, required=True)
        state = self.graph.invoke(
            {"image": self.image, "query": query}, self.config, context=self.context, durability="sync"
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
        path = turn_dir(self.settings, self.session_id, 0).parent / f"object-{object_id:03d}.png"
        return write_png(path, twin_overlay(rgb, twin, highlight={object_id}))

    def undo(self) -> dict[str, Any] | None:
        """Forget the last completed turn (a new checkpoint; earlier ones stay in history).

        Returns:
            The removed turn, or None when there was none.

        """
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
                "mask": previous.get("mask"),
                "message": previous.get("message", ""),
                "query": "",
                "messages": [RemoveMessage(id=i) for i in removed.get("message_ids", []) if i],
            },
            as_node="answer",
        )
        return removed

    def close(self) -> None:
        """Close the checkpoint database."""
        self._conn.close()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

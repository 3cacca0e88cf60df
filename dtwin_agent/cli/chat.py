"""``dtwin chat``: translate options into library calls, nothing more.

Registered by :mod:`dtwin_agent.cli` as ``app.command("chat")(chat)``; the model and pipeline options
are the shared :data:`~dtwin_agent.cli.options.PIPELINE_OPTIONS`.
Exit codes: 0 success, 2 bad input (one line on stderr), 1 any other failure, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dtwin_agent.cli._common import err as _err
from dtwin_agent.cli._common import handle_errors
from dtwin_agent.cli.options import pipeline_options
from dtwin_agent.config import Settings
from dtwin_agent.errors import DTwinError, InputError
from dtwin_agent.outputs.answer import answer_lines
from dtwin_agent.outputs.progress import ProgressDisplay

logger = logging.getLogger(__name__)
_out = Console(highlight=False, soft_wrap=True)

HELP = "commands: /objects  /show ID  /undo  /quit  (anything else is a request)"


def _lines(stream: Any) -> Iterable[str]:
    while True:
        if stream.isatty():
            try:
                line = input("you> ")
            except EOFError:
                return
        else:
            line = stream.readline()
            if not line:
                return
            _out.print(f"you> {line.rstrip()}", markup=False, soft_wrap=True)
        yield line.strip()


def chat_loop(
    chat: Any,
    lines: Iterable[str],
    say: Callable[[str], None],
    progress: Callable[[], AbstractContextManager[Any]] = nullcontext,
    width: int = 100,
) -> None:
    """Read requests and commands until ``/quit`` or the end of input.

    A failed turn (bad request, provider failure, busy session, even a bug) is reported as one
    ``error:`` line and the loop goes on: the session keeps its completed turns and the user may
    ask again. Only Ctrl-C ends it early.

    Args:
        chat: a :class:`~dtwin_agent.integrations.chat.ChatSession`.
        lines: the user's lines.
        say: prints one reply.
        progress: makes the progress display of one turn (a context manager giving the
            ``on_progress`` callback, e.g. :class:`~dtwin_agent.outputs.progress.ProgressDisplay`).
        width: the longest answer line (answers are shortened at a word boundary for display only;
            the session keeps them whole).

    """
    for line in lines:
        if not line:
            continue
        command, _, arg = line.partition(" ")
        try:
            if command in ("/quit", "/exit", "/q"):
                break
            if command == "/help":
                say(HELP)
            elif command == "/objects":
                rows = chat.objects()
                say(
                    "\n".join(
                        f"#{o['id']} {o['semantic']} ({o['area_pct']:.1f}% of the image): {o['spatial']}"
                        for o in rows
                    )
                    or "no objects yet: ask something first"
                )
            elif command == "/show":
                if not arg.strip().lstrip("#").isdigit():
                    say("usage: /show ID  (an object number from /objects)")
                    continue
                say(f"object #{arg.strip().lstrip('#')}: {chat.show(int(arg.strip().lstrip('#')))}")
            elif command == "/undo":
                removed = chat.undo()
                say(f"undid turn {removed['turn']} ({removed['query']!r})" if removed else "nothing to undo")
            elif command.startswith("/"):
                say(f"unknown command {command}; {HELP}")
            else:
                with progress() as show:
                    turn = chat.ask(line, on_progress=show)
                say(f"       mask: {turn['files']['mask']}  overlay: {turn['files']['overlay']}")
                answer = answer_lines(turn["ids"], turn.get("objects", []), turn.get("message", ""), width)
                say("dtwin> " + "\n       ".join(answer))
        except InputError as exc:
            say(f"error: {exc}")
        except DTwinError as exc:
            say(f"error: {exc} (the session is kept: ask again, or /quit)")
        except Exception as exc:  # noqa: BLE001 - one failed turn must not end the conversation
            logger.error("chat turn failed", exc_info=exc)
            say(f"error: {type(exc).__name__}: {exc} (the session is kept: ask again, or /quit)")


@handle_errors(interrupted="interrupted (completed turns are saved)", stop_local_models=True)
@pipeline_options
def chat(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="image file")],
    session: Annotated[
        str | None, typer.Option("--session", help="resume this session id (default: a new one)")
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Chat about IMAGE: one segmentation per request.

    Follow-ups refer to earlier answers. Each turn writes mask.png, overlay.png and result.json
    under <cache dir>/sessions/<id>/turn-N. Commands: /objects, /show ID, /undo, /quit. Resume later
    with --session ID.
    """
    from dtwin_agent.integrations.chat import ChatSession

    with ChatSession(image, session_id=session, settings=settings) as session_obj:
        done = len(session_obj.turns)
        _err.print(
            f"session {session_obj.session_id}"
            + (f" (resumed, {done} turn(s))" if done else " (new)")
            + f"; resume with: dtwin chat {image} --session {session_obj.session_id}",
            markup=False,
            highlight=False,
        )
        if session_obj.interrupted:
            _err.print("the last turn was interrupted before it finished; ask it again", highlight=False)
        _err.print(HELP, highlight=False)
        say = lambda text: _out.print(text, markup=False, soft_wrap=True)  # noqa: E731
        chat_loop(
            session_obj,
            _lines(sys.stdin),
            say,
            progress=lambda: ProgressDisplay(_err),
            width=max(40, _out.width - 7),
        )

"""What every ``dtwin`` command shares: consoles, one-line errors and exit codes, engine options.

The pipeline's model and perception options are in :mod:`dtwin_agent.cli.options`.

Exit codes: 0 success; 2 bad input or usage (one line on stderr, no traceback); 1 anything else;
130 interrupted. :class:`OneLineGroup` makes Click's usage errors one line too, for every command,
and shows logged warnings as one ``warning:`` line each (no tracebacks).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from dtwin_agent.errors import DTwinError, InputError

err = Console(stderr=True, soft_wrap=True)  # soft wrap: logs get whole paths, never cut mid-path
out = Console(soft_wrap=True)

EngineOpt = Annotated[
    str,
    typer.Option("--engine", help="local (threads in this process) | ray (an actor pool; docs/scaling.md)"),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="ray: the cluster to join (default $RAY_ADDRESS, else a local Ray)"),
]
RayCpusOpt = Annotated[
    int | None,
    typer.Option("--ray-cpus", help="ray: CPUs of the local Ray instance it starts (default: all)"),
]
SplitByOpt = Annotated[str | None, typer.Option("--split-by", help="RefCOCO family: unc | umd | google")]
ImageDirOpt = Annotated[Path | None, typer.Option("--image-dir", help="RefCOCO family: COCO train2014")]
VlmConcurrencyOpt = Annotated[
    int | None,
    typer.Option("--vlm-concurrency", help="global limit on concurrent VLM labelling calls (all workers)"),
]


def fail(message: str, code: int) -> None:
    """Print one line on stderr and exit with ``code``."""
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


INTERRUPTED = 130
"""The exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)."""


@contextlib.contextmanager
def interrupt_twice(stop_local_models: bool = False) -> Iterator[None]:
    """Ctrl-C while a command runs: the first press interrupts as usual, a second one quits at once.

    A model call or a SAM forward pass runs in one of LangGraph's worker threads, which Python cannot
    interrupt; the graph waits for it before the ``KeyboardInterrupt`` reaches the command (a local
    LLM call may run for minutes). So the first press says so on stderr and raises
    ``KeyboardInterrupt`` (the command saves what it can, as before); with ``stop_local_models`` it
    also stops this process's local llama.cpp servers (:func:`~dtwin_agent.offline.local_llm.release_all`,
    in a thread), which ends a running local call at once. A second press exits immediately with
    code 130 (what was not saved yet is lost: the message says so), also while Python's exit waits
    for worker threads: after an interrupt the handler stays installed. Outside the main thread
    (where signal handlers cannot be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            sys.stdout.flush()
            sys.stderr.write("error: interrupted again: quitting at once (the running step is lost)\n")
            sys.stderr.flush()
            os._exit(INTERRUPTED)
        sys.stderr.write("interrupting: waiting for the running step to end (Ctrl-C again to quit at once)\n")
        sys.stderr.flush()
        if stop_local_models:
            from dtwin_agent.offline import local_llm

            threading.Thread(target=local_llm.release_all, name="dtwin-stop-local-llm", daemon=True).start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        if not presses:
            signal.signal(signal.SIGINT, previous)
        # else it stays: the process is on its way out, and Python's exit still waits for the worker
        # threads (a KeyboardInterrupt can land before a worker is joined), so a second press must quit


def handle_errors(
    func: Callable[..., Any] | None = None,
    *,
    interrupted: str = "interrupted",
    stop_local_models: bool = False,
) -> Any:
    """Map exceptions to exit codes: InputError -> 2, Ctrl-C -> 130, anything else -> 1 (one line).

    Use as ``@handle_errors`` or ``@handle_errors(interrupted="what was saved")``. Ctrl-C is handled
    by :func:`interrupt_twice` (``stop_local_models`` goes to it): a second press quits at once.
    """

    def deco(inner: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                with interrupt_twice(stop_local_models):
                    return inner(*args, **kwargs)
            except typer.Exit:
                raise
            except InputError as exc:
                fail(str(exc), 2)
            except DTwinError as exc:
                fail(str(exc), 1)
            except KeyboardInterrupt:
                fail(interrupted, INTERRUPTED)
            except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
                fail(f"{type(exc).__name__}: {exc}", 1)

        return wrapper

    return deco(func) if func is not None else deco


class _OneLineLog(logging.Handler):
    """``warning: message`` on the current ``sys.stderr`` (the cause in brackets, never a traceback)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f" ({type(exc).__name__}: {exc})"
            sys.stderr.write(f"{record.levelname.lower()}: {' '.join(text.split())}\n")
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def show_warnings() -> None:
    """Print warnings and errors logged in this process as one line each on stderr (installed once).

    The handler sits on the root logger, so libraries that call ``logging.basicConfig`` later (the
    MCP SDK does) find it there and add no second, multi-line one.
    """
    root = logging.getLogger()
    if not any(isinstance(h, _OneLineLog) for h in root.handlers):
        root.addHandler(_OneLineLog(logging.WARNING))


# Click's exceptions, from the Click that Typer uses (its own vendored copy since Typer 0.29)
_click_errors = importlib.import_module(typer.BadParameter.__module__)
_NoArgsIsHelp: type[Exception] = getattr(_click_errors, "NoArgsIsHelpError", type("_Never", (Exception,), {}))


class OneLineGroup(TyperGroup):
    """The ``dtwin`` group: Click usage errors become one ``error:`` line with exit code 2.

    Click (and Typer's rich box) print the usage, a hint and the error on five lines; here it is
    ``error: <command>: <problem> (see '<command> --help')``. Help for a bare group is still shown.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; with ``standalone_mode`` exit with the contract's codes."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        show_warnings()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelp as exc:
            exc.show()  # the group's help, as Click shows it
            sys.exit(exc.exit_code)
        except _click_errors.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else (prog_name or "dtwin")
            hint = f" (see '{where} --help')" if isinstance(exc, _click_errors.UsageError) else ""
            message = " ".join(exc.format_message().split())
            err.print(f"error: {where}: {message}{hint}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except typer.Abort:  # typer._click has no Abort of its own: typer.Abort is the one raised
            err.print("error: aborted", markup=False, highlight=False)
            sys.exit(INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

"""Ctrl-C while a command runs: the first press interrupts as usual, a second quits at once.

A model call in LangGraph's worker thread cannot be interrupted and the graph waits for it, so
without this a ``dtwin segment`` interrupted during a local LLM call kept running for minutes
(measured: 122 s after Ctrl-C against a server answering after 60 s, with one retry).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import typer
from typer.testing import CliRunner

from dtwin_agent.cli import _common
from dtwin_agent.offline import local_llm

# A command whose work runs in a worker thread the main thread waits for, as LangGraph's executor does.
STUCK_COMMAND = textwrap.dedent(
    """
    import sys, time
    from concurrent.futures import ThreadPoolExecutor
    import typer
    from dtwin_agent.cli._common import handle_errors

    app = typer.Typer()

    def work() -> None:
        print("started", flush=True)  # from the worker: the main thread is waiting for it by now
        time.sleep(60)

    @app.command()
    @handle_errors
    def run() -> None:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(work).result()

    app()
    """
)


def test_a_second_ctrl_c_quits_at_once_while_a_worker_thread_runs():
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_COMMAND],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # the first press waits for the worker (its work is not lost silently)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)  # the worker sleeps 60 s: returning before says it did not wait
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert code == 130
    assert "Ctrl-C again to quit at once" in stderr
    assert (
        stderr.strip().splitlines()[-1]
        == "error: interrupted again: quitting at once (the running step is lost)"
    ), stderr
    assert "Traceback" not in stderr, stderr


def _interrupted_command(stop_local_models: bool) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @_common.handle_errors(interrupted="interrupted here", stop_local_models=stop_local_models)
    def run() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises KeyboardInterrupt here

    return app


@pytest.mark.parametrize("stop_local_models", [True, False])
def test_the_first_ctrl_c_stops_local_llm_servers_only_where_asked(monkeypatch, stop_local_models):
    stopped = []
    monkeypatch.setattr(local_llm, "release_all", lambda: stopped.append(True) or 0)
    previous = signal.getsignal(signal.SIGINT)
    try:
        result = CliRunner().invoke(_interrupted_command(stop_local_models), [])
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130
    assert "error: interrupted here" in result.stderr
    assert "Ctrl-C again to quit at once" in result.stderr
    deadline = time.monotonic() + 5
    while stop_local_models and not stopped and time.monotonic() < deadline:
        time.sleep(0.01)  # release_all runs in a thread (stopping a server waits for it)
    assert stopped == ([True] if stop_local_models else [])
    assert after is not previous  # a further press (while Python's exit joins workers) still quits at once


def test_the_handler_is_restored_after_a_command_that_was_not_interrupted():
    previous = signal.getsignal(signal.SIGINT)
    app = typer.Typer()

    @app.command()
    @_common.handle_errors(stop_local_models=True)
    def run() -> None:
        assert signal.getsignal(signal.SIGINT) is not previous

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    assert signal.getsignal(signal.SIGINT) is previous


def test_the_handler_is_left_alone_outside_the_main_thread():
    previous = signal.getsignal(signal.SIGINT)

    def inside() -> object:
        with _common.interrupt_twice(stop_local_models=True):
            return signal.getsignal(signal.SIGINT)

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(inside).result() is previous

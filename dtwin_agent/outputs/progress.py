"""Progress for people: :class:`~dtwin_agent.progress.ProgressEvent` shown on a terminal or in a log.

On a terminal, a rich live display (a spinner per running stage, a bar per counter, finished
stages printed above it); anywhere else (a pipe, a file, CI), plain timestamped lines that a log
keeps: a stage's start once it has run for a second without a counter, its counters at most every
``interval_s`` seconds, a "still running" line after a long silence, its end with seconds and a
summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text

from dtwin_agent.progress import ProgressEvent

__all__ = ["ProgressDisplay"]

_START_DELAY_S = 1.0  # a stage that ends sooner is shown as one line


class ProgressDisplay:
    """Shows progress events; call it with each event, use it as a context manager.

    Args:
        console: where to show them (default: a stderr console).
        live: a rich live display (default: when the console is a terminal); else plain lines.
        interval_s: plain lines: the least seconds between two lines of one counter, and the
            silence after which a running stage gets a "still running" line (twice this).
        clock: seconds for timestamps (``time.monotonic``; tests pass their own).

    Example:
        >>> with ProgressDisplay() as show:  # doctest: +SKIP
        ...     segment("photo.jpg", "the mug", on_progress=show)
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        live: bool | None = None,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.clock = clock
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self.interval_s = interval_s
        self._lock = threading.RLock()
        self._t0 = clock()
        # plain mode: stage -> {"since": start time, "shown": start line printed, "said": last line time}
        self._running: dict[str, dict[str, Any]] = {}
        self._counters: dict[tuple[str, str], tuple[float, ProgressEvent]] = {}
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._bar: Any = None
        self._tasks: dict[tuple[str, str], Any] = {}

    # -- lifecycle

    def __enter__(self) -> ProgressDisplay:
        self._t0 = self.clock()
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
        else:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="dtwin-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live display or the ticker (idempotent)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._tasks.clear()
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join(timeout=2.0)
            self._ticker = None

    # -- events

    def __call__(self, event: ProgressEvent) -> None:
        """Show one event."""
        with self._lock:
            if self.live and self._bar is not None:
                self._show_live(event)
            else:
                self._show_plain(event)

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _stamp(self, text: str) -> None:
        # stages still running whose start line waits (a chat turn's build_twin around its nodes):
        # shown first, so the log stays in time order
        for stage, state in sorted(self._running.items(), key=lambda item: item[1]["since"]):
            self._flush_start(stage, state)
        self._print(f"[{self.clock() - self._t0:6.1f} s] {text}")

    def _show_plain(self, event: ProgressEvent) -> None:
        now = self.clock()
        if event.kind == "start":
            self._running[event.stage] = {"since": now, "shown": False, "said": now, "message": event.message}
            return
        state = self._running.get(event.stage)
        if event.kind in ("end", "error"):
            self._running.pop(event.stage, None)
            for key in [k for k in self._counters if k[0] == event.stage]:
                del self._counters[key]
            self._stamp(event.line())
            return
        if state is None:  # a counter of a stage whose start was not reported (e.g. eval samples)
            state = self._running[event.stage] = {"since": now, "shown": True, "said": 0.0, "message": ""}
        key = (event.stage, event.unit)
        last = self._counters.get(key)
        finished = event.total is not None and event.done is not None and event.done >= event.total
        self._counters[key] = (last[0] if last else 0.0, event)
        if not finished and last is not None and now - last[0] < self.interval_s:
            return
        state["shown"] = True  # the counter line says the stage runs: no separate start line
        self._counters[key] = (now, event)
        state["said"] = now
        self._stamp(event.line())

    def _flush_start(self, stage: str, state: dict[str, Any]) -> None:
        if not state["shown"]:
            state["shown"] = True
            self._print(
                f"[{state['since'] - self._t0:6.1f} s] "
                + ProgressEvent(stage, "start", message=state.get("message", "")).line()
            )

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            self.tick()

    def tick(self) -> None:
        """Plain lines: show starts of stages running for a second, "still running" after a silence."""
        now = self.clock()
        with self._lock:
            # only the innermost running stage (the last started) says it is still running: a chat
            # turn's reason (around refine), a node starting the local LLM server
            latest = next(reversed(self._running), None)  # dicts keep insertion order: the last started
            for stage, state in list(self._running.items()):
                if not state["shown"] and now - state["since"] >= _START_DELAY_S:
                    self._flush_start(stage, state)
                    state["said"] = now
                elif stage == latest and state["shown"] and now - state["said"] >= 2 * self.interval_s:
                    state["said"] = now
                    counters = [e.line().split(": ", 1)[-1] for (s, _), (_, e) in self._counters.items()
                                if s == stage]  # fmt: skip
                    detail = f" ({'; '.join(counters)})" if counters else ""
                    self._stamp(f"{stage}: still running, {now - state['since']:.0f} s{detail}")

    def _show_live(self, event: ProgressEvent) -> None:
        bar = self._bar
        if event.kind == "start":
            if (event.stage, "") not in self._tasks:
                self._tasks[(event.stage, "")] = bar.add_task(event.stage, total=None, count=event.message)
            return
        if event.kind in ("end", "error"):
            for key in [k for k in self._tasks if k[0] == event.stage]:
                bar.remove_task(self._tasks.pop(key))
            mark = "done" if event.kind == "end" else "failed"
            took = f" ({event.seconds:.1f} s)" if event.seconds is not None else ""
            detail = f": {event.message}" if event.message else ""
            style = "green" if event.kind == "end" else "red"
            bar.console.print(Text.assemble((mark, style), f" {event.stage}{took}{detail}"), soft_wrap=True)
            return
        key = (event.stage, event.unit)
        count = event.line().split(": ", 1)[-1]
        if key not in self._tasks:
            label = f"  {event.stage}" if (event.stage, "") in self._tasks else event.stage
            self._tasks[key] = bar.add_task(label, total=event.total, count=count)
        bar.update(self._tasks[key], completed=event.done or 0, total=event.total, count=count)

"""One progress display for the dataset-scale drivers (evaluation and twin building).

``progress=True`` shows the count on stderr with :class:`~dtwin_agent.outputs.progress.ProgressDisplay`
(a live bar on a terminal, plain timestamped lines in a log), ``False`` nothing, and a callable is
called as ``callback(done, total, record)`` after every record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dtwin_agent.progress import ProgressEvent

ProgressCallback = Callable[[int, int, dict[str, Any]], None]


class Progress:
    """Counts finished items and shows them; use as a context manager.

    Args:
        label: the stage name shown (``eval``, ``twins``).
        total: items in all.
        already: items finished by an earlier run (resumed).
        progress: ``True`` (show on stderr), ``False`` or a callback.
        unit: what is counted (``samples``, ``images``).
    """

    def __init__(
        self, label: str, total: int, already: int, progress: bool | ProgressCallback, unit: str = "samples"
    ):
        self.label = label
        self.unit = unit
        self.total = total
        self.done = already
        self.new = 0
        self._callback = progress if callable(progress) else None
        self._display = None
        self._started = time.perf_counter()
        if progress is True:
            from dtwin_agent.outputs.progress import ProgressDisplay

            self._display = ProgressDisplay()

    def __enter__(self) -> Progress:
        self._started = time.perf_counter()
        if self._display is not None:
            self._display.__enter__()
            self._display(ProgressEvent(self.label, "progress", self.done, self.total, self.unit))
        return self

    def advance(self, record: dict[str, Any]) -> None:
        """Count one finished record."""
        self.done += 1
        self.new += 1
        if self._display is not None:
            self._display(ProgressEvent(self.label, "progress", self.done, self.total, self.unit))
        if self._callback is not None:
            self._callback(self.done, self.total, record)

    def __exit__(self, *_: object) -> None:
        if self._display is not None:
            seconds = time.perf_counter() - self._started
            message = f"{self.done}/{self.total} {self.unit}, {self.new} new"
            self._display(ProgressEvent(self.label, "end", message=message, seconds=seconds))
            self._display.close()

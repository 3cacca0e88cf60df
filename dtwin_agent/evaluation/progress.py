"""One progress display for the dataset-scale drivers (evaluation and twin building).

``progress=True`` draws a rich progress bar on stderr, ``False`` nothing, and a callable is called
as ``callback(done, total, record)`` after every record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressCallback = Callable[[int, int, dict[str, Any]], None]


class Progress:
    """Counts finished items and shows them; use as a context manager."""

    def __init__(self, label: str, total: int, already: int, progress: bool | ProgressCallback):
        self.total = total
        self.done = already
        self.new = 0
        self._callback = progress if callable(progress) else None
        self._bar = None
        self._task = None
        if progress is True:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task(label, total=total, completed=already)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, record: dict[str, Any]) -> None:
        """Count one finished record."""
        self.done += 1
        self.new += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        if self._callback is not None:
            self._callback(self.done, self.total, record)

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.stop()

"""The local engine: ``workers`` :class:`~dtwin_agent.evaluation.work.Worker` objects, one thread each.

Every worker is built before the first item (a configuration error surfaces before anything is paid
for) and keeps its mask proposer loaded for the whole run. On Ctrl-C (or any exception) no new item
starts; the items already running finish and their answers are yielded before the exception goes
on, so the caller records everything that was paid for. A second Ctrl-C abandons them.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from dtwin_agent.evaluation.work import Worker, WorkSpec


class LocalEngine:
    """Threads in this process, one loaded worker each."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = workers

    def worker_count(self) -> int:
        """The number of worker threads."""
        return self.workers

    def run(self, spec: WorkSpec, items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield each item's answer as it completes."""
        if not items:
            return
        idle: queue.Queue[Worker] = queue.Queue()
        for _ in range(min(self.workers, len(items))):
            idle.put(Worker(spec))

        def call(item: dict[str, Any]) -> dict[str, Any]:
            worker = idle.get()
            try:
                return worker(item)
            finally:
                idle.put(worker)

        size = idle.qsize()
        pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="dtwin-worker")
        pending: set[Future] = set()
        todo = iter(items)
        clean = False
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < size:
                    item = next(todo, None)
                    if item is None:
                        exhausted = True
                        break
                    pending.add(pool.submit(call, item))
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    pending.discard(fut)
                    yield fut.result()  # a BaseException from a worker stops the run
            clean = True
        except GeneratorExit:  # the caller stopped reading: start nothing more, keep nothing
            for fut in pending:
                fut.cancel()
            raise
        except BaseException:
            for fut in pending:
                fut.cancel()
            for fut in pending:
                if fut.cancelled():
                    continue
                try:
                    answer = fut.result()
                except BaseException:  # noqa: BLE001, S112 - already stopping; the first exception wins
                    continue
                yield answer
            raise
        finally:
            pool.shutdown(wait=clean, cancel_futures=True)

    def close(self) -> None:
        """Nothing to release: the threads end with each run."""

"""Engines run a :class:`~dtwin_agent.evaluation.work.Worker` over many items and stream the answers back.

- ``local`` (default, no Ray needed): ``workers`` worker objects in this process, one thread each;
  each worker loads its own mask proposer once (:mod:`.local`).
- ``ray``: a Ray Data pipeline whose ``map_batches`` runs an actor pool of ``workers`` actors, each
  holding one loaded worker (SAM loaded once per actor, ``num_gpus=1`` per actor when the cluster
  has GPUs). Without an address it starts a local Ray instance; with ``address`` (or ``RAY_ADDRESS``)
  it joins that cluster (:mod:`.ray_engine`).

Both return answers in completion order; the caller (the evaluation runner, the twin builder) is the
only writer of results, so resuming and scoring work the same whatever the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from dtwin_agent.errors import InputError
from dtwin_agent.evaluation.work import WorkSpec

ENGINES = ("local", "ray")


class Engine(Protocol):
    """Runs workers over items."""

    name: str

    def run(self, spec: WorkSpec, items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield one answer per item (``Worker.__call__``'s dict), in completion order."""
        ...

    def worker_count(self) -> int:
        """How many workers :meth:`run` uses."""
        ...

    def close(self) -> None:
        """Release what the engine started (threads, a local Ray instance)."""
        ...


def get_engine(
    name: str, *, workers: int | None = None, address: str | None = None, num_cpus: int | None = None
) -> Engine:
    """The engine called ``name``.

    Args:
        name: ``local`` or ``ray``.
        workers: workers (threads or actors); default 1 for ``local``, for ``ray`` one per GPU of
            the cluster, else one per CPU.
        address: ``ray`` only: the cluster to join (``ray://host:10001``, ``host:6379`` or ``auto``);
            default ``RAY_ADDRESS``, else a new local instance.
        num_cpus: ``ray`` only: CPUs of a local instance it starts (default: all).

    Raises:
        InputError: unknown engine, bad worker count, options of another engine, or Ray missing.
    """
    key = (name or "").strip().lower()
    if key not in ENGINES:
        raise InputError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if key == "local":
        if address:
            raise InputError("--address needs --engine ray")
        from dtwin_agent.evaluation.engines.local import LocalEngine

        return LocalEngine(workers or 1)
    from dtwin_agent.evaluation.engines.ray_engine import RayEngine

    return RayEngine(workers=workers, address=address, num_cpus=num_cpus)


def split_limit(total: int | None, workers: int, per_worker: int) -> int:
    """Per-worker share of a global concurrency limit: ``total // workers`` (``per_worker`` when unset).

    The workers together then never run more than ``total`` calls at once.

    Raises:
        InputError: when ``total`` is smaller than the number of workers (each needs one slot).
    """
    if total is None:
        return per_worker
    if total < workers:
        raise InputError(
            f"the global labelling limit {total} is below the {workers} workers (each needs one slot); "
            "raise it or use fewer --workers"
        )
    return total // workers

"""The Ray engine: a Ray Data pipeline over an actor pool of loaded workers.

The items become a Ray dataset (one block per item up to 10,000 items, so answers stream back one by
one); ``map_batches`` runs :class:`_ActorWorker`, a callable class, with
``compute=ActorPoolStrategy(size=workers)``: Ray Data starts ``workers`` actors, each builds one
:class:`~dtwin_agent.evaluation.work.Worker` (the mask proposer, e.g. SAM, is loaded once per actor)
and handles batches of one item. Each actor asks for ``num_gpus=1`` when the cluster has GPUs, else
the cluster's CPUs shared out among the actors (Ray sets each actor's ``OMP_NUM_THREADS`` to
them, so torch uses them). The driver reads answers with ``iter_rows`` as they complete and is the
only writer of results.

Connecting: with ``address`` (or ``RAY_ADDRESS``) the engine joins that cluster; without, it starts a
local Ray instance (``num_cpus`` CPUs, default all) and shuts it down in :meth:`RayEngine.close`. A
Ray already initialised in this process (a notebook, the tests) is used as it is and left running.
Every node needs dtwin-agent installed and the dataset and model files at the same paths.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from dtwin_agent.errors import DTwinError, InputError
from dtwin_agent.evaluation.work import Worker, WorkSpec

MAX_BLOCKS = 10_000


class _ActorWorker:
    """The callable class Ray Data instantiates once per actor: one loaded :class:`Worker`."""

    def __init__(self, spec: WorkSpec):
        self.worker = Worker(spec)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        answers = [json.dumps(self.worker(json.loads(str(text)))) for text in batch["item"]]
        return {"key": list(batch["key"]), "answer": answers}


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the pipeline needs Ray Data
    except ImportError as exc:
        raise InputError("--engine ray needs Ray: pip install 'dtwin-agent[ray]'") from exc
    return ray


def _cause(exc: BaseException) -> BaseException:
    """The user exception under Ray's wrappers (``RayTaskError`` chains, ``UserCodeException``)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DTwinError):
            return exc
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if nxt is None:
            break
        exc = nxt
    return exc


def local_runtime_env(extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """The runtime environment of a local Ray instance: its workers import what this process imports."""
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return {"env_vars": {"PYTHONPATH": path, **(extra_env or {})}}


class RayEngine:
    """Ray Data ``map_batches`` over an actor pool of loaded workers."""

    name = "ray"

    def __init__(
        self, *, workers: int | None = None, address: str | None = None, num_cpus: int | None = None
    ):
        self.ray = _import_ray()
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if self.address and num_cpus is not None:
            raise InputError("num_cpus applies to a local Ray instance, not to a cluster given by --address")
        self.workers = workers
        self.num_cpus = num_cpus
        self._started = False
        self._connect()

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": True,
        }
        if self.address:
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(f"cannot join the Ray cluster at {self.address}: {exc}") from exc
        else:
            ray.init(num_cpus=self.num_cpus, runtime_env=local_runtime_env(), **kwargs)
        self._started = True

    def _quiet(self) -> None:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own progress
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    def resources(self) -> tuple[int, int]:
        """``(CPUs, GPUs)`` of the cluster."""
        total = self.ray.cluster_resources()
        return int(total.get("CPU", 0)), int(total.get("GPU", 0))

    def worker_count(self) -> int:
        """``workers``, else one actor per GPU, else one per CPU."""
        if self.workers:
            return self.workers
        cpus, gpus = self.resources()
        return max(1, gpus or cpus)

    def run(self, spec: WorkSpec, items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield each item's answer as an actor finishes it."""
        if not items:
            return
        from ray.data import ActorPoolStrategy

        self._quiet()
        cpus, gpus = self.resources()
        size = min(self.worker_count(), len(items))
        # CPU-only: the cluster's CPUs shared out, so each actor's torch uses them (Ray sets
        # OMP_NUM_THREADS to an actor's CPUs); with GPUs one CPU feeds each GPU actor
        per_actor = 1 if gpus else max(1, cpus // max(1, self.worker_count()))
        rows = [{"key": str(item["key"]), "item": json.dumps(item)} for item in items]
        dataset = self.ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
        answers = dataset.map_batches(
            _ActorWorker,
            fn_constructor_args=(spec,),
            batch_size=1,
            compute=ActorPoolStrategy(size=size),
            num_cpus=per_actor,
            num_gpus=1 if gpus else None,
        )
        try:
            for row in answers.iter_rows():
                yield json.loads(row["answer"])
        except DTwinError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps what a worker raised; name the cause
            cause = _cause(exc)
            if isinstance(cause, DTwinError):
                raise cause from exc
            raise DTwinError(f"a Ray worker failed: {type(cause).__name__}: {cause}") from exc

    def close(self) -> None:
        """Shut down the local Ray instance this engine started (a joined cluster keeps running)."""
        if self._started:
            self.ray.shutdown()
            self._started = False

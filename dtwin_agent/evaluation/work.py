"""What one worker does with one item, the same under every engine (local threads or Ray actors).

A :class:`Worker` is built once per worker from a :class:`WorkSpec`: it resolves the settings and
loads the mask proposer (SAM) once, then handles items one at a time. An item is a plain dict
(``key``, ``image``, ``query``, ``image_id``); the answer is a plain JSON-able dict, so it crosses a
Ray object store unchanged:

- task ``twin``: ``build_twin`` of the image -> ``twin`` (the :class:`~dtwin_agent.twin.DigitalTwin`
  as JSON, masks as COCO RLE), ``components``;
- task ``segment``: ``segment`` of (image, query) -> ``mask`` (COCO RLE of the prediction at the
  original size), ``ids``, ``usage``; with ``twins_dir`` the image's twin is read from built twin
  shards and only the reasoning runs.

Every answer has ``key``, ``seconds``, ``worker``, ``error`` and ``error_kind``. A failure never
escapes :meth:`Worker.__call__`: it is classified by :func:`failure_kind` and returned, except
``KeyboardInterrupt`` / ``SystemExit``, which stop the run.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dtwin_agent.errors import ConfigError, ImageError, InputError, ProviderError

Task = Literal["twin", "segment"]
FailureKind = Literal["data", "config", "provider", "method"]


def failure_kind(exc: BaseException) -> FailureKind:
    """Classify a failure on one item.

    - ``data``: the item itself cannot be used (an unreadable image, a bad annotation): recorded,
      not scored, not retried unless asked;
    - ``config``: a setting is wrong (it would fail on every item): the run stops, exit 2;
    - ``provider``: a model provider failed after its retries: recorded but never counted as
      finished, so the next run does the item again;
    - ``method``: anything else the pipeline raised (including internal errors such as a
      ``TypeError``): recorded and, in an evaluation, scored as an empty prediction.
    """
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, ImageError):
        return "data"
    if isinstance(exc, ProviderError):
        return "provider"
    return "method"


def describe(exc: BaseException) -> str:
    """One line naming the exception type and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class WorkSpec:
    """Everything a worker needs, sent once to each worker (picklable: Ray ships it to actors).

    Attributes:
        task: ``twin`` or ``segment``.
        settings: the run's :class:`~dtwin_agent.config.Settings` (chat model instances in it
            must pickle for Ray), a dict of them, or ``None`` for a custom ``function`` that takes none.
        function: replaces ``dtwin_agent.build_twin`` / ``dtwin_agent.segment``: a callable or a
            ``MODULE:NAME`` / ``FILE.py:NAME`` string, called ``function(image_path, query, **kw)``
            (``settings=`` when settings are given, ``twin=`` with ``twins_dir``).
        twins_dir: read each image's twin from these twin shards (``dtwin twins build --out``).
    """

    task: Task
    settings: Any = None
    function: Any = None
    twins_dir: str | None = None


class _ServeTwin:
    """A twin cache holding exactly one twin: the graph's twin lookup gets it, everything else misses.

    Handed to :func:`dtwin_agent.segment` as its ``cache`` with ``perception.granularity`` set to the
    twin's, so the run skips granularity, proposals and labelling and only reasons over the twin.
    """

    def __init__(self, twin: Any):
        self._value = twin.model_dump(mode="json")

    def get(self, namespace: str, key: str, validate: Callable[[Any], Any] | None = None) -> Any:
        if namespace != "twin":
            return None
        return validate(self._value) if validate is not None else self._value

    def put(self, namespace: str, key: str, value: Any) -> None:
        return None


class _NoProposals:
    """A proposer that refuses to run: reasoning over a built twin must never propose masks."""

    name = "none (twin read from the twin shards)"

    def propose(self, image: Any, granularity: str) -> list[Any]:
        raise RuntimeError("the twin read from the twin shards was not used: the pipeline tried to propose")


class Worker:
    """One worker: settings resolved and the mask proposer loaded once, then one item at a time."""

    def __init__(self, spec: WorkSpec):
        self.spec = spec
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.settings = as_settings(spec.settings) if spec.settings is not None else None
        self.twins = None
        if spec.twins_dir is not None:
            from dtwin_agent.evaluation.shards import TwinShards

            self.twins = TwinShards.open(spec.twins_dir)
        if spec.function is not None:
            self._fn = _resolve(spec.function)
            self._kwargs: dict[str, Any] = {"settings": self.settings} if self.settings is not None else {}
            return
        from dtwin_agent.api import build_twin, segment
        from dtwin_agent.cache import open_cache
        from dtwin_agent.perception import get_proposer

        self.settings = self.settings or as_settings(None)
        self._kwargs = {"settings": self.settings, "cache": open_cache(self.settings)}
        if spec.task == "twin":
            self._fn = build_twin
            self._kwargs["proposer"] = get_proposer(self.settings)  # SAM loaded once per worker
        elif self.twins is not None:
            self._fn = self._segment_over_twin
        else:
            self._fn = segment
            self._kwargs["proposer"] = get_proposer(self.settings)

    def _segment_over_twin(self, image: str, query: str, *, twin: Any, settings: Any, cache: Any) -> Any:
        from dtwin_agent.api import segment

        fixed = settings.merged({"perception.granularity": twin.granularity})
        return segment(image, query, settings=fixed, proposer=_NoProposals(), cache=_ServeTwin(twin))

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        """Handle one item; failures come back as ``error`` / ``error_kind``, never raised."""
        started = time.perf_counter()
        answer: dict[str, Any] = {"key": item["key"], "worker": self.name, "error": None, "error_kind": None}
        try:
            kwargs = dict(self._kwargs)
            if self.twins is not None:
                kwargs["twin"] = self.twins.twin(item["image_id"])
            result = self._fn(item["image"], item.get("query") or None, **kwargs)
            answer |= _twin_answer(result) if self.spec.task == "twin" else _segment_answer(result)
        except Exception as exc:  # noqa: BLE001 - one item's failure is recorded, never fatal to the run
            answer |= {"error": describe(exc), "error_kind": failure_kind(exc)}
        answer["seconds"] = round(time.perf_counter() - started, 4)
        return answer


def _resolve(function: Any) -> Callable[..., Any]:
    if isinstance(function, str):
        from dtwin_agent.evaluation.runner import load_callable

        function = load_callable(function)
    if not callable(function):
        raise ConfigError(f"the work function must be callable, got {type(function).__name__}")
    return function


def _twin_answer(twin: Any) -> dict[str, Any]:
    from dtwin_agent.twin import DigitalTwin

    twin = twin if isinstance(twin, DigitalTwin) else DigitalTwin.model_validate(twin)
    return {"twin": twin.model_dump(mode="json"), "components": dict(twin.components)}


def _segment_answer(result: Any) -> dict[str, Any]:
    from dtwin_agent import masks as mask_ops

    mask = np.asarray(result.mask)
    if mask.ndim != 2:
        raise InputError(f"the segment function returned a mask of shape {mask.shape}, not H x W")
    usage = getattr(result, "usage", None)
    if hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    return {
        "mask": mask_ops.encode(mask.astype(bool)).model_dump(mode="json"),
        "ids": [int(i) for i in (getattr(result, "ids", None) or [])],
        "usage": dict(usage) if isinstance(usage, dict) else {},
    }


def as_settings(settings: Any) -> Any:
    """A :class:`~dtwin_agent.config.Settings` from settings, a dict of overrides or ``None`` (resolved)."""
    from dtwin_agent.config import Settings, resolve_settings

    if isinstance(settings, Settings):
        return settings
    return resolve_settings(overrides=settings or {})


def check_models(settings: Any, task: Task) -> None:
    """Build the chat models a run will call and resolve its proposer, before the first item.

    ``offline`` and ``local:`` models are part of the offline profile and need no check here.

    Raises:
        ConfigError: naming the setting (an unknown provider, a missing package or API key, a
            model-store name that is not fetched).
    """
    from dtwin_agent.llm.models import chat_model
    from dtwin_agent.perception import resolve_settings_for_proposer

    roles = ("vlm",) if task == "twin" else ("vlm", "llm")
    for role in roles:
        spec = getattr(settings.models, role)
        name = spec.strip().lower() if isinstance(spec, str) else None
        if spec is None or name in ("", "offline") or (name or "").startswith(("offline:", "local:")):
            continue
        chat_model(role, settings)
    resolve_settings_for_proposer(settings)

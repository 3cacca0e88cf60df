"""Dataset-scale twin building: the digital twin of every image of a split, in resumable twin shards.

:func:`build_twins` lists the images of a dataset split (any loader of
:mod:`dtwin_agent.evaluation.datasets`, or a plain folder of images), skips the images already
finished in ``out_dir`` (:mod:`dtwin_agent.evaluation.shards`), and builds the rest on an engine
(:mod:`dtwin_agent.evaluation.engines`): one :class:`~dtwin_agent.evaluation.work.Worker` per thread
or Ray actor, each with its mask proposer loaded once. Twins are built without a query (paper 3.4:
the twin of every image, annotated later), so the granularity is ``perception.granularity``
(``object`` when ``auto``) and labels describe each region in general.

This process is the only writer: every answer is appended to its shard as it arrives, so a killed
build loses at most the images in flight and the next run finishes only the rest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from dtwin_agent.errors import ConfigError, InputError
from dtwin_agent.evaluation.datasets import canonical_name, load_dataset
from dtwin_agent.evaluation.engines import get_engine, split_limit
from dtwin_agent.evaluation.progress import Progress, ProgressCallback
from dtwin_agent.evaluation.shards import TwinRow, TwinShards, image_id, twin_settings
from dtwin_agent.evaluation.work import WorkSpec, as_settings, check_models


class TwinsReport(BaseModel):
    """What :func:`build_twins` returns."""

    dataset: str
    splits: list[str]
    out_dir: str
    engine: str
    workers: int
    n_images: int = Field(description="images of the requested splits")
    n_new: int = Field(description="images handled by this run")
    n_twins: int = Field(description="images with a twin in the shards")
    errors: dict[str, int] = Field(default_factory=dict, description="error kind -> images (last rows)")
    first_error: str | None = None
    wall_seconds: float = Field(description="wall time of this run's building")
    images_per_minute: float = 0.0


def list_images(dataset: str, root: str | Path, splits: list[str], options: Mapping[str, Any]) -> list[Path]:
    """The distinct image files of the splits, in loader order (several queries of one image: once)."""
    seen: dict[Path, None] = {}
    for split in splits:
        for sample in load_dataset(dataset, root, split, **options):
            seen.setdefault(Path(sample.image_path), None)
    return list(seen)


def build_twins(
    dataset: str,
    root: str | Path,
    split: str | list[str] = "all",
    *,
    out_dir: str | Path,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    settings: Any = None,
    build_fn: Any = None,
    vlm_concurrency: int | None = None,
    limit: int | None = None,
    retry_errors: bool = False,
    dataset_options: Mapping[str, Any] | None = None,
    progress: bool | ProgressCallback = True,
) -> TwinsReport:
    """Build the twin of every image of ``dataset`` / ``split`` into twin shards in ``out_dir``.

    Args:
        dataset: a dataset name (:func:`~dtwin_agent.evaluation.datasets.canonical_name`) or
            ``images`` for a plain folder of images (``split``: a subfolder or ``all``).
        root: the dataset folder.
        split: a split, comma-separated splits or a list.
        out_dir: the twin shards folder; reused to resume.
        engine: ``local`` or ``ray`` (see :func:`~dtwin_agent.evaluation.engines.get_engine`).
        workers: threads (local) or actors (ray).
        address: a Ray cluster to join.
        num_cpus: CPUs of a local Ray instance.
        settings: a :class:`~dtwin_agent.config.Settings` (default: resolved as everywhere); the
            twin cache is not used (the shards are the store).
        build_fn: replaces ``dtwin_agent.build_twin`` (a callable or ``MODULE:NAME``), called
            ``build_fn(image_path, None, settings=...)``; returns a ``DigitalTwin``.
        vlm_concurrency: a global limit on concurrent VLM labelling calls, split evenly over the
            workers (``semantics.concurrency`` of each becomes ``limit // workers``).
        limit: at most this many images (the first ones).
        retry_errors: build again the images whose last row is an error.
        dataset_options: loader options.
        progress: a rich bar on stderr (``True``), nothing, or ``callback(done, total, row)``.

    Raises:
        InputError: bad dataset, split, options, output folder or settings (``ConfigError``: exit 2).
        KeyboardInterrupt: after writing the rows of the images that finished.
    """
    from dtwin_agent.evaluation.runner import resolve_splits

    canon = canonical_name(dataset)
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset root not found: {root}")
    splits = resolve_splits(canon, split)
    options = dict(dataset_options or {})
    images = list_images(canon, root, splits, options)
    if limit is not None:
        images = images[:limit]
    ids = [image_id(p, root) for p in images]

    settings = as_settings(settings)
    if build_fn is None:
        check_models(settings, "twin")
    runner = get_engine(engine, workers=workers, address=address, num_cpus=num_cpus)
    try:
        count = runner.worker_count()
        per_worker = split_limit(vlm_concurrency, count, settings.semantics.concurrency)
        run_settings = settings.merged({"cache.enabled": False, "semantics.concurrency": per_worker})
        shards = TwinShards.create_or_resume(
            out_dir,
            {
                "dataset": canon,
                "root": str(root.resolve()),
                "splits": splits,
                "options": {k: str(v) for k, v in options.items()},
                "settings": twin_settings(run_settings),
            },
        )
        done = shards.finished(retry_errors=retry_errors)
        todo = [
            {"key": key, "image_id": key, "image": str(path), "query": ""}
            for key, path in zip(ids, images, strict=True)
            if key not in done
        ]
        paths = {item["key"]: item["image"] for item in todo}
        spec = WorkSpec(task="twin", settings=run_settings, function=build_fn)
        started = time.perf_counter()
        try:
            with Progress("twins", len(ids), len(ids) - len(todo), progress, unit="images") as bar:
                for answer in runner.run(spec, todo):
                    if answer.get("error_kind") == "config":  # wrong for every image: stop, keep nothing
                        raise ConfigError(answer["error"])
                    row = TwinRow(image=paths[answer["key"]], image_id=answer["key"], **_row_fields(answer))
                    shards.append(row)
                    bar.advance(row.model_dump(mode="json", exclude={"twin"}))
                n_new = bar.new
        finally:
            shards.close()
        wall = time.perf_counter() - started
    finally:
        runner.close()
    return _report(shards, canon, splits, ids, engine, count, n_new, wall)


def _row_fields(answer: dict[str, Any]) -> dict[str, Any]:
    keys = ("twin", "components", "seconds", "worker", "error", "error_kind")
    return {k: answer[k] for k in keys if answer.get(k) is not None}


def _report(
    shards: TwinShards,
    dataset: str,
    splits: list[str],
    ids: list[str],
    engine: str,
    workers: int,
    n_new: int,
    wall: float,
) -> TwinsReport:
    rows = shards.rows()
    wanted = [rows[i] for i in ids if i in rows]
    errors: dict[str, int] = {}
    for row in wanted:
        if row.get("error"):
            errors[str(row.get("error_kind"))] = errors.get(str(row.get("error_kind")), 0) + 1
    first = next((f"{r['image_id']}: {r['error']}" for r in wanted if r.get("error")), None)
    return TwinsReport(
        dataset=dataset,
        splits=splits,
        out_dir=str(shards.dir),
        engine=engine,
        workers=workers,
        n_images=len(ids),
        n_new=n_new,
        n_twins=sum(1 for r in wanted if r.get("twin") is not None and not r.get("error")),
        errors=errors,
        first_error=first,
        wall_seconds=round(wall, 3),
        images_per_minute=round(60.0 * n_new / wall, 2) if wall > 0 and n_new else 0.0,
    )

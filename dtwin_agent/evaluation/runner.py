"""Resumable benchmark evaluation: gIoU / cIoU tables in the layout of the paper's Table 1.

:func:`run_eval` segments every sample of a benchmark split on an engine (``local`` threads or a
``ray`` actor pool, :mod:`dtwin_agent.evaluation.engines`; the same workers either way) and appends
one JSON line per sample to ``OUT/results.jsonl`` as soon as it is scored (flushed and fsynced).
This process is the only writer and scores every answer itself, reading the ground truth inside the
per-sample error handling, so the records, the metrics and the table are the same whatever engine
ran the segmentation. Running it again with the same ``OUT`` skips every finished sample, so an
interrupted run resumes where it stopped and no sample is paid for twice. With the local engine a
Ctrl-C lets the samples already running finish and records them before stopping. A half-written
last line (a killed process) is cut off on resume.

Models are built and checked before the first sample: a configuration error (a broken ``--llm``)
stops the run with nothing recorded. A failed sample is recorded with ``error`` and its
``error_kind`` (:func:`dtwin_agent.evaluation.work.failure_kind`):

- ``method``: the pipeline failed on it; scored as an empty prediction (the failure costs the
  method its IoU, as a missing answer should); ``retry_errors=True`` runs it again;
- ``data``: its annotation or image cannot be read; not scored, counted as a bad sample;
- ``provider``: a provider kept failing; not scored and never finished: the next run does it again.
  After ``max_provider_failures`` such samples in a row the run stops.

The final table (:func:`render_markdown`) is printed and written as ``OUT/summary.md`` and
``OUT/summary.json``. For ReasonSeg its columns are Table 1's: val, test short query, test long
query, test overall, each with gIoU and cIoU (in percent). Other datasets get one column per split.
With ``twins_dir`` (twins built by ``dtwin twins build``) each sample reuses its image's twin and
only the reasoning runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from dtwin_agent.errors import ConfigError, InputError, ProviderError
from dtwin_agent.evaluation.datasets import EVAL_SPLITS, Sample, canonical_name, check_options, load_dataset
from dtwin_agent.evaluation.engines import get_engine, split_limit
from dtwin_agent.evaluation.jsonl import JsonlWriter, read_jsonl
from dtwin_agent.evaluation.metrics import EMPTY_RULES, EmptyRule, from_counts, intersection_union, sample_iou
from dtwin_agent.evaluation.progress import Progress, ProgressCallback
from dtwin_agent.evaluation.work import WorkSpec, as_settings, check_models, describe
from dtwin_agent.outputs.files import write_text

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "run.json"
SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
RECORD_VERSION = 2
#: stop after this many samples in a row failed at the provider (the rest would fail the same way)
MAX_PROVIDER_FAILURES = 5
#: error kinds whose samples are not scored (no ground truth, or no answer through no fault of the method)
UNSCORED = ("data", "provider")


class ColumnScore(BaseModel):
    """gIoU and cIoU (fractions in [0, 1]) of one table column, over ``n`` scored samples.

    ``errors`` of them failed in the method (scored as empty predictions); ``bad`` samples had an
    unreadable annotation or image and ``unfinished`` ones failed at the provider: neither is scored.
    """

    giou: float
    ciou: float
    n: int
    errors: int = 0
    bad: int = 0
    unfinished: int = 0


class EvalReport(BaseModel):
    """What :func:`run_eval` returns (and writes as ``summary.json``)."""

    dataset: str
    splits: list[str]
    method: str
    empty_rule: str
    columns: dict[str, ColumnScore] = Field(description="table column -> scores, in table order")
    n_samples: int = Field(description="samples recorded (scored, bad and unfinished)")
    n_errors: int = Field(description="samples the method failed on (scored as empty predictions)")
    n_bad: int = Field(default=0, description="samples whose annotation or image could not be read")
    n_unfinished: int = Field(default=0, description="samples that failed at the provider (run again)")
    first_problem: str | None = Field(default=None, description="the first bad or unfinished sample's error")
    n_new: int = Field(description="samples segmented by this call (the rest came from the results file)")
    engine: str = "local"
    workers: int = 1
    twins: str | None = Field(default=None, description="twin shards the reasoning ran over")
    usage_totals: dict[str, float] = Field(
        default_factory=dict, description="numeric usage fields summed by name"
    )
    usage_by_path: dict[str, float] = Field(
        default_factory=dict, description="numeric usage fields summed by path"
    )
    seconds: float = Field(description="sum of per-sample wall seconds over all recorded samples")
    results_path: str
    markdown: str = ""


# ------------------------------------------------------------------------------------- usage sums


def _usage_dict(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    if hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    if isinstance(usage, Mapping):
        return dict(usage)
    return {}


def _numeric_leaves(node: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _numeric_leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, float(node)


def sum_usage(usages: Iterable[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Sum every numeric field of usage dicts / pydantic models.

    Returns:
        ``(by_name, by_path)``: totals keyed by the leaf field name (``calls``, ``input_tokens``...,
        summed over every stage) and keyed by the dotted path (``stages.refine.calls``).

    """
    by_name: dict[str, float] = {}
    by_path: dict[str, float] = {}
    for usage in usages:
        for path, value in _numeric_leaves(_usage_dict(usage)):
            name = path.rsplit(".", 1)[-1]
            by_name[name] = by_name.get(name, 0.0) + value
            by_path[path] = by_path.get(path, 0.0) + value
    return by_name, by_path


# ----------------------------------------------------------------------------------- results file


def read_results(path: str | Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Read a results JSONL file: ``sample_id -> record`` (a later line for an id wins).

    Args:
        path: the file; a missing file gives ``{}``.
        repair: cut off a half-written last line (no trailing newline) so appends stay valid.

    Raises:
        InputError: if a complete line is not a JSON object with a ``sample_id``.

    """
    return read_jsonl(path, "sample_id", repair=repair)


def error_kind(record: Mapping[str, Any]) -> str | None:
    """The error kind of a record (records written before kinds existed: ``method``)."""
    if not record.get("error"):
        return None
    return str(record.get("error_kind") or "method")


def is_finished(record: Mapping[str, Any], retry_errors: bool = False) -> bool:
    """Whether a recorded sample is done: scored, or failed for its own reasons (not at the provider)."""
    kind = error_kind(record)
    if kind is None:
        return True
    return kind != "provider" and not retry_errors


# ------------------------------------------------------------------------------------ one sample


def default_segment_fn() -> Any:
    """The segment function of an evaluation given none: ``None``, the dtwin-agent pipeline.

    Workers then run :func:`dtwin_agent.segment` with their proposer loaded once.
    """
    return None


def score_answer(sample: Sample, answer: Mapping[str, Any], empty_rule: EmptyRule = "lisa") -> dict[str, Any]:
    """Score one worker answer against the sample's ground truth: the sample's result record.

    The ground truth is read here, inside the per-sample handling: an annotation that cannot be
    read becomes this sample's ``data`` error naming the file and entry; it never stops the run.
    The record holds ``sample_id``, ``dataset``, ``split``, ``query_type``, ``image``, ``query``,
    ``intersection``, ``union``, ``iou`` (under ``empty_rule``; ``None`` when not scored),
    ``pred_area``, ``gt_area``, ``ids``, ``usage``, ``seconds``, ``worker``, ``error`` and
    ``error_kind``.
    """
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "sample_id": sample.sample_id,
        "dataset": sample.meta.get("dataset"),
        "split": sample.meta.get("split"),
        "query_type": sample.meta.get("query_type"),
        "image": str(sample.image_path),
        "query": sample.query,
        "intersection": None,
        "union": None,
        "iou": None,
        "pred_area": None,
        "gt_area": None,
        "ids": list(answer.get("ids") or []),
        "usage": dict(answer.get("usage") or {}),
        "seconds": answer.get("seconds", 0.0),
        "worker": answer.get("worker"),
        "error": answer.get("error"),
        "error_kind": answer.get("error_kind"),
    }
    try:
        gt, ignore = sample.load_masks()
    except Exception as exc:  # noqa: BLE001 - a bad annotation is this sample's error, never the run's
        return record | {"error": describe(exc), "error_kind": "data"}
    if record["error_kind"] in UNSCORED:
        return record
    pred = np.zeros_like(gt)
    if record["error"] is None:
        try:
            from dtwin_agent import masks as mask_ops
            from dtwin_agent.twin import RLE

            pred = mask_ops.decode(RLE.model_validate(answer["mask"]))
            if pred.shape != gt.shape:
                raise InputError(f"prediction has shape {pred.shape}, the ground truth {gt.shape}")
        except Exception as exc:  # noqa: BLE001 - an unusable prediction is the method's failure
            record |= {"error": describe(exc), "error_kind": "method"}
            pred = np.zeros_like(gt)
    inter, union = intersection_union(pred, gt, ignore)
    keep = ~ignore
    return record | {
        "intersection": inter,
        "union": union,
        "iou": sample_iou(inter, union, empty_rule),
        "pred_area": int(np.count_nonzero(pred & keep)),
        "gt_area": int(np.count_nonzero(gt & keep)),
    }


# ---------------------------------------------------------------------------------------- tables


def table_columns(dataset: str, splits: Iterable[str]) -> list[tuple[str, str, str | None]]:
    """``(column name, split, query_type filter)`` for each table column, in order.

    ReasonSeg's ``test`` split expands to Table 1's short query / long query / overall columns.
    """
    cols: list[tuple[str, str, str | None]] = []
    for split in splits:
        if dataset == "reasonseg" and split == "test":
            cols += [
                ("test short", "test", "short"),
                ("test long", "test", "long"),
                ("test overall", "test", None),
            ]
        else:
            cols.append((split, split, None))
    return cols


def compute_columns(
    records: Iterable[Mapping[str, Any]], dataset: str, splits: list[str], empty_rule: EmptyRule = "lisa"
) -> dict[str, ColumnScore]:
    """Scores per table column from result records (the empty rule is applied here, not read back).

    Records of bad samples (``data`` errors) and unfinished ones (``provider`` errors) are counted,
    not scored.
    """
    recs = list(records)
    out: dict[str, ColumnScore] = {}
    for name, split, qtype in table_columns(dataset, splits):
        chosen = [
            r for r in recs if r.get("split") == split and (qtype is None or r.get("query_type") == qtype)
        ]
        kinds = [error_kind(r) for r in chosen]
        scored = [r for r, k in zip(chosen, kinds, strict=True) if k not in UNSCORED]
        acc = from_counts(scored, empty_rule)
        out[name] = ColumnScore(
            giou=acc.giou,
            ciou=acc.ciou,
            n=len(acc),
            errors=kinds.count("method"),
            bad=kinds.count("data"),
            unfinished=kinds.count("provider"),
        )
    return out


def render_markdown(report: EvalReport) -> str:
    """Render the table in Table 1's layout (gIoU / cIoU in percent, one decimal), plus counts and usage."""
    names = list(report.columns)
    head = "| Method | " + " | ".join(f"{n} gIoU | {n} cIoU" for n in names) + " |"
    rule = "|---|" + "|".join("---:|---:" for _ in names) + "|"
    cells = []
    for n in names:
        col = report.columns[n]
        cells += ["-", "-"] if col.n == 0 else [f"{100 * col.giou:.1f}", f"{100 * col.ciou:.1f}"]
    row = f"| {report.method} | " + " | ".join(cells) + " |"
    lines = [
        f"## {report.dataset}: {', '.join(report.splits)}",
        "",
        head,
        rule,
        row,
        "",
        "| column | scored | method errors | bad samples | unfinished |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {c.n} | {c.errors} | {c.bad} | {c.unfinished} |" for n, c in report.columns.items()],
        "",
        f"Empty-sample rule: `{report.empty_rule}`. Samples: {report.n_samples} "
        f"({report.n_new} segmented in the last run, engine {report.engine}, {report.workers} workers), "
        f"method errors (scored empty): {report.n_errors}, bad samples (not scored): {report.n_bad}, "
        f"unfinished (provider failures, not scored): {report.n_unfinished}, "
        f"segmentation seconds: {report.seconds:.1f}.",
    ]
    if report.twins:
        lines += ["", f"Twins read from `{report.twins}`: only the reasoning ran."]
    if report.first_problem:
        lines += ["", f"First bad or unfinished sample: {report.first_problem}"]
    if report.usage_totals:
        lines += ["", "| usage | total |", "|---|---:|"]
        lines += [f"| {k} | {_fmt_num(v)} |" for k, v in sorted(report.usage_totals.items())]
    return "\n".join(lines) + "\n"


def _fmt_num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def rich_table(report: EvalReport) -> Any:
    """Render the same table as a ``rich.table.Table`` for the terminal."""
    from rich.table import Table

    table = Table(title=f"{report.dataset} ({report.empty_rule} empty rule)")
    table.add_column("Method")
    for n in report.columns:
        table.add_column(f"{n}\ngIoU", justify="right")
        table.add_column(f"{n}\ncIoU", justify="right")
    cells = []
    for col in report.columns.values():
        cells += ["-", "-"] if col.n == 0 else [f"{100 * col.giou:.1f}", f"{100 * col.ciou:.1f}"]
    table.add_row(report.method, *cells)
    return table


# ---------------------------------------------------------------------------------------- runner


def resolve_splits(dataset: str, split: str | Iterable[str]) -> list[str]:
    """Split names from ``"val"``, ``"val,test"``, ``"all"`` (the dataset's evaluation splits) or a list."""
    canon = canonical_name(dataset)
    items = (
        [s.strip() for s in split.split(",")] if isinstance(split, str) else [str(s).strip() for s in split]
    )
    items = [s for s in items if s]
    if not items:
        raise InputError("no split given")
    if items == ["all"]:
        return list(EVAL_SPLITS[canon])
    return items


def _check_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``run.json``; refuse an ``out_dir`` that holds another dataset's results."""
    path = out_dir / MANIFEST_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON: {exc.msg}") from exc
        if old.get("dataset") not in (None, manifest["dataset"]):
            raise InputError(
                f"{out_dir} holds results of dataset {old['dataset']!r}, not {manifest['dataset']!r}; "
                "use another output folder"
            )
        manifest = {**old, **manifest, "splits": sorted(set(old.get("splits", [])) | set(manifest["splits"]))}
    write_text(path, json.dumps(manifest, indent=2) + "\n")


def run_eval(
    dataset: str,
    root: str | Path,
    split: str | Iterable[str] = "val",
    *,
    out_dir: str | Path,
    segment_fn: Any = None,
    settings: Any = None,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    twins_dir: str | Path | None = None,
    vlm_concurrency: int | None = None,
    limit: int | None = None,
    empty_rule: EmptyRule = "lisa",
    retry_errors: bool = False,
    method: str = "DTwinSeger (dtwin-agent)",
    dataset_options: Mapping[str, Any] | None = None,
    progress: bool | ProgressCallback = True,
    write_summary: bool = True,
    max_provider_failures: int = MAX_PROVIDER_FAILURES,
) -> EvalReport:
    """Evaluate a segmentation function on a benchmark split, resuming from ``out_dir``.

    Args:
        dataset: ``reasonseg`` | ``refcoco`` | ``refcoco+`` | ``refcocog`` | ``llmseg40k``.
        root: the dataset folder (see :mod:`dtwin_agent.evaluation.datasets`).
        split: a split, comma-separated splits, ``all``, or a list.
        out_dir: where ``results.jsonl``, ``run.json``, ``summary.md`` and ``summary.json`` live.
        segment_fn: ``segment_fn(image_path, query, settings=...)`` returning an object with
            ``.mask`` (bool ``H x W``), ``.ids`` and ``.usage``, or its ``MODULE:NAME``; default the
            dtwin-agent pipeline with each worker's proposer loaded once (``settings`` is passed
            only when not ``None``; ``twin=`` too with ``twins_dir``).
        settings: the run's :class:`~dtwin_agent.config.Settings` (default: resolved as everywhere).
        engine: ``local`` (threads) or ``ray`` (an actor pool, :mod:`dtwin_agent.evaluation.engines`).
        workers: samples segmented at the same time (threads or actors).
        address: ``ray``: the cluster to join (default ``RAY_ADDRESS``, else a local instance).
        num_cpus: ``ray``: CPUs of a local instance.
        twins_dir: twin shards from ``dtwin twins build``: each sample reasons over its image's twin.
        vlm_concurrency: a global limit on concurrent VLM labelling calls, split evenly over the
            workers (each labels with ``limit // workers`` calls at once).
        limit: at most this many samples per split (the first ones, in the loader's order).
        empty_rule: ``lisa`` (both empty scores 1.0) or ``strict`` (0.0), see
            :mod:`dtwin_agent.evaluation.metrics`.
        retry_errors: segment again the samples whose recorded result is a method or data error.
        method: the row label of the table.
        dataset_options: passed to the loader (``split_by``, ``image_dir``, ``all_queries``...).
        progress: ``True`` for a rich progress bar on stderr, ``False`` for none, or a callback
            ``(done, total, record)``.
        write_summary: write ``summary.md`` and ``summary.json``.
        max_provider_failures: stop after this many samples in a row failed at the provider.

    Returns:
        The :class:`EvalReport` over every recorded sample of the requested splits.

    Raises:
        InputError: bad dataset, split, root, options, engine or an incompatible ``out_dir``;
            ``ConfigError`` (an ``InputError``) for a model setting that cannot work, found before
            the first sample.
        ProviderError: after ``max_provider_failures`` provider failures in a row (rerun to resume).
        KeyboardInterrupt: after recording the samples already in flight.

    """
    canon = canonical_name(dataset)
    if canon == "images":
        raise InputError("a plain image folder has no ground truth to evaluate against")
    if empty_rule not in EMPTY_RULES:
        raise InputError(f"empty_rule must be one of {EMPTY_RULES}, got {empty_rule!r}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    if not Path(root).is_dir():
        raise InputError(f"dataset root not found: {root}")
    splits = resolve_splits(canon, split)
    options = dict(dataset_options or {})
    check_options(canon, options)

    # List every split first: bad splits fail before anything is paid for.
    samples: list[Sample] = []
    for sp in splits:
        listed = list(load_dataset(canon, root, sp, **options))
        samples += listed[:limit] if limit is not None else listed
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise InputError("the dataset yields duplicate sample ids")

    function = segment_fn if segment_fn is not None else default_segment_fn()
    if function is None or settings is not None:
        settings = as_settings(settings)
    if function is None:
        check_models(settings, "segment")  # a broken --llm stops here, before any sample

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    results_path = out / RESULTS_FILE
    done = read_results(results_path, repair=True)
    todo = [s for s in samples if s.sample_id not in done or not is_finished(done[s.sample_id], retry_errors)]
    items = _work_items(todo, root, twins_dir)

    runner = get_engine(engine, workers=workers, address=address, num_cpus=num_cpus)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _check_manifest(
            out,
            {
                "dataset": canon,
                "root": str(Path(root).resolve()),
                "splits": splits,
                "options": {k: str(v) for k, v in options.items()},
                "record_version": RECORD_VERSION,
            },
        )
        if settings is not None and vlm_concurrency is not None:
            share = split_limit(vlm_concurrency, runner.worker_count(), settings.semantics.concurrency)
            settings = settings.merged({"semantics.concurrency": share})
        spec = WorkSpec(
            task="segment",
            settings=settings,
            function=function,
            twins_dir=str(twins_dir) if twins_dir is not None else None,
        )
        by_id = {s.sample_id: s for s in todo}
        with (
            JsonlWriter(results_path) as writer,
            Progress("eval", len(samples), len(samples) - len(todo), progress) as bar,
        ):
            in_a_row = 0
            for answer in runner.run(spec, items):
                if answer.get("error_kind") == "config":  # wrong for every sample: stop, record nothing
                    raise ConfigError(answer["error"])
                record = score_answer(by_id[answer["key"]], answer, empty_rule)
                writer.write(record)
                bar.advance(record)
                in_a_row = in_a_row + 1 if record.get("error_kind") == "provider" else 0
                if in_a_row >= max_provider_failures:
                    raise ProviderError(
                        f"{in_a_row} samples in a row failed at the provider (last: {record['error']}); "
                        "stopped. Finished samples are saved: fix the provider and run the same command again"
                    )
            n_new = bar.new
        workers_used = runner.worker_count()
    finally:
        runner.close()

    records = read_results(results_path)
    wanted = [records[i] for i in ids if i in records]
    by_name, by_path = sum_usage(r.get("usage") for r in wanted)
    kinds = [error_kind(r) for r in wanted]
    problems = [r for r, k in zip(wanted, kinds, strict=True) if k in UNSCORED]
    report = EvalReport(
        dataset=canon,
        splits=splits,
        method=method,
        empty_rule=empty_rule,
        columns=compute_columns(wanted, canon, splits, empty_rule),
        n_samples=len(wanted),
        n_errors=kinds.count("method"),
        n_bad=kinds.count("data"),
        n_unfinished=kinds.count("provider"),
        first_problem=f"{problems[0]['sample_id']}: {problems[0]['error']}" if problems else None,
        n_new=n_new,
        engine=engine,
        workers=workers_used,
        twins=str(twins_dir) if twins_dir is not None else None,
        usage_totals=by_name,
        usage_by_path=by_path,
        seconds=float(sum(float(r.get("seconds") or 0.0) for r in wanted)),
        results_path=str(results_path),
    )
    report.markdown = render_markdown(report)
    if write_summary:
        write_text(out / SUMMARY_MD, report.markdown)
        write_text(out / SUMMARY_JSON, report.model_dump_json(indent=2) + "\n")
    return report


def _work_items(todo: list[Sample], root: str | Path, twins_dir: str | Path | None) -> list[dict[str, Any]]:
    """The engine's items; with ``twins_dir`` every image must have a built twin (checked up front)."""
    from dtwin_agent.evaluation.shards import TwinShards, image_id

    items = [
        {
            "key": s.sample_id,
            "image": str(s.image_path),
            "query": s.query,
            "image_id": image_id(s.image_path, root),
        }
        for s in todo
    ]
    if twins_dir is not None:
        index = TwinShards.open(twins_dir).index()
        missing = sorted({i["image_id"] for i in items if i["image_id"] not in index})
        if missing:
            raise InputError(
                f"{len(missing)} images have no twin in {twins_dir} (first: {missing[0]}); "
                "build them with `dtwin twins build` on the same dataset root"
            )
    return items


def load_callable(spec: str) -> Any:
    """``package.module:name`` or ``path/to/file.py:name`` -> that object (scripts pass a segment function).

    Raises:
        InputError: for a malformed spec, a missing file or a missing attribute.
    """
    import importlib
    import importlib.util

    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise InputError(f"expected MODULE:NAME or FILE.py:NAME, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"file not found: {path}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise InputError(f"{target} has no attribute {attr!r}") from exc

"""Resumable benchmark evaluation: gIoU / cIoU tables in the layout of the paper's Table 1.

:func:`run_eval` segments every sample of a benchmark split and appends one JSON line per sample
to ``OUT/results.jsonl`` as soon as it is scored (flushed and fsynced). Running it again with the
same ``OUT`` folder skips every sample already in the file, so an interrupted run resumes where it
stopped and no sample is paid for twice. A Ctrl-C lets the samples already being segmented finish
and records them before stopping. A half-written last line (a killed process) is cut off on resume.

The final table (:func:`render_markdown`) is printed and written as ``OUT/summary.md`` and
``OUT/summary.json``. For ReasonSeg its columns are Table 1's: val, test short query, test long
query, test overall, each with gIoU and cIoU (in percent). Other datasets get one column per split.

A sample whose segmentation raised is recorded with ``error`` and scored as an empty prediction
(the failure costs the method its IoU, as a missing answer should); ``retry_errors=True`` runs such
samples again on resume.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from dtwin_agent.errors import InputError
from dtwin_agent.evaluation.datasets import EVAL_SPLITS, Sample, canonical_name, load_dataset
from dtwin_agent.evaluation.metrics import EMPTY_RULES, EmptyRule, from_counts, intersection_union, sample_iou

RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "run.json"
SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
RECORD_VERSION = 1

SegmentFn = Callable[..., Any]
ProgressCallback = Callable[[int, int, dict[str, Any]], None]


class ColumnScore(BaseModel):
    """gIoU and cIoU (fractions in [0, 1]) of one table column, over ``n`` samples."""

    giou: float
    ciou: float
    n: int
    errors: int = 0


class EvalReport(BaseModel):
    """What :func:`run_eval` returns (and writes as ``summary.json``)."""

    dataset: str
    splits: list[str]
    method: str
    empty_rule: str
    columns: dict[str, ColumnScore] = Field(description="table column -> scores, in table order")
    n_samples: int
    n_errors: int
    n_new: int = Field(description="samples segmented by this call (the rest came from the results file)")
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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_results(path: str | Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Read a results JSONL file: ``sample_id -> record`` (a later line for an id wins).

    Args:
        path: the file; a missing file gives ``{}``.
        repair: cut off a half-written last line (no trailing newline) so appends stay valid.

    Raises:
        InputError: if a complete line is not a JSON object with a ``sample_id``.

    """
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with path.open("r+b") as fh:
                fh.truncate(cut)
        data = data[:cut]
    out: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from exc
        if not isinstance(rec, dict) or "sample_id" not in rec:
            raise InputError(f"{path}:{lineno}: a result line needs a sample_id")
        out[str(rec["sample_id"])] = rec
    return out


class _ResultsWriter:
    """Appends records as JSON lines, one write + flush + fsync each."""

    def __init__(self, path: Path):
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=_json_default) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return str(obj)


# ------------------------------------------------------------------------------------ one sample


def default_segment_fn() -> SegmentFn:
    """``dtwin_agent.api.segment``, imported on first use."""
    from dtwin_agent.api import segment

    return segment


def score_sample(
    sample: Sample, segment_fn: SegmentFn, settings: Any = None, empty_rule: EmptyRule = "lisa"
) -> dict[str, Any]:
    """Segment one sample and build its result record (never raises for a failed segmentation).

    The record holds ``sample_id``, ``split``, ``query_type``, ``image``, ``query``,
    ``intersection``, ``union``, ``iou`` (under ``empty_rule``), ``pred_area``, ``gt_area``,
    ``ids``, ``usage``, ``seconds`` and ``error`` (``None`` on success).
    """
    start = time.perf_counter()
    error: str | None = None
    ids: list[int] = []
    usage: dict[str, Any] = {}
    gt, ignore = sample.gt_mask, sample.ignore_mask
    pred = np.zeros_like(gt)
    try:
        kwargs = {"settings": settings} if settings is not None else {}
        result = segment_fn(str(sample.image_path), sample.query, **kwargs)
        usage = _usage_dict(getattr(result, "usage", None))
        ids = [int(i) for i in (getattr(result, "ids", None) or [])]
        mask = np.asarray(result.mask)
        if mask.shape != gt.shape:
            raise InputError(f"prediction has shape {mask.shape}, the ground truth {gt.shape}")
        pred = mask.astype(bool)
    except Exception as exc:  # noqa: BLE001 - a failed sample is recorded, not fatal
        error = f"{type(exc).__name__}: {exc}"
        pred = np.zeros_like(gt)
    inter, union = intersection_union(pred, gt, ignore)
    keep = ~ignore
    return {
        "version": RECORD_VERSION,
        "sample_id": sample.sample_id,
        "dataset": sample.meta.get("dataset"),
        "split": sample.meta.get("split"),
        "query_type": sample.meta.get("query_type"),
        "image": str(sample.image_path),
        "query": sample.query,
        "intersection": inter,
        "union": union,
        "iou": sample_iou(inter, union, empty_rule),
        "pred_area": int(np.count_nonzero(pred & keep)),
        "gt_area": int(np.count_nonzero(gt & keep)),
        "ids": ids,
        "usage": usage,
        "seconds": round(time.perf_counter() - start, 4),
        "error": error,
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
    """Scores per table column from result records (the empty rule is applied here, not read back)."""
    recs = list(records)
    out: dict[str, ColumnScore] = {}
    for name, split, qtype in table_columns(dataset, splits):
        chosen = [
            r for r in recs if r.get("split") == split and (qtype is None or r.get("query_type") == qtype)
        ]
        acc = from_counts(chosen, empty_rule)
        out[name] = ColumnScore(
            giou=acc.giou, ciou=acc.ciou, n=len(acc), errors=sum(1 for r in chosen if r.get("error"))
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
        "| column | samples | errors |",
        "|---|---:|---:|",
        *[f"| {n} | {c.n} | {c.errors} |" for n, c in report.columns.items()],
        "",
        f"Empty-sample rule: `{report.empty_rule}`. Samples: {report.n_samples} "
        f"({report.n_new} segmented in the last run), errors: {report.n_errors}, "
        f"segmentation seconds: {report.seconds:.1f}.",
    ]
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
    _atomic_write(path, json.dumps(manifest, indent=2) + "\n")


def run_eval(
    dataset: str,
    root: str | Path,
    split: str | Iterable[str] = "val",
    *,
    out_dir: str | Path,
    segment_fn: SegmentFn | None = None,
    settings: Any = None,
    concurrency: int = 1,
    limit: int | None = None,
    empty_rule: EmptyRule = "lisa",
    retry_errors: bool = False,
    method: str = "DTwinSeger (dtwin-agent)",
    dataset_options: Mapping[str, Any] | None = None,
    progress: bool | ProgressCallback = True,
    write_summary: bool = True,
) -> EvalReport:
    """Evaluate a segmentation function on a benchmark split, resuming from ``out_dir``.

    Args:
        dataset: ``reasonseg`` | ``refcoco`` | ``refcoco+`` | ``refcocog`` | ``llmseg40k``.
        root: the dataset folder (see :mod:`dtwin_agent.evaluation.datasets`).
        split: a split, comma-separated splits, ``all``, or a list.
        out_dir: where ``results.jsonl``, ``run.json``, ``summary.md`` and ``summary.json`` live.
        segment_fn: ``segment_fn(image_path, query, settings=...)`` returning an object with
            ``.mask`` (bool ``H x W``), ``.ids`` and ``.usage``; default :func:`dtwin_agent.api.segment`
            (``settings`` is passed only when not ``None``).
        settings: passed through to ``segment_fn``.
        concurrency: samples segmented at the same time (threads).
        limit: at most this many samples per split (the first ones, in the loader's order).
        empty_rule: ``lisa`` (both empty scores 1.0) or ``strict`` (0.0), see :mod:`dtwin_agent.evaluation.metrics`.
        retry_errors: segment again the samples whose recorded result is an error.
        method: the row label of the table.
        dataset_options: passed to the loader (``split_by``, ``image_dir``, ``all_queries``...).
        progress: ``True`` for a rich progress bar on stderr, ``False`` for none, or a callback
            ``(done, total, record)``.
        write_summary: write ``summary.md`` and ``summary.json``.

    Returns:
        The :class:`EvalReport` over every recorded sample of the requested splits.

    Raises:
        InputError: bad dataset, split, root, options or an incompatible ``out_dir``.
        KeyboardInterrupt: after recording the samples already in flight.

    """
    canon = canonical_name(dataset)
    if empty_rule not in EMPTY_RULES:
        raise InputError(f"empty_rule must be one of {EMPTY_RULES}, got {empty_rule!r}")
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, got {concurrency}")
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    if not Path(root).is_dir():
        raise InputError(f"dataset root not found: {root}")
    splits = resolve_splits(canon, split)
    options = dict(dataset_options or {})

    # List every split first: bad splits fail before anything is paid for.
    samples: list[Sample] = []
    for sp in splits:
        listed = list(load_dataset(canon, root, sp, **options))
        samples += listed[:limit] if limit is not None else listed
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise InputError("the dataset yields duplicate sample ids")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(
        out,
        {
            "dataset": canon,
            "root": str(Path(root).resolve()),
            "splits": splits,
            "options": options,
            "record_version": RECORD_VERSION,
        },
    )
    results_path = out / RESULTS_FILE
    done = read_results(results_path, repair=True)
    todo = [
        s for s in samples if s.sample_id not in done or (retry_errors and done[s.sample_id].get("error"))
    ]
    seg = segment_fn or default_segment_fn()
    n_new = _run_samples(
        todo,
        seg,
        settings,
        empty_rule,
        concurrency,
        results_path,
        progress,
        len(samples),
        len(samples) - len(todo),
    )

    records = read_results(results_path)
    wanted = [records[i] for i in ids if i in records]
    by_name, by_path = sum_usage(r.get("usage") for r in wanted)
    report = EvalReport(
        dataset=canon,
        splits=splits,
        method=method,
        empty_rule=empty_rule,
        columns=compute_columns(wanted, canon, splits, empty_rule),
        n_samples=len(wanted),
        n_errors=sum(1 for r in wanted if r.get("error")),
        n_new=n_new,
        usage_totals=by_name,
        usage_by_path=by_path,
        seconds=float(sum(float(r.get("seconds", 0.0)) for r in wanted)),
        results_path=str(results_path),
    )
    report.markdown = render_markdown(report)
    if write_summary:
        _atomic_write(out / SUMMARY_MD, report.markdown)
        _atomic_write(out / SUMMARY_JSON, report.model_dump_json(indent=2) + "\n")
    return report


def _run_samples(
    todo: list[Sample],
    segment_fn: SegmentFn,
    settings: Any,
    empty_rule: EmptyRule,
    concurrency: int,
    results_path: Path,
    progress: bool | ProgressCallback,
    total: int,
    already: int,
) -> int:
    """Segment ``todo`` with at most ``concurrency`` in flight; append each record as it completes."""
    writer = _ResultsWriter(results_path)
    bar, task, callback = None, None, None
    if progress is True:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        bar.start()
        task = bar.add_task("eval", total=total, completed=already)
    elif callable(progress):
        callback = progress
    count = already
    n_new = 0

    def record(rec: dict[str, Any]) -> None:
        nonlocal count, n_new
        writer.write(rec)
        count += 1
        n_new += 1
        if bar is not None:
            bar.update(task, completed=count)
        if callback is not None:
            callback(count, total, rec)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dtwin-eval")
    pending: set[Future] = set()
    queue = iter(todo)
    clean = False
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < concurrency:
                nxt = next(queue, None)
                if nxt is None:
                    exhausted = True
                    break
                pending.add(pool.submit(score_sample, nxt, segment_fn, settings, empty_rule))
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                pending.discard(fut)
                record(fut.result())  # a BaseException from the segment function stops the run
        clean = True
    except BaseException:
        # Start nothing new; record what already ran (it is paid for), then re-raise.
        # A second Ctrl-C while waiting abandons the samples still in flight.
        for fut in pending:
            fut.cancel()
        for fut in pending:
            if fut.cancelled():
                continue
            try:
                record(fut.result())
            except Exception:  # noqa: BLE001, S112 - already stopping; the first exception wins
                continue
        raise
    finally:
        pool.shutdown(wait=clean, cancel_futures=True)
        writer.close()
        if bar is not None:
            bar.stop()
    return n_new


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

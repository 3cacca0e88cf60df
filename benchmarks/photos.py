"""End to end on real photos: ``segment`` on every photo of ``../shared/images/queries.json``.

For each photo it runs :func:`dtwin_agent.segment` with the settings given (default: the offline
profile, SAM's 32 x 32 grid as the README's command, a fresh cache folder so every twin is built) and
prints one markdown row:

* ``IoU``: the answer mask against the ground-truth mask (``gt/*.png``, 255 = answer);
* ``oracle``: the twin's oracle IoU, the best union of twin masks against the ground truth
  (greedy: masks added in order of precision while the IoU grows; how much of the answer the twin
  can express at all, whatever the reasoner does);
* ``objects``: N' of the twin; ``tok/obj``: cl100k_base tokens of JSON(D) per object (tiktoken,
  else bpe-openai, the same tokenizer as ``benchmarks/perception.py``);
* ``chosen``, ``stop``: the chosen ids and the stop reason (``ok`` is False for a failed answer);
* seconds: the whole run, then per stage from ``result.usage`` (granularity, propose, semantics,
  refine) and per refinement step (``step1``, ``step2``: the refine node's seconds from the graph's
  progress events, parsing and any repair round-trip included, a local LLM server's start-up
  inside step 1 left out: it is the ``local_llm_start`` column);
* ``peak GB``: the peak resident memory of this process and its children (the local LLM server)
  together, sampled every 0.2 s.

Then gIoU (mean of the per-photo IoUs) and cIoU (total intersection over total union), as LISA
computes them (:mod:`dtwin_agent.evaluation.metrics`). The photos and queries are a development
set: nothing here or in the library special-cases them.

Usage::

    python benchmarks/photos.py [--only dog,truck] [--set perception.prompts=grid ...]
        [--cache-dir DIR] [--json out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _overrides import setting_overrides  # benchmarks/, the script's own folder
from _trace import reasoning_trace
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "images"
STAGES = ("local_llm_start", "granularity", "propose", "semantics", "refine")


def encoder() -> Any:
    """cl100k_base: tiktoken (needs its cached BPE file), else bpe-openai (vocabulary built in)."""
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001 - tiktoken downloads its BPE file on first use
        import bpe_openai

        return bpe_openai.get_encoding("cl100k_base")


class PeakRSS:
    """Samples the resident memory of this process and all its descendants; ``peak`` in bytes."""

    def __init__(self, every_s: float = 0.2):
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree_rss(root: int) -> int:
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(entry), int(fields[1])
            children.setdefault(ppid, []).append(pid)
            rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            total += rss.get(pid, 0)
            todo.extend(children.get(pid, []))
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self._tree_rss(os.getpid()))

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def oracle_iou(masks: list[np.ndarray], gt: np.ndarray) -> float:
    """The best union of ``masks`` against ``gt``, greedily: add masks by precision while IoU grows."""
    from dtwin_agent.evaluation.metrics import mask_iou

    if not masks or not gt.any():
        return 0.0
    order = sorted(masks, key=lambda m: -(np.logical_and(m, gt).sum() / max(1, m.sum())))
    best, union = 0.0, np.zeros_like(gt)
    for mask in order:
        candidate = union | mask
        iou = mask_iou(candidate, gt)
        if iou > best:
            best, union = iou, candidate
    return best


def run_one(entry: dict[str, Any], settings: Any, enc: Any) -> dict[str, Any]:
    """Segment one photo; returns the row."""
    from dtwin_agent import segment
    from dtwin_agent.evaluation.metrics import intersection_union, sample_iou

    image = SHARED / entry["image"]
    gt = np.array(Image.open(SHARED / entry["gt"]).convert("L")) > 127
    steps_s: list[float] = []  # each refinement step's seconds (the refine node's end events)
    started_in_refine = 0.0  # a local LLM server start inside step 1 (not reading the prompt)
    running: list[str] = []
    started = time.perf_counter()

    def progress(event: Any) -> None:
        nonlocal started_in_refine
        if event.kind == "start":
            running.append(event.stage)
        elif event.kind in ("end", "error"):
            if event.stage in running:
                running.remove(event.stage)
            if event.stage == "refine" and event.seconds is not None:
                steps_s.append(event.seconds - started_in_refine)
                started_in_refine = 0.0
            elif event.stage == "local_llm_start" and "refine" in running and event.seconds is not None:
                started_in_refine = event.seconds

    with PeakRSS() as rss:
        result = segment(image, entry["query"], settings=settings, on_progress=progress)
    total = time.perf_counter() - started
    inter, union = intersection_union(result.mask, gt)
    twin = result.twin
    n = len(twin.objects)
    tokens = len(enc.encode(twin.to_prompt_json())) if n else 0
    stages = (result.usage or {}).get("stages", {})
    return {
        "photo": Path(entry["image"]).stem,
        "iou": sample_iou(inter, union),
        "intersection": inter,
        "union": union,
        "oracle": oracle_iou([o.decode_mask() for o in twin.objects], gt),
        "objects": n,
        "tok_per_obj": tokens / n if n else 0.0,
        "chosen": list(result.ids),
        "stop": result.stop_reason,
        "ok": getattr(result, "ok", bool(result.ids)),
        "seconds": total,
        "stages": {s: float(stages.get(s, {}).get("seconds", 0.0)) for s in STAGES},
        "steps": steps_s,
        "peak_gb": rss.peak / 2**30,
        **reasoning_trace(result),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated photo stems")
    parser.add_argument("--set", action="append", default=[], help="setting override KEY=VALUE")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--json", default=None, help="append each row as JSON to this file")
    args = parser.parse_args()
    queries_file = SHARED / "queries.json"
    if not queries_file.is_file():
        print(f"no {queries_file}: nothing to measure")
        return
    from dtwin_agent.config import resolve_settings

    entries = json.loads(queries_file.read_text())
    if args.only:
        wanted = set(args.only.split(","))
        entries = [e for e in entries if Path(e["image"]).stem in wanted]
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="dtwin-photos-")
    overrides: dict[str, Any] = {"cache.dir": cache_dir}
    overrides.update(setting_overrides(args.set))
    settings = resolve_settings(overrides=overrides)
    enc = encoder()
    rows = []
    load = os.getloadavg()
    for entry in entries:
        row = run_one(entry, settings, enc)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    from dtwin_agent.evaluation.metrics import IoUAccumulator

    acc = IoUAccumulator()
    for row in rows:
        acc.add_counts(row["intersection"], row["union"])
    print()
    print(f"load average at start {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; overrides {overrides}")
    head = ["photo", "IoU", "oracle", "objects", "tok/obj", "chosen", "stop", "s total", *STAGES,
            "step1 s", "step2 s", "peak GB"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        steps = [*r["steps"], float("nan"), float("nan")]
        cells = [r["photo"], f"{r['iou']:.3f}", f"{r['oracle']:.3f}", str(r["objects"]),
                 f"{r['tok_per_obj']:.1f}", " ".join(map(str, r["chosen"])) or "-", r["stop"],
                 f"{r['seconds']:.0f}", *(f"{r['stages'][s]:.1f}" for s in STAGES),
                 f"{steps[0]:.1f}", f"{steps[1]:.1f}", f"{r['peak_gb']:.2f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    objs = sum(r["objects"] for r in rows)
    tok = sum(r["tok_per_obj"] * r["objects"] for r in rows)
    print()
    print(
        f"gIoU {acc.giou:.3f}  cIoU {acc.ciou:.3f}  mean oracle {np.mean([r['oracle'] for r in rows]):.3f}  "
        f"JSON(D) tokens per object {tok / max(1, objs):.1f} (over {objs} objects)  n={len(rows)}"
    )


if __name__ == "__main__":
    main()

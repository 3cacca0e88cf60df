"""JSON(D) size: cl100k_base tokens per object of the shared photos' twins, and how it grows with N'.

Reads built twins (``twin.json`` files written by ``dtwin twin --out DIR``, or every twin in a
cache database), and renders each one's JSON(D) again with *this checkout's* offline labeller
(S_i, from the photo and the masks) and spatial layer (T_i, relations, ordinal facts): the same
masks give the same objects, so running this script from two checkouts compares their formats
side by side (before/after). Prints per twin N', tokens per object (all, T_i, S_i), then a least
squares fit ``tokens = a * N' + b`` over all twins (linear in N' means ``b`` small against ``a * N'``).

With ``--query``, each re-rendered twin then goes through the reasoning graph with the configured
LLM (default: the offline profile's local llama.cpp server, started before the first timed step),
as ``dtwin segment`` reasons, and a second table gives each refinement step's seconds and tokens
(read from the prompt, served from the prompt cache, generated), so two checkouts compare the cost
of their JSON(D) and prompts on the same masks.

Usage::

    python benchmarks/jsond.py --twins out/twins/*.json
    python benchmarks/jsond.py --cache ~/.cache/dtwin/cache.sqlite [--query "what the dog is waiting for"]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _overrides import setting_overrides  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "images"


def load_twins(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Twin JSON values from files and cache databases."""
    out = [json.loads(Path(p).read_text()) for p in args.twins]
    for db in args.cache:
        rows = sqlite3.connect(db).execute("SELECT value FROM entries WHERE namespace='twin'").fetchall()
        out += [json.loads(value) for (value,) in rows]
    return out


def rerender(data: dict[str, Any], settings: Any) -> Any:
    """The twin of ``data`` with S_i and T_i made again by this checkout (same masks, same photo)."""
    from dtwin_agent import masks as mask_ops
    from dtwin_agent.images import downscale, load_image
    from dtwin_agent.offline import labeller
    from dtwin_agent.spatial import build_spatial
    from dtwin_agent.twin import RLE, DigitalTwin, ImageInfo, TwinObject

    source = Path(data["image"]["source"])
    image = load_image(source if source.is_file() else SHARED / source.name)
    rles = [RLE.model_validate(o["mask"]) for o in data["objects"]]
    ids = [o["id"] for o in data["objects"]]
    small, _ = downscale(image.rgb, settings.perception.max_image_side)
    masks = [mask_ops.resize_mask(mask_ops.decode(r), small.shape[:2]) for r in rles]
    semantics = labeller.describe_all(small, masks, settings=settings)
    geometry = build_spatial(rles, ids, image.width, image.height, settings)
    objects = [
        TwinObject(id=g.id, mask=r, bbox=g.bbox, area_pct=g.area_pct, centroid=g.centroid, semantic=s,
                   relations=g.relations, spatial=g.text)
        for g, r, s in zip(geometry, rles, semantics, strict=True)
    ]  # fmt: skip
    info = ImageInfo(width=image.width, height=image.height, sha256=image.sha256, source=image.source)
    name = getattr(labeller, "labeller_name", None)  # the labeller named once (checkouts that do so)
    components = {"semantics": name(settings.semantics.classifier)} if name else {}
    return DigitalTwin(image=info, objects=objects, components=components)


def reason(twin: Any, query: str, settings: Any) -> list[dict[str, Any]]:
    """The reasoning graph on ``twin``: per refinement step its seconds, tokens and kept ids."""
    from dtwin_agent.graph import build_graph
    from dtwin_agent.graph.context import Context

    graph = build_graph(perception=False).compile()
    context = Context(settings=settings, cache=None)
    rows: list[dict[str, Any]] = []
    last = time.perf_counter()
    for chunk in graph.stream({"query": query, "twin": twin}, stream_mode="updates", context=context):
        now = time.perf_counter()
        for node, update in chunk.items():
            if node != "refine" or not update or not update.get("steps"):
                continue
            stages = (update.get("usage") or {}).get("stages", {})
            refine = stages.get("refine", {})
            start = stages.get("local_llm_start", {}).get("seconds", 0.0)  # a server start is no step
            step = update["steps"][-1]
            rows.append({
                "step": step.step, "seconds": now - last - start, "in": refine.get("input_tokens", 0),
                "cached": refine.get("cached_input_tokens", 0), "out": refine.get("output_tokens", 0),
                "ids": list(step.ids), "stop": update.get("stop_reason", ""),
            })  # fmt: skip
        last = now
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--twins", nargs="*", default=[], help="twin.json files")
    parser.add_argument("--cache", nargs="*", default=[], help="cache.sqlite files (every twin in them)")
    parser.add_argument("--query", default="", help="also reason over each twin with this query")
    parser.add_argument("--set", action="append", default=[], help="setting override KEY=VALUE")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from photos import encoder

    from dtwin_agent.config import resolve_settings

    overrides: dict[str, Any] = {"cache.enabled": False}
    overrides.update(setting_overrides(args.set))
    settings = resolve_settings(overrides=overrides)
    enc = encoder()
    rows = []
    twins = []
    for data in load_twins(args):
        twin = rerender(data, settings)
        twins.append(twin)
        n = len(twin.objects)
        if not n:
            continue
        total = len(enc.encode(twin.to_prompt_json()))
        spatial = sum(len(enc.encode(o.spatial)) for o in twin.objects)
        semantic = sum(len(enc.encode(o.semantic)) for o in twin.objects)
        rows.append((Path(twin.image.source).stem, n, total, spatial, semantic))
    print("| twin | N' | JSON(D) tokens | tokens/object | T_i tokens/object | S_i tokens/object |")
    print("|---|---|---|---|---|---|")
    for name, n, total, spatial, semantic in rows:
        print(f"| {name} | {n} | {total} | {total / n:.1f} | {spatial / n:.1f} | {semantic / n:.1f} |")
    ns = np.array([r[1] for r in rows], dtype=float)
    totals = np.array([r[2] for r in rows], dtype=float)
    a, b = np.polyfit(ns, totals, 1) if len(rows) > 1 else (totals[0] / ns[0], 0.0)
    print(
        f"\nmean {totals.sum() / ns.sum():.1f} tokens per object over {int(ns.sum())} objects of {len(rows)} "
        f"twins; fit tokens = {a:.1f} * N' + {b:.0f}"
    )
    if args.query:
        reasoning_table(twins, args.query, settings)


def reasoning_table(twins: list[Any], query: str, settings: Any) -> None:
    """Per twin and refinement step: seconds, tokens read / cached / generated, kept ids."""
    from dtwin_agent.llm.models import chat_model

    chat_model("llm", settings).invoke("Answer with the word OK.")  # a local server starts here, untimed
    load = os.getloadavg()
    print(f"\nreasoning on {query!r}; load average at start {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| twin | step | seconds | prompt tokens | of them cached | evaluated | generated | kept | stop |")
    print("|---|---|---|---|---|---|---|---|---|")
    for twin in twins:
        for r in reason(twin, query, settings):
            cells = [Path(twin.image.source).stem, str(r["step"]), f"{r['seconds']:.1f}", str(r["in"]),
                     str(r["cached"]), str(r["in"] - r["cached"]), str(r["out"]),
                     " ".join(map(str, r["ids"])) or "-", r["stop"] or "-"]  # fmt: skip
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

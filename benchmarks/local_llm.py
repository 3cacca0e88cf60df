"""The offline reasoner, measured: exact answers on synthetic twins by query kind, and llama.cpp speed.

Reasoner benchmark (default). ``--n`` synthetic scenes (default 48, 8 per kind) of flat shapes, each
given ImageNet-style classifier labels, become digital twins the way the pipeline builds them: the
product's offline labeller words (:func:`dtwin_agent.offline.labeller.describe`), spatial layer and
T_i (:func:`dtwin_agent.spatial.build_spatial`), ids by decreasing area. Each twin has one query with
an exact answer, of six kinds:

- ``referring``: "the coffee mug", "the blue umbrella";
- ``spatial``: two of a kind, "the cup on the left" / "at the bottom", or "the cup above the laptop";
- ``superlative``: "the largest bottle", "the smallest clock", "the biggest object";
- ``group``: "all the bananas", "every round object";
- ``empty``: nothing fits, "the purple object", "the giraffe";
- ``implicit``: world knowledge, "what tells the time", "the shape with the colour of a banana".

The reasoning graph runs on each twin exactly as ``dtwin segment`` runs it (refinement steps until
they converge, the configured model, prompts and settings). "exact" = the final ids equal the
expected set; "valid" = the run gave an answer (``result.ok``: no unusable first answer). Tokens
are the model's usage: ``in`` read from the prompt, ``cached`` of those served from llama.cpp's
prompt cache, ``out`` generated.

Speed benchmark (``--speed``): llama.cpp servers with different thread settings answer the same
requests in turn (side by side, so a changing load hits them alike): decode tokens/s of 64 tokens of
prose, and prompt tokens/s of an uncached ~700-token prompt; the load average is printed.

Usage::

    python benchmarks/local_llm.py [--n 48] [--kinds referring,empty] [--set reasoning.samples=3]
        [--model offline] [--dump answers.jsonl [--resume]]
    python benchmarks/local_llm.py --speed [--rounds 4] [--configs 2/1,2/2]

Needs: ``dtwin models fetch --offline-profile`` (the local LLM) and ``xllamacpp``. Nothing here
special-cases a query: scenes and queries are generated from the catalogue below.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import statistics
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _overrides import setting_overrides  # benchmarks/, the script's own folder
from _trace import reasoning_trace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = ("referring", "spatial", "superlative", "group", "empty", "implicit")
W, H = 640, 480
BACKGROUND = (235, 235, 225)
RGB = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 210),
    "yellow": (240, 220, 40),
    "orange": (250, 140, 20),
    "purple": (120, 40, 170),
    "brown": (120, 70, 30),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
    "grey": (140, 140, 140),
}


@dataclass(frozen=True)
class Item:
    """A catalogue entry: classifier labels (top first), colour, drawn shape, names, an implicit query."""

    labels: tuple[tuple[str, float], ...]
    colour: str
    shape: str  # circle | rect
    name: str
    plural: str
    implicit: str


CATALOGUE = [
    Item((("coffee mug", 0.62), ("cup", 0.21)), "white", "circle", "coffee mug", "coffee mugs",
         "something I could drink hot coffee from"),
    Item((("golden retriever", 0.71), ("Labrador retriever", 0.12)), "brown", "rect", "dog", "dogs",
         "the animal that could fetch a ball"),
    Item((("pickup truck", 0.55), ("tow truck", 0.10)), "red", "rect", "pickup truck", "pickup trucks",
         "the vehicle that can carry cargo in an open bed"),
    Item((("banana", 0.80), ("lemon", 0.05)), "yellow", "rect", "banana", "bananas",
         "the fruit a monkey would like"),
    Item((("laptop", 0.66), ("notebook computer", 0.20)), "grey", "rect", "laptop", "laptops",
         "the device someone would type an email on"),
    Item((("umbrella", 0.58), ("parachute", 0.07)), "blue", "circle", "umbrella", "umbrellas",
         "what keeps you dry when it rains"),
    Item((("teddy bear", 0.74), ("toy poodle", 0.03)), "brown", "circle", "teddy bear", "teddy bears",
         "the toy a child would hug at night"),
    Item((("wall clock", 0.69), ("analog clock", 0.22)), "white", "circle", "clock", "clocks",
         "what tells the time"),
    Item((("running shoe", 0.61), ("sandal", 0.09)), "black", "rect", "shoe", "shoes",
         "what you wear on your foot to go jogging"),
    Item((("pizza", 0.83), ("potpie", 0.04)), "orange", "circle", "pizza", "pizzas",
         "the food that was baked with cheese on top"),
    Item((("mountain bike", 0.57), ("bicycle-built-for-two", 0.25)), "green", "rect", "bike", "bikes",
         "what you pedal to ride"),
    Item((("table lamp", 0.48), ("lampshade", 0.30)), "yellow", "circle", "lamp", "lamps",
         "the thing that lights the desk"),
    Item((("water bottle", 0.64), ("pop bottle", 0.12)), "blue", "rect", "bottle", "bottles",
         "the container for drinking water on a hike"),
    Item((("broccoli", 0.77), ("cauliflower", 0.09)), "green", "circle", "broccoli", "broccoli heads",
         "the vegetable on the plate"),
    Item((("acoustic guitar", 0.70), ("banjo", 0.08)), "brown", "rect", "guitar", "guitars",
         "the instrument with six strings"),
    Item((("tabby cat", 0.52), ("Egyptian cat", 0.21)), "grey", "circle", "cat", "cats", "the pet that purrs"),
    Item((("backpack", 0.60), ("mailbag", 0.12)), "black", "rect", "backpack", "backpacks",
         "what a student carries books in"),
    Item((("pot", 0.45), ("vase", 0.20)), "green", "rect", "flowerpot", "flowerpots", "what needs watering"),
    Item((("remote control", 0.58), ("cellular telephone", 0.10)), "black", "rect", "remote control",
         "remote controls", "what changes the TV channel"),
    Item((("traffic light", 0.81), ("street sign", 0.05)), "red", "rect", "traffic light", "traffic lights",
         "what tells cars to stop"),
    Item((("sunglasses", 0.66), ("loupe", 0.05)), "black", "circle", "sunglasses", "pairs of sunglasses",
         "what protects the eyes from the sun"),
    Item((("studio couch", 0.63), ("sofa", 0.20)), "blue", "rect", "sofa", "sofas",
         "where you would sit to watch TV"),
]  # fmt: skip
COLOUR_OF = {"yellow": "a banana", "blue": "the sky on a clear day", "green": "grass", "orange": "an orange",
             "white": "snow", "black": "coal", "red": "a ripe tomato"}  # fmt: skip
ABSENT = ["giraffe", "piano", "toaster", "helicopter", "snowman", "violin"]


@dataclass
class Placed:
    item: Item
    cx: float
    cy: float
    size: float  # radius (circle) or half side (rect)
    colour: str = ""


@dataclass
class Case:
    kind: str
    query: str
    objects: list[Placed]
    expected: set[int]  # indices into objects (before renumbering)


# ------------------------------------------------------------------------------------------- scenes


def _cells(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """``n`` well separated centres on a jittered 4 x 3 grid."""
    grid = [(80 + 160 * c, 80 + 160 * r) for r in range(3) for c in range(4)]
    rng.shuffle(grid)
    return [(x + rng.uniform(-15, 15), y + rng.uniform(-15, 15)) for x, y in grid[:n]]


def _distractors(
    rng: random.Random, avoid: set[str], k: int, avoid_colours: set[str] = frozenset()
) -> list[Item]:
    pool = [i for i in CATALOGUE if i.name not in avoid and i.colour not in avoid_colours]
    return rng.sample(pool, k)


def _place(rng: random.Random, items: list[Item], sizes: list[float] | None = None) -> list[Placed]:
    cells = _cells(rng, len(items))
    return [
        Placed(item, x, y, sizes[k] if sizes else rng.uniform(24, 44), item.colour)
        for k, (item, (x, y)) in enumerate(zip(items, cells, strict=True))
    ]


def _case(kind: str, index: int, rng: random.Random) -> Case:
    n_other = rng.randint(3, 5)
    target = rng.choice(CATALOGUE)
    variant = index % 4
    if kind == "referring":
        others = _distractors(rng, {target.name}, n_other, {target.colour} if variant % 2 else set())
        objects = _place(rng, [target, *others])
        query = f"the {target.colour} {target.name}" if variant % 2 else f"the {target.name}"
        return Case(kind, query, objects, {0})
    if kind == "spatial":
        others = _distractors(rng, {target.name}, n_other - 1)
        if variant < 2:  # two of a kind at opposite sides
            horizontal = variant == 0
            a = Placed(target, 90 if horizontal else 320, 240 if horizontal else 70, 34, target.colour)
            b = Placed(target, 550 if horizontal else 320, 240 if horizontal else 410, 34, target.colour)
            rest = [Placed(o, x, y, rng.uniform(24, 34), o.colour) for o, (x, y) in
                    zip(others, [(210, 90), (430, 90), (210, 390), (430, 390)], strict=False)]  # fmt: skip
            side = rng.choice(["first", "second"])
            words = ("on the left", "on the right") if horizontal else ("at the top", "at the bottom")
            query = f"the {target.name} {words[0] if side == 'first' else words[1]}"
            return Case(kind, query, [a, b, *rest], {0 if side == "first" else 1})
        anchor = rng.choice([o for o in CATALOGUE if o.name != target.name and o not in others])
        relation = rng.choice(["above", "below", "to the left of", "to the right of"])
        dx, dy = {"above": (0, -110), "below": (0, 110), "to the left of": (-130, 0),
                  "to the right of": (130, 0)}[relation]  # fmt: skip
        anchor_xy = (320, 240)
        near = Placed(target, anchor_xy[0] + dx, anchor_xy[1] + dy, 30, target.colour)
        far_xy = {"above": (560, 420), "below": (80, 60), "to the left of": (560, 60),
                  "to the right of": (80, 420)}[relation]  # fmt: skip
        far = Placed(target, *far_xy, 30, target.colour)
        rest_xy = [(80, 240), (560, 240), (320, 420), (320, 60)]
        rest = [Placed(o, x, y, 24, o.colour) for o, (x, y) in zip(others, rest_xy, strict=False)
                if abs(x - near.cx) + abs(y - near.cy) > 100]  # fmt: skip
        objects = [near, far, Placed(anchor, *anchor_xy, 40, anchor.colour), *rest]
        return Case(kind, f"the {target.name} {relation} the {anchor.name}", objects, {0})
    if kind == "superlative":
        if variant == 3:  # the biggest object overall
            items = [target, *_distractors(rng, {target.name}, n_other)]
            sizes = [52] + [rng.uniform(22, 38) for _ in items[1:]]
            return Case(kind, rng.choice(["the biggest object", "the largest thing in the picture"]),
                        _place(rng, items, sizes), {0})  # fmt: skip
        count = rng.choice([2, 3])
        others = _distractors(rng, {target.name}, n_other - 1)
        sizes = [52, 36, 20][:count] + [rng.uniform(22, 44) for _ in others]
        objects = _place(rng, [target] * count + others, sizes)
        largest = variant % 2 == 0
        query = f"the {'largest' if largest else 'smallest'} {target.name}"
        return Case(kind, query, objects, {0 if largest else count - 1})
    if kind == "group":
        if variant == 3:  # every round object: circles vs rectangles
            circles = rng.sample([i for i in CATALOGUE if i.shape == "circle"], 2)
            rects = rng.sample([i for i in CATALOGUE if i.shape == "rect"], n_other)
            objects = _place(rng, [*circles, *rects])
            return Case(kind, rng.choice(["every round object", "all the round things"]), objects, {0, 1})
        count = rng.choice([2, 3])
        others = _distractors(rng, {target.name}, n_other - 1)
        objects = _place(rng, [target] * count + others)
        query = rng.choice([f"all the {target.plural}", f"every {target.name}"])
        return Case(kind, query, objects, set(range(count)))
    if kind == "empty":
        items = _distractors(rng, set(), n_other + 1, {"purple"} if variant % 2 == 0 else set())
        if variant % 2 == 0:
            query = rng.choice(["the purple object", "the purple thing"])
        else:
            query = f"the {rng.choice(ABSENT)}"
        return Case(kind, query, _place(rng, items), set())
    if variant % 2 == 0:  # implicit by world knowledge
        others = _distractors(rng, {target.name}, n_other)
        return Case(kind, target.implicit, _place(rng, [target, *others]), {0})
    colour = rng.choice(sorted(COLOUR_OF))  # implicit by colour: a shape of that colour, the only one
    pool = [i for i in CATALOGUE if i.colour != colour]
    shape = Placed(rng.choice(pool), 0, 0, 0)
    others = rng.sample([i for i in pool if i.name != shape.item.name], n_other)
    objects = _place(rng, [shape.item, *others])
    objects[0].colour = colour
    return Case(kind, f"the shape with the colour of {COLOUR_OF[colour]}", objects, {0})


def make_cases(n: int, kinds: tuple[str, ...] = KINDS, seed: int = 0) -> list[Case]:
    """``n`` cases, the kinds in turn, each from its own seeded generator."""
    out = []
    for index in range(n):
        kind = kinds[index % len(kinds)]
        out.append(_case(kind, index // len(kinds), random.Random(f"{seed}-{index}")))
    return out


def _draw(canvas: np.ndarray, obj: Placed) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    if obj.item.shape == "circle":
        mask = (xx - obj.cx) ** 2 + (yy - obj.cy) ** 2 <= obj.size**2
    else:
        mask = (np.abs(xx - obj.cx) <= obj.size * 1.3) & (np.abs(yy - obj.cy) <= obj.size * 0.8)
    canvas[mask] = RGB[obj.colour or obj.item.colour]
    return mask


@dataclass
class Label:
    name: str
    score: float


def build_twin(case: Case) -> tuple[Any, set[int]]:
    """The case's twin (product labeller words, spatial layer and T_i) and the expected ids."""
    from dtwin_agent import masks as mask_ops
    from dtwin_agent.offline import labeller
    from dtwin_agent.spatial import build_spatial
    from dtwin_agent.twin import DigitalTwin, ImageInfo, TwinObject

    rgb = np.full((H, W, 3), BACKGROUND, np.uint8)
    masks = [_draw(rgb, obj) for obj in case.objects]
    order = sorted(range(len(masks)), key=lambda k: -int(masks[k].sum()))  # ids by decreasing area
    ids = {k: rank + 1 for rank, k in enumerate(order)}
    masks_by_id = [masks[k] for k in order]
    geometry = build_spatial(masks_by_id, None, W, H)
    params = inspect.signature(labeller.describe).parameters
    extra = {"classifier": "efficientnet_lite0"} if "classifier" in params else {}
    objects = []
    for geo, k in zip(geometry, order, strict=True):
        labels = [Label(name, score) for name, score in case.objects[k].item.labels]
        semantic = labeller.describe(rgb, masks[k], labels, **extra)
        objects.append(
            TwinObject(id=geo.id, mask=mask_ops.encode(masks[k]), bbox=geo.bbox, area_pct=geo.area_pct,
                       centroid=geo.centroid, semantic=semantic, relations=geo.relations, spatial=geo.text)
        )  # fmt: skip
    name = getattr(labeller, "labeller_name", None)
    components = {"semantics": name("efficientnet_lite0")} if name else {}
    twin = DigitalTwin(
        image=ImageInfo(width=W, height=H, sha256="0" * 64, source="synthetic"), objects=objects,
        components=components,
    )  # fmt: skip
    return twin, {ids[k] for k in case.expected}


# ------------------------------------------------------------------------------------------ running


def run_case(case: Case, settings: Any) -> dict[str, Any]:
    """One case through the reasoning graph (as ``dtwin segment`` reasons); the row."""
    from dtwin_agent.api import SegmentationResult
    from dtwin_agent.graph import build_graph
    from dtwin_agent.graph.context import Context

    twin, expected = build_twin(case)
    started = time.perf_counter()
    out = (
        build_graph(perception=False)
        .compile()
        .invoke({"query": case.query, "twin": twin}, context=Context(settings=settings, cache=None))
    )
    seconds = time.perf_counter() - started
    result = SegmentationResult.from_state({**out, "twin": twin})
    refine = (result.usage.get("stages") or {}).get("refine", {})
    ok = getattr(result, "ok", result.stop_reason not in ("unparseable", "failed"))
    return {
        "kind": case.kind, "query": case.query, "n_objects": len(twin.objects), "expected": sorted(expected),
        "got": sorted(result.ids), "exact": ok and set(result.ids) == expected, "valid": ok,
        "steps": len(result.steps) - 1, "stop": result.stop_reason, "seconds": seconds,
        "in": refine.get("input_tokens", 0), "cached": refine.get("cached_input_tokens", 0),
        "out": refine.get("output_tokens", 0), "calls": refine.get("calls", 0),
        "reasoning": [o.reasoning for o in result.chosen],
        **reasoning_trace(result),
    }  # fmt: skip


def table(rows: list[dict[str, Any]], title: str) -> None:
    """The markdown table by query kind (and all)."""
    print(f"\n{title}")
    head = ("kind", "n", "exact", "valid", "s/query (median)", "calls/query", "in tok/query", "cached tok/query",
            "out tok/query")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    groups = defaultdict(list)
    for row in rows:
        groups[row["kind"]].append(row)
    for kind in [*(k for k in KINDS if k in groups), "all"]:
        rs = rows if kind == "all" else groups[kind]
        n = len(rs)
        exact, valid = sum(r["exact"] for r in rs), sum(r["valid"] for r in rs)
        cells = [kind, str(n), f"{exact}/{n} ({100 * exact / n:.0f}%)", f"{valid}/{n}",
                 f"{statistics.median(r['seconds'] for r in rs):.1f}", f"{np.mean([r['calls'] for r in rs]):.1f}",
                 f"{np.mean([r['in'] for r in rs]):.0f}", f"{np.mean([r['cached'] for r in rs]):.0f}",
                 f"{np.mean([r['out'] for r in rs]):.0f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def _dumped(path: str | None, overrides: dict[str, Any]) -> dict[tuple[int, str, str], dict[str, Any]]:
    """Rows of an earlier run in ``path`` (``--dump``), same overrides, by (case index, kind, query)."""
    if not path or not Path(path).is_file():
        return {}
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return {
        (r["case"], r["kind"], r["query"]): r for r in rows if r.get("overrides") == overrides and "case" in r
    }


def reasoner_benchmark(args: argparse.Namespace) -> None:
    from dtwin_agent.config import resolve_settings

    overrides: dict[str, Any] = {"models.llm": args.model, "cache.enabled": False}
    overrides.update(setting_overrides(args.set))
    settings = resolve_settings(overrides=overrides)
    kinds = tuple(args.kinds.split(",")) if args.kinds else KINDS
    cases = make_cases(args.n, kinds, args.seed)
    load = os.getloadavg()
    done = _dumped(args.dump, overrides) if args.resume else {}
    rows = []
    for index, case in enumerate(cases):
        # a query can come back on another scene: the index tells the two cases apart
        key = (index, case.kind, case.query)
        if key in done:  # measured before with the same settings (--resume)
            rows.append(done[key])
            continue
        row = {"case": index, **run_case(case, settings)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.dump:
            with open(args.dump, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({**row, "overrides": overrides}) + "\n")
    table(rows, f"reasoner on {len(rows)} synthetic twins; overrides {overrides}; load average at start "
                f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip


# -------------------------------------------------------------------------------------------- speed


def _request(server: Any, messages: list[dict[str, str]], max_tokens: int, cache: bool) -> dict[str, Any]:
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "cache_prompt": cache}
    request = urllib.request.Request(server.openai_base_url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=1800) as response:  # noqa: S310 - loopback
        return json.loads(response.read())["timings"]


def speed_benchmark(args: argparse.Namespace) -> None:
    """Decode and prompt tokens/s of servers with different thread settings, requests interleaved."""
    from dtwin_agent.offline import local_llm
    from dtwin_agent.weights import store

    path = store.resolve_model(local_llm.DEFAULT_MODEL)
    configs = [tuple(int(x) for x in c.split("/")) for c in args.configs.split(",")]
    servers = {c: local_llm.start_server(path, n_ctx=4096, threads=c[0], gen_threads=c[1]) for c in configs}
    twin, _ = build_twin(make_cases(1)[0])
    prompt = json.dumps(json.loads(twin.to_prompt_json()))
    speeds: dict[tuple[int, int], dict[str, list[float]]] = {c: {"decode": [], "prompt": []} for c in configs}
    load = os.getloadavg()
    try:
        for r in range(args.rounds):
            for c, server in servers.items():
                story = [
                    {"role": "user", "content": f"Round {r}. Write a short story about a cat and a boat."}
                ]
                speeds[c]["decode"].append(_request(server, story, 64, True)["predicted_per_second"])
                fresh = [{"role": "user", "content": f"Session {r}-{c}. Describe these objects: {prompt}"}]
                speeds[c]["prompt"].append(_request(server, fresh, 1, False)["prompt_per_second"])
                print(
                    json.dumps({"config": c, "round": r, **{k: v[-1] for k, v in speeds[c].items()}}),
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    end = os.getloadavg()
    print(f"\nllama.cpp threads, requests interleaved, {args.rounds} rounds; load average {load[0]:.1f} at start, "
          f"{end[0]:.1f} at end; {os.cpu_count()} CPUs")  # fmt: skip
    print("| prompt threads | generation threads | decode tok/s (median, min) | prompt tok/s (median) |")
    print("|---|---|---|---|")
    for c in configs:
        d, p = speeds[c]["decode"], speeds[c]["prompt"]
        print(f"| {c[0]} | {c[1]} | {statistics.median(d):.1f} ({min(d):.1f}) | {statistics.median(p):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="synthetic twins (the kinds in turn)")
    parser.add_argument("--kinds", default="", help="comma-separated subset of " + ",".join(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="offline", help="models.llm (default: the offline profile's LLM)")
    parser.add_argument("--set", action="append", default=[], help="setting override KEY=VALUE")
    parser.add_argument("--dump", default=None, help="append every row to this JSONL file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --dump: cases already in it (same settings) are not run again",
    )
    parser.add_argument("--speed", action="store_true", help="llama.cpp thread settings instead")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--configs", default="2/1,2/2", help="PROMPT_THREADS/GEN_THREADS,...")
    args = parser.parse_args()
    if args.speed:
        speed_benchmark(args)
    else:
        reasoner_benchmark(args)


if __name__ == "__main__":
    main()

"""Twin quality: can the twin express the answer at all? (paper 3.1; issue 10)

Run from the repository root::

    python benchmarks/twin_quality.py [--proposers offline,mobile_sam] [--levels part,object,group,sam_only]
        [--points-per-side 32] [--photos N | --photos dog.jpg,truck.jpg] [--scenes N] [--quick]
        [--set perception.KEY=VALUE ...]

An object missing from the twin cannot be chosen by any reasoner, so this measures the twin alone,
for each proposer and level:

* **synthetic scenes** (``tests/helpers/synthetic.py``, exact masks of every object): the recall of
  ground-truth objects, i.e. the fraction with a twin mask at IoU >= 0.5 and at IoU >= 0.85, the
  objects per twin and the proposer's seconds per image;
* **the shared photos** (``../shared/images/queries.json``, one query and its ground-truth mask per
  photo; skipped when absent): the *oracle IoU*, the IoU of the best greedy union of twin masks with
  the ground truth (start empty, add the mask that raises the IoU most, stop when none does), the
  objects per twin and the seconds. A last line gives the mean oracle IoU *at the query's level*:
  ``group`` where the photo's ``target`` says "(group)", else ``object`` (and ``hierarchy`` for the
  hierarchical twin, which holds both).

Levels: ``part`` / ``object`` / ``group`` (and ``hierarchy``) are ``perception.granularity`` values
given to the proposer; ``sam_only`` is SAM's everything mode without the granularity policy
(``perception.policy = "sam_only"``, SAM proposers only). The twin is what the pipeline keeps
(``proposals_to_records``: masks under ``perception.min_area_pct`` dropped, at most
``perception.max_objects``). Everything is measured on the proposer's working copy (longer side
``perception.max_image_side``; ground truth resized to it, nearest neighbour). Seconds are the
proposer's ``propose`` call only, on a shared CPU: compare rows of one run, and note the load.

``mobile_sam`` is the SAM proposer with MobileSAM (``vit_t``) weights from the model store (the row
is skipped with a note when they are not fetched); SAM ViT-H rows need ``--sam-checkpoint``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _overrides import setting_overrides  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers.synthetic import make_composite_scene, make_scene  # noqa: E402

from dtwin_agent import masks as mask_ops  # noqa: E402
from dtwin_agent.config import Settings  # noqa: E402
from dtwin_agent.graph.nodes.propose import proposals_to_records  # noqa: E402
from dtwin_agent.images import downscale, load_image  # noqa: E402

SHARED_IMAGES = ROOT.parent / "shared" / "images"

sys.path.insert(0, str(ROOT / "benchmarks"))
from perception import _encoder  # noqa: E402  (cl100k_base, as the perception benchmark counts)

# (objects, placement, noise, (width, height), seed): flat scenes with exact visible masks
SCENES = [
    (4, "separate", 0.0, (640, 480), 0),
    (8, "touching", 8.0, (640, 480), 0),
    (12, "touching", 8.0, (1024, 768), 0),
    (6, "any", 0.0, (640, 480), 1),
    (8, "separate", 8.0, (800, 600), 2),
    (10, "touching", 0.0, (640, 480), 3),
]


@dataclass
class Case:
    """One image with its ground truth at the working size."""

    name: str
    image: np.ndarray  # H x W x 3 uint8, working size
    truth: list[np.ndarray]  # boolean H x W masks (synthetic objects, for recall)
    targets: list[tuple[str, str, np.ndarray]] = field(default_factory=list)  # (query, level, mask)


@dataclass
class Row:
    """Results of one proposer x level over a set of cases."""

    proposer: str
    level: str
    scores: list[float] = field(default_factory=list)  # per case: recall hits or oracle IoU
    objects: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)
    prompts: list[int] = field(default_factory=list)

    def prompts_cell(self) -> str:
        return f"{np.mean(self.prompts):.0f}" if self.prompts else "-"


def oracle_iou(truth: np.ndarray, masks: list[np.ndarray]) -> float:
    """IoU of the best greedy union of ``masks`` with ``truth`` (all boolean, one shape).

    Greedy: start from the empty union; at each step add the mask that raises the IoU most; stop
    when no mask raises it. Only masks that touch the ground truth can raise it.
    """
    gt = truth.ravel()
    gt_area = int(gt.sum())
    if gt_area == 0:
        return 0.0
    candidates = [m.ravel() for m in masks if (m.ravel() & gt).any()]
    if not candidates:
        return 0.0
    stack = np.stack(candidates)  # K x P
    union = np.zeros_like(gt)
    inter, outside = 0, 0  # |U & G|, |U \ G|
    best = 0.0
    alive = np.ones(len(stack), bool)
    while alive.any():
        new = stack & ~union
        gain_in = (new & gt).sum(1)
        gain_out = new.sum(1) - gain_in
        ious = (inter + gain_in) / (gt_area + outside + gain_out)
        ious[~alive] = -1.0
        k = int(np.argmax(ious))
        if ious[k] <= best:
            break
        best = float(ious[k])
        inter, outside = inter + int(gain_in[k]), outside + int(gain_out[k])
        union |= stack[k]
        alive[k] = False
    return best


def best_ious(truth: list[np.ndarray], masks: list[np.ndarray]) -> list[float]:
    """For each ground-truth mask, the IoU of the best single twin mask (pycocotools)."""
    if not masks:
        return [0.0] * len(truth)
    ious = mask_ops.iou_matrix([mask_ops.encode(t) for t in truth], [mask_ops.encode(m) for m in masks])
    return ious.max(axis=1).tolist()


def synthetic_cases(count: int) -> list[Case]:
    cases = []
    for n, placement, noise, (width, height), seed in SCENES[:count]:
        scene = make_scene(
            n, placement=placement, noise=noise, antialias=True, width=width, height=height, seed=seed
        )
        name = f"{n} {placement}{' noisy' if noise else ''} {width}x{height}"
        cases.append(Case(name, scene.image, scene.masks))
    return cases


def photo_cases(selection: str | None, max_side: int, folder: Path = SHARED_IMAGES) -> list[Case]:
    listing = folder / "queries.json"
    if not listing.is_file():
        print(f"(photos skipped: {listing} not found)")
        return []
    entries = json.loads(listing.read_text())
    if selection:
        if selection.isdigit():
            entries = entries[: int(selection)]
        else:
            wanted = {s.strip() for s in selection.split(",")}
            entries = [e for e in entries if e["image"] in wanted or Path(e["image"]).stem in wanted]
    cases = []
    for entry in entries:
        image = load_image(folder / entry["image"])
        small, _ = downscale(image.rgb, max_side)
        gt = np.asarray(load_image(folder / entry["gt"]).rgb[..., 0] > 127)
        gt = mask_ops.resize_mask(gt, small.shape[:2])
        level = "group" if "(group)" in entry.get("target", "") else "object"
        cases.append(
            Case(Path(entry["image"]).stem, np.ascontiguousarray(small), [], [(entry["query"], level, gt)])
        )
    return cases


def composite_cases(count: int) -> list[Case]:
    """Scenes of toy vehicles (body, window, wheels) with part / object / group queries."""
    cases = []
    for seed in range(count):
        scene = make_composite_scene(3, seed=seed, noise=6.0 if seed % 2 else 0.0)
        cases.append(Case(f"vehicles {seed}", scene.image, [], list(scene.queries)))
    return cases


class Proposers:
    """Builds proposers by (name, level), sharing one loaded SAM model per checkpoint."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.models: dict[str, object] = {}
        self.everything: dict = {}

    def settings(self, name: str, level: str) -> Settings | None:
        overrides: dict[str, object] = {
            "perception.max_image_side": self.args.max_side,
            "perception.device": "cpu",
        }
        if name == "offline":
            if level == "sam_only":
                return None
            overrides["perception.proposer"] = "offline"
        else:
            checkpoint, model_type = (
                ("mobile_sam", "vit_t") if name == "mobile_sam" else (self.args.sam_checkpoint, name)
            )
            overrides |= {
                "perception.proposer": "sam",
                "perception.sam_checkpoint": checkpoint,
                "perception.sam_model_type": model_type,
                "perception.policy": "sam_only" if level == "sam_only" else "granularity",
            }
            if self.args.points_per_side:
                overrides["perception.points_per_side"] = self.args.points_per_side
        overrides.update(setting_overrides(self.args.set, section="perception"))
        return Settings().merged(overrides)

    def get(self, name: str, level: str):
        from dtwin_agent.perception import get_proposer, resolve_settings_for_proposer

        settings = self.settings(name, level)
        if settings is None:
            return None
        if name == "offline":
            return get_proposer(settings)
        from dtwin_agent.perception.sam import SamProposer

        settings = resolve_settings_for_proposer(settings)
        key = str(settings.perception.sam_checkpoint)
        if key not in self.models:
            self.models[key] = get_proposer(settings).model
        proposer = SamProposer(settings, model=self.models[key])
        if self.args.share_everything:
            share_everything_mode(proposer, self.everything)
        return proposer


CHARGED = [0.0]  # seconds of shared everything-mode runs, charged to the rows that reuse them


def share_everything_mode(proposer, store: dict) -> None:
    """Run everything mode once per image and grid for every level of one SAM proposer.

    ``sam_only``, ``part``, ``object`` (and ``hierarchy``) all start from the same
    ``SamAutomaticMaskGenerator`` output on the same image embedding; with ``--share-everything``
    it is computed once, kept with the embedding, and its seconds are charged to every row that
    reuses it (so the rows still show what one run of that level costs).
    """
    generator = proposer.generator
    compute = generator.generate
    p = proposer.settings.perception
    config = (p.points_per_side, str(getattr(p, "prompts", "grid")), str(getattr(p, "decoder", "exact")))

    def generate(image):
        key = (image.tobytes().__hash__(), image.shape, config)
        if key not in store:
            started = time.perf_counter()
            records = compute(image)
            store[key] = (records, generator.predictor.kept, time.perf_counter() - started)
        else:
            records, kept, seconds = store[key]
            generator.predictor.kept = kept
            generator.predictor.restore()  # the point decoder's copy of the embedding too
            CHARGED[0] += seconds
        return store[key][0]

    generator.generate = generate


def run(proposer, level: str, case: Case, settings: Settings) -> tuple[list, float, int | None]:
    """The twin's records (``ProposedMask``), the proposer's seconds and (SAM) its decoder prompts."""
    granularity = "object" if level == "sam_only" else level
    progress: list[tuple[int, int]] = []
    kwargs = {}
    if "on_progress" in inspect.signature(proposer.propose).parameters:
        kwargs["on_progress"] = lambda done, total: progress.append((done, total))
    started, charged = time.perf_counter(), CHARGED[0]
    proposals = proposer.propose(case.image, granularity, **kwargs)
    seconds = time.perf_counter() - started + (CHARGED[0] - charged)
    prompts = progress[-1][1] if progress and getattr(proposer, "name", "").startswith("sam") else None
    records = proposals_to_records(
        proposals,
        case.image.shape[:2],
        min_area_pct=settings.perception.min_area_pct,
        max_objects=settings.perception.max_objects,
    )
    return records, seconds, prompts


def prompt_tokens(records: list, shape: tuple[int, int], settings: Settings, encoder) -> int:
    """Tokens (cl100k_base) of the twin's JSON(D) with its T_i and empty S_i (what the twin adds)."""
    from dtwin_agent.spatial import build_spatial
    from dtwin_agent.twin import PromptObject, PromptTwin

    if not records:
        return 0
    geometry = build_spatial(
        [r.mask for r in records],
        [r.id for r in records],
        shape[1],
        shape[0],
        settings,
        [r.parent for r in records],
    )
    text = PromptTwin({g.id: PromptObject(spatial=g.text) for g in geometry}).to_prompt_json()
    return len(encoder.encode(text)) if encoder is not None else len(text) // 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--proposers", default="offline,mobile_sam", help="offline, mobile_sam, vit_h/vit_b/..."
    )
    parser.add_argument("--levels", default="part,object,group,sam_only")
    parser.add_argument(
        "--points-per-side",
        type=int,
        default=None,
        help="SAM grid side (default: settings); on a CPU add --set prompts=grid (default: objects)",
    )
    parser.add_argument("--photos", default=None, help="N first photos, or names (comma separated)")
    parser.add_argument("--no-photos", action="store_true")
    parser.add_argument("--shared", type=Path, default=SHARED_IMAGES, help="folder with queries.json")
    parser.add_argument(
        "--scenes", type=int, default=len(SCENES), help=f"synthetic scenes (max {len(SCENES)})"
    )
    parser.add_argument(
        "--composite", type=int, default=2, help="composite scenes (part/object/group queries)"
    )
    parser.add_argument(
        "--choice", action="store_true", help="ask the offline profile's granularity choice for every query"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 scenes, 2 photos, 1 composite, 16 x 16 points (for the grid)"
    )
    parser.add_argument("--max-side", type=int, default=1024, help="perception.max_image_side")
    parser.add_argument("--sam-checkpoint", default=None, help="checkpoint for vit_h / vit_l / vit_b rows")
    parser.add_argument("--set", action="append", default=[], help="perception.KEY=VALUE override (repeat)")
    parser.add_argument(
        "--share-everything",
        action="store_true",
        help="SAM: one everything-mode run per image shared by all levels (its seconds charged to each)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.scenes = min(args.scenes, 2)
        args.composite = min(args.composite, 1)
        args.photos = args.photos or "2"
        args.points_per_side = args.points_per_side or 16

    proposers = Proposers(args)
    names = [n.strip() for n in args.proposers.split(",") if n.strip()]
    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
    scenes = synthetic_cases(args.scenes)
    photos = [] if args.no_photos else photo_cases(args.photos, args.max_side, args.shared)
    composites = composite_cases(args.composite)
    load = os.getloadavg()
    print(
        f"# twin quality  (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs; "
        f"max_side {args.max_side}; points_per_side {args.points_per_side or 'default'}; "
        f"overrides {args.set or 'none'})\n"
    )
    synthetic_rows: list[Row] = []
    photo_rows: list[Row] = []
    oracles: dict[tuple[str, str, str, int], float] = {}  # (proposer, level, case, target) -> oracle IoU
    tokens: dict[tuple[str, str], list[int]] = {}
    encoder = _encoder() if photos else None
    for name in names:
        for level in levels:
            try:
                proposer = proposers.get(name, level)
            except Exception as exc:  # noqa: BLE001 - a missing model skips its rows
                print(f"({name} {level} skipped: {type(exc).__name__}: {exc})")
                break
            if proposer is None:
                continue
            settings = proposer.settings
            proposer.propose(np.zeros((32, 32, 3), np.uint8), "object" if level == "sam_only" else level)
            row = Row(name, level)
            for case in scenes:
                records, seconds, prompts = run(proposer, level, case, settings)
                masks = [mask_ops.decode(r.mask) for r in records]
                row.prompts += [prompts] if prompts else []
                best = best_ious(case.truth, masks)
                row.scores.append(sum(b >= 0.5 for b in best))
                row.extra.append(sum(b >= 0.85 for b in best))
                row.objects.append(len(masks))
                row.seconds.append(seconds)
            synthetic_rows.append(row)
            row = Row(name, level)
            for case, is_photo in [(c, True) for c in photos] + [(c, False) for c in composites]:
                records, seconds, prompts = run(proposer, level, case, settings)
                masks = [mask_ops.decode(r.mask) for r in records]
                for k, (_, _, target) in enumerate(case.targets):
                    oracles[(name, level, case.name, k)] = oracle_iou(target, masks)
                if is_photo:
                    row.prompts += [prompts] if prompts else []
                    row.scores.append(oracles[(name, level, case.name, 0)])
                    row.objects.append(len(masks))
                    row.seconds.append(seconds)
                    tokens.setdefault((name, level), []).append(
                        prompt_tokens(records, case.image.shape[:2], settings, encoder)
                    )
                    print(
                        f"  {name} {level} {case.name}: oracle {row.scores[-1]:.3f}, {len(masks)} objects, "
                        f"{seconds:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            photo_rows.append(row)
    print_tables(scenes, photos, synthetic_rows, photo_rows, tokens)
    if composites:
        print_composite_table(composites, names, levels, oracles)
    if args.choice:
        print_choice_table(photos + composites, names, levels, oracles)
    return 0


def print_composite_table(cases: list[Case], names: list[str], levels: list[str], oracles: dict) -> None:
    """Mean oracle IoU of the composite scenes' queries, by the level the query is at."""
    kinds = ("part", "object", "group")
    count = {k: sum(t[1] == k for c in cases for t in c.targets) for k in kinds}
    print(
        f"\n## Composite scenes ({len(cases)}: toy vehicles with windows and wheels): mean oracle IoU "
        "by the query's level\n"
    )
    print("| proposer | twin level | " + " | ".join(f"{k} queries ({count[k]})" for k in kinds) + " | all |")
    print("|---|---|---|---|---|---|")
    for name in names:
        for level in levels:
            values = {k: [] for k in kinds}
            for case in cases:
                for i, (_, kind, _) in enumerate(case.targets):
                    if (name, level, case.name, i) in oracles:
                        values[kind].append(oracles[(name, level, case.name, i)])
            if not any(values.values()):
                continue
            every = [v for vs in values.values() for v in vs]
            cells = " | ".join(f"{np.mean(values[k]):.3f}" if values[k] else "-" for k in kinds)
            print(f"| {name} | {level} | {cells} | {np.mean(every):.3f} |")


def print_choice_table(cases: list[Case], names: list[str], levels: list[str], oracles: dict) -> None:
    """How often the granularity choice (paper Eq. 1) picks a level whose twin lacks the target."""
    from dtwin_agent.llm.usage import Usage
    from dtwin_agent.reasoning import get_reasoner

    settings = Settings()  # the offline profile: the local LLM decides from the text (no VLM here)
    reasoner = get_reasoner(settings)
    print(
        f"\n## Granularity choice by {reasoner.name} from the query text: "
        "does the chosen twin hold the target?\n"
    )
    print("(lacks = oracle IoU < 0.5: no union of twin masks covers the answer)\n")
    chosen: list[tuple[Case, int, str]] = []
    for case in cases:
        for i, (query, _, _) in enumerate(case.targets):
            reply = reasoner.granularity(query, Usage())
            level = reply.value.granularity if reply.value is not None else "object"
            chosen.append((case, i, level))
            print(f"  {case.name}: {query!r} -> {level}", file=sys.stderr, flush=True)
    for name in names:
        print(f"\n| {name}: query | truth level | chosen | oracle at chosen | at truth | hierarchy |")
        print("|---|---|---|---|---|---|")
        lacks = {"chosen": 0, "truth": 0, "hierarchy": 0}
        sums = {"chosen": [], "truth": [], "hierarchy": []}
        for case, i, level in chosen:
            query, truth_level, _ = case.targets[i]
            values = {
                "chosen": oracles.get((name, level, case.name, i)),
                "truth": oracles.get((name, truth_level, case.name, i)),
                "hierarchy": oracles.get((name, "hierarchy", case.name, i)),
            }
            for key, value in values.items():
                if value is not None:
                    sums[key].append(value)
                    lacks[key] += value < 0.5
            cells = " | ".join("-" if v is None else f"{v:.3f}" for v in values.values())
            print(f"| {case.name}: {query} | {truth_level} | {level} | {cells} |")
        total = len(chosen)
        summary = "; ".join(
            f"{key}: lacks the target in {lacks[key]}/{len(sums[key])}, mean oracle {np.mean(sums[key]):.3f}"
            for key in sums
            if sums[key]
        )
        print(f"\n{name}, {total} queries: {summary}")


def print_tables(
    scenes: list[Case],
    photos: list[Case],
    synthetic_rows: list[Row],
    photo_rows: list[Row],
    tokens: dict[tuple[str, str], list[int]],
) -> None:
    if scenes:
        total = sum(len(c.truth) for c in scenes)
        print(
            f"## Synthetic scenes ({len(scenes)} scenes, {total} objects): recall of ground-truth objects\n"
        )
        print(
            "| proposer | level | recall IoU>=0.5 | recall IoU>=0.85 | objects / twin | s / image "
            "| decoder prompts / image |"
        )
        print("|---|---|---|---|---|---|---|")
        for row in synthetic_rows:
            print(
                f"| {row.proposer} | {row.level} | {sum(row.scores) / total:.3f} "
                f"| {sum(row.extra) / total:.3f} | {np.mean(row.objects):.1f} | {np.mean(row.seconds):.2f} "
                f"| {row.prompts_cell()} |"
            )
        print()
    if not photos:
        return
    print(f"## Shared photos ({len(photos)}): oracle IoU of the best union of twin masks with the answer\n")
    names = [c.name for c in photos]
    print(
        "| proposer | level | "
        + " | ".join(names)
        + " | mean | objects / twin | JSON(D) T_i tokens | s / image | prompts |"
    )
    print("|---|---|" + "---|" * (len(names) + 5))
    for row in photo_rows:
        cells = " | ".join(f"{s:.3f}" for s in row.scores)
        spent = tokens.get((row.proposer, row.level))
        print(
            f"| {row.proposer} | {row.level} | {cells} | {np.mean(row.scores):.3f} "
            f"| {np.mean(row.objects):.1f} | {np.mean(spent):.0f} | {np.mean(row.seconds):.1f} "
            f"| {row.prompts_cell()} |"
        )
    print("\nquery level per photo: " + ", ".join(f"{c.name}={c.targets[0][1]}" for c in photos))
    by_key = {(r.proposer, r.level): r for r in photo_rows}
    print("\n| proposer | at the query's level: mean oracle IoU | sam_only | hierarchy |")
    print("|---|---|---|---|")
    for proposer in dict.fromkeys(r.proposer for r in photo_rows):
        at_level = [
            by_key[(proposer, c.targets[0][1])].scores[i]
            for i, c in enumerate(photos)
            if (proposer, c.targets[0][1]) in by_key
        ]
        mean = f"{np.mean(at_level):.3f} ({len(at_level)} photos)" if at_level else "-"
        others = [by_key.get((proposer, lv)) for lv in ("sam_only", "hierarchy")]
        cells = " | ".join(f"{np.mean(r.scores):.3f}" if r else "-" for r in others)
        print(f"| {proposer} | {mean} | {cells} |")


if __name__ == "__main__":
    raise SystemExit(main())

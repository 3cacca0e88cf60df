"""Perception + spatial layer benchmark (paper 3.1-3.2): time per stage, JSON(D) size, memory.

Run from the repository root::

    python benchmarks/perception.py [--proposer offline] [--max-side 1024] [--images DIR_OR_FILE ...]

For every photo (default: ``<repo>/../shared/images``, skipped cleanly when absent) and a few
synthetic scenes it prints one markdown table row: objects found, seconds per stage, the size of
JSON(D) in characters and in cl100k_base tokens, and the peak Python heap (tracemalloc) of a second,
traced run. Stages:

* ``load``: decode the file (``dtwin_agent.images.load_image``);
* ``propose``: downscale to ``--max-side`` and run the proposer (for the offline proposer the
  ``overseg`` / ``merge`` columns split this: merging is its granularity policy);
* ``records``: masks back to the original size, filtered, COCO RLE encoded (the pipeline's
  ``proposals_to_records``);
* ``label``: the offline labeller's S_i text (no VLM), so that JSON(D) has realistic size;
* ``spatial``: ``dtwin_agent.spatial.build_spatial`` (polygons, relations, T_i);
* ``json``: ``DigitalTwin(...).to_prompt_json()``.

A last table times the spatial layer alone on 200 random objects.

``--mobile-sam`` adds two MobileSAM tables (``vit_t``, the ``mobile_sam`` package, weights
``mobile_sam.pt`` from the model store; skipped with a note when either is missing): seconds per
image of everything mode + the granularity policy at points_per_side 8 / 16 / 32 on photos
downscaled to ``--max-side`` (32 only on the first photo: minutes per image on a CPU), and proposal
recall on synthetic scenes (fraction of ground-truth objects with a proposal at IoU >= 0.5 and
>= 0.9) for MobileSAM (raw everything mode, ``sam_only``, and the ``object`` policy) against the
offline proposer. Without the flag the default run stays fast.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers.synthetic import make_scene, random_masks  # noqa: E402

from dtwin_agent import masks as mask_ops  # noqa: E402
from dtwin_agent.config import Settings  # noqa: E402
from dtwin_agent.graph.nodes.propose import proposals_to_records  # noqa: E402
from dtwin_agent.images import downscale, load_image, pixel_hash  # noqa: E402
from dtwin_agent.offline.labeller import describe  # noqa: E402
from dtwin_agent.perception import get_proposer  # noqa: E402
from dtwin_agent.spatial import build_spatial  # noqa: E402
from dtwin_agent.twin import DigitalTwin, ImageInfo, TwinObject  # noqa: E402

SHARED_IMAGES = ROOT.parent / "shared" / "images"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def _encoder():
    """cl100k_base: tiktoken (needs its cached BPE file), else bpe-openai (vocabulary built in)."""
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base")
    except Exception as exc:  # noqa: BLE001 - tiktoken downloads its BPE file on first use
        first = exc
    try:
        import bpe_openai

        return bpe_openai.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001 - tokens are optional
        print(f"(token counts unavailable: tiktoken: {type(first).__name__}; bpe-openai not installed)")
        return None


def run_pipeline(source, settings: Settings, proposer, granularity: str, truth=None) -> dict:
    """One image through load -> propose -> records -> label -> spatial -> json; timings in seconds."""
    times: dict[str, float] = {}
    t = time.perf_counter()
    image = load_image(source)
    times["load"] = time.perf_counter() - t

    t = time.perf_counter()
    small, _ = downscale(image.rgb, settings.perception.max_image_side)
    proposals = proposer.propose(np.ascontiguousarray(small), granularity)
    times["propose"] = time.perf_counter() - t
    inner = dict(getattr(proposer, "last_timings", {}) or {})

    t = time.perf_counter()
    records = proposals_to_records(
        proposals,
        (image.height, image.width),
        min_area_pct=settings.perception.min_area_pct,
        max_objects=settings.perception.max_objects,
    )
    rles = [r.mask for r in records]
    times["records"] = time.perf_counter() - t

    t = time.perf_counter()
    semantics = [describe(image.rgb, mask_ops.decode(rle)) for rle in rles]
    times["label"] = time.perf_counter() - t

    t = time.perf_counter()
    ids = [r.id for r in records]
    parents = [r.parent for r in records]
    geometry = build_spatial(rles, ids, image.width, image.height, settings, parents)
    times["spatial"] = time.perf_counter() - t

    t = time.perf_counter()
    objects = [
        TwinObject(
            id=g.id,
            mask=rle,
            bbox=g.bbox,
            area_pct=g.area_pct,
            centroid=g.centroid,
            predicted_iou=r.predicted_iou,
            stability=r.stability,
            semantic=s,
            relations=g.relations,
            spatial=g.text,
            parent=r.parent,
        )
        for g, rle, r, s in zip(geometry, rles, records, semantics, strict=True)
    ]
    twin = DigitalTwin(
        image=ImageInfo(width=image.width, height=image.height, sha256=image.sha256, source=image.source),
        granularity=granularity,
        objects=objects,
    )
    prompt = twin.to_prompt_json()
    times["json"] = time.perf_counter() - t

    found = None
    if truth is not None:
        masks = [o.decode_mask() for o in twin.objects]
        found = sum(max((mask_ops.iou(g, m) for m in masks), default=0.0) >= 0.9 for g in truth)
    return {"n": len(objects), "times": times, "inner": inner, "prompt": prompt, "found": found}


def peak_mb(source, settings, proposer, granularity) -> float:
    tracemalloc.start()
    try:
        run_pipeline(source, settings, proposer, granularity)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposer", default="offline", help="auto | offline | sam | a registered name")
    parser.add_argument("--max-side", type=int, default=1024, help="perception.max_image_side")
    parser.add_argument("--granularity", default="object", choices=["group", "object", "part", "hierarchy"])
    parser.add_argument(
        "--images", nargs="*", default=None, help="image files or folders (default: ../shared/images)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the traced run (faster)")
    parser.add_argument(
        "--mobile-sam",
        action="store_true",
        help="add the MobileSAM (vit_t) timing and recall tables (minutes)",
    )
    parser.add_argument(
        "--mobile-sam-sides",
        default="8,16,32",
        help="points_per_side values timed (the last: first photo only)",
    )
    parser.add_argument("--mobile-sam-photos", type=int, default=2, help="photos timed with MobileSAM")
    parser.add_argument(
        "--recall-side", type=int, default=16, help="MobileSAM points_per_side for the recall table"
    )
    parser.add_argument("--mobile-sam-only", action="store_true", help="only the MobileSAM tables")
    args = parser.parse_args(argv)
    if args.mobile_sam_only:
        return mobile_sam_tables(args, _sources(args)[0])

    settings = Settings().merged(
        {"perception.proposer": args.proposer, "perception.max_image_side": args.max_side}
    )
    proposer = get_proposer(settings)
    encoder = _encoder()

    photos, scenes = _sources(args)
    sources = photos + scenes

    print(
        f"proposer={proposer.name}  granularity={args.granularity}  max_side={args.max_side}  "
        f"k={settings.spatial.max_relations}  cpu threads shared; seconds per stage\n"
    )
    header = (
        "| image | objects | load | propose | overseg | merge | records | label | spatial | json "
        "| JSON chars | tokens | peak MB |"
    )
    print(header)
    print("|" + "|".join(["---"] * (header.count("|") - 1)) + "|")
    proposer.propose(np.zeros((32, 32, 3), np.uint8), args.granularity)  # warm imports
    for name, source, truth in sources:
        result = run_pipeline(source, settings, proposer, args.granularity, truth)
        t, inner = result["times"], result["inner"]
        tokens = len(encoder.encode(result["prompt"])) if encoder else "-"
        memory = "-" if args.no_memory else f"{peak_mb(source, settings, proposer, args.granularity):.0f}"
        objects = str(result["n"])
        if result["found"] is not None:
            objects += f" ({result['found']}/{len(truth)} IoU>=.9)"
        over, merge = (f"{inner[k]:.2f}" if k in inner else "-" for k in ("oversegment", "merge"))
        print(
            f"| {name} | {objects} | {t['load']:.2f} | {t['propose']:.2f} | {over} | {merge} "
            f"| {t['records']:.2f} | {t['label']:.2f} | {t['spatial']:.3f} | {t['json']:.3f} "
            f"| {len(result['prompt'])} | {tokens} | {memory} |"
        )

    print("\n| spatial layer alone | objects | image | build_spatial s | JSON chars | tokens |")
    print("|---|---|---|---|---|---|")
    for side in (512, 1024):
        masks = random_masks(200, width=side, height=side, seed=0)
        rles = [mask_ops.encode(m) for m in masks]
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            geometry = build_spatial(rles, None, side, side, settings)
            best = min(best, time.perf_counter() - t0)
        twin = DigitalTwin(
            image=ImageInfo(width=side, height=side, sha256=pixel_hash(np.zeros((1, 1, 3), np.uint8))),
            objects=[
                TwinObject(
                    id=g.id,
                    mask=r,
                    bbox=g.bbox,
                    area_pct=g.area_pct,
                    centroid=g.centroid,
                    relations=g.relations,
                    spatial=g.text,
                )
                for g, r in zip(geometry, rles, strict=True)
            ],
        )
        prompt = twin.to_prompt_json()
        tokens = len(encoder.encode(prompt)) if encoder else "-"
        print(f"| random masks (RLE in) | 200 | {side}x{side} | {best:.3f} | {len(prompt)} | {tokens} |")

    if args.mobile_sam:
        mobile_sam_tables(args, photos)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS (ru_maxrss): {rss:.0f} MB")
    return 0


SCENES = [
    (4, "separate", 0.0, (640, 480)),
    (8, "touching", 8.0, (640, 480)),
    (12, "touching", 8.0, (1024, 768)),
]


def _sources(args) -> tuple[list, list]:
    """(photos, synthetic scenes) as ``(name, source, truth masks or None)``."""
    photos: list[tuple[str, object, list | None]] = []
    paths = [Path(p) for p in args.images] if args.images is not None else [SHARED_IMAGES]
    for path in paths:
        if path.is_dir():
            photos += [
                (p.name, p, None) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
            ]
        elif path.is_file():
            photos.append((path.name, path, None))
        else:
            print(f"(skipping {path}: not found)")
    scenes = []
    for n, placement, noise, size in SCENES:
        scene = make_scene(n, placement=placement, noise=noise, antialias=True, width=size[0], height=size[1])
        name = f"synthetic {n} {placement}{' noisy' if noise else ''} {size[0]}x{size[1]}"
        scenes.append((name, scene.image, scene.masks))
    return photos, scenes


def recall(truth: list, masks: list) -> tuple[float, float]:
    """Fraction of ground-truth masks with a proposed mask at IoU >= 0.5 and at IoU >= 0.9."""
    best = [max((mask_ops.iou(g, m) for m in masks), default=0.0) for g in truth]
    return sum(b >= 0.5 for b in best) / len(truth), sum(b >= 0.9 for b in best) / len(truth)


def mobile_sam_tables(args, photos: list) -> int:
    """MobileSAM seconds per photo at several points_per_side, and recall vs the offline proposer."""
    import importlib.util

    from dtwin_agent.weights import store

    print("\n## MobileSAM (vit_t) on the CPU")
    if importlib.util.find_spec("mobile_sam") is None:
        print("(skipped: mobile_sam is not installed: pip install mobilesam-mirror)")
        return 0
    try:
        checkpoint = str(store.resolve_model("mobile_sam", Settings()))
    except Exception as exc:  # noqa: BLE001 - not fetched, or corrupt
        print(f"(skipped: {exc})")
        return 0
    import torch

    from dtwin_agent.perception.sam import SamProposer

    def settings_for(side: int, **extra) -> Settings:
        return Settings().merged(
            {
                "perception.sam_model_type": "vit_t",
                "perception.sam_checkpoint": checkpoint,
                "perception.points_per_side": side,
                "perception.prompts": "grid",  # this table is about the grid's side
                "perception.max_image_side": args.max_side,
                "perception.device": "cpu",
                **{f"perception.{k}": v for k, v in extra.items()},
            }
        )

    t0 = time.perf_counter()
    proposer = SamProposer(settings_for(8))
    print(
        f"torch threads {torch.get_num_threads()}, max_side {args.max_side}, granularity {args.granularity}; "
        f"model load {time.perf_counter() - t0:.2f} s\n"
    )
    proposer.propose(np.zeros((32, 32, 3), np.uint8), args.granularity)  # warm-up
    sides = [int(x) for x in args.mobile_sam_sides.split(",") if x.strip()]
    print("| photo | size | points_per_side | prompts | seconds | proposals |")
    print("|---|---|---|---|---|---|")
    for index, (name, source, _) in enumerate(photos[: args.mobile_sam_photos]):
        image = load_image(source)
        small, _ = downscale(image.rgb, args.max_side)
        small = np.ascontiguousarray(small)
        for side in sides:
            if side == sides[-1] and index > 0 and len(sides) > 1:
                continue  # the largest grid on the first photo only
            proposer = SamProposer(settings_for(side), model=proposer.model)
            t = time.perf_counter()
            proposals = proposer.propose(small, args.granularity)
            seconds = time.perf_counter() - t
            print(
                f"| {name} | {small.shape[1]}x{small.shape[0]} | {side} | {side * side} | {seconds:.1f} "
                f"| {len(proposals)} |",
                flush=True,
            )

    offline = get_proposer(
        Settings().merged({"perception.proposer": "offline", "perception.max_image_side": args.max_side})
    )
    side = args.recall_side
    print(
        f"\n| synthetic scene | objects | offline object: IoU>=.5 / >=.9 (n, s) "
        f"| MobileSAM sam_only pps {side}: IoU>=.5 / >=.9 (n, s) "
        f"| MobileSAM object pps {side}: IoU>=.5 / >=.9 (n, s) |"
    )
    print("|---|---|---|---|---|")
    _, scenes = _sources(args)
    for name, image, truth in scenes:
        cells = []
        runs = [
            (offline, "object"),
            (SamProposer(settings_for(side, policy="sam_only"), model=proposer.model), "object"),
            (SamProposer(settings_for(side), model=proposer.model), "object"),
        ]
        for prop, granularity in runs:
            small, _ = downscale(image, args.max_side)
            t = time.perf_counter()
            proposals = prop.propose(np.ascontiguousarray(small), granularity)
            seconds = time.perf_counter() - t
            masks = [p.mask for p in proposals]
            if small.shape[:2] != image.shape[:2]:  # masks back to the scene's size
                from PIL import Image

                size = (image.shape[1], image.shape[0])
                masks = [np.asarray(Image.fromarray(m).resize(size, Image.NEAREST)) for m in masks]
            r50, r90 = recall(truth, masks)
            cells.append(f"{r50:.2f} / {r90:.2f} ({len(proposals)}, {seconds:.1f})")
        print(f"| {name} | {len(truth)} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Everything mode: this project's SAM proposer against ``SamAutomaticMaskGenerator``, side by side.

Run from the repository root::

    python benchmarks/everything_speed.py [--sides 16,32] [--photos dog.jpg] [--max-side 1024]
        [--modes fast,fast-fp32,exact] [--repeat 1] [--batches 8,16,32,64] [--threads N]

With the real MobileSAM weights (``mobile_sam.pt`` from the model store, loaded by the project's
loader; skipped with a note when absent), on each photo (default: ``../shared/images/dog.jpg``)
downscaled to ``--max-side``, for each grid (``--sides``) it runs, in one process and alternating
order, segment-anything's ``SamAutomaticMaskGenerator`` (its defaults: 64 prompts per batch; the
same model, grid, thresholds) and this project's ``SamProposer`` with ``policy = "sam_only"`` in
each mode:

* ``fast``: the fast decoder with ``precision = "auto"`` (bf16 products on CPUs with native
  bf16);
* ``fast-fp32``: the default (``decoder = "fast"``, ``precision = "fp32"``);
* ``fast-fp32-system-heap``: the default with ``reuse_memory = false`` (glibc gives freed tensor
  memory back after every batch);
* ``exact``: segment-anything's own decoder (bit-identical masks).

The reference also runs inside :func:`~dtwin_agent.perception.memory.reuse_freed_memory` (row
``SamAutomaticMaskGenerator, heap kept``; ``--no-reference-heap`` leaves it out), so the table
shows how much of the speed-up is the heap policy, which any PyTorch program on a CPU could adopt,
and how much is the decoder: the last column is the speed-up against that row.

It prints seconds per image (image encoder included), the speed-up (reference seconds / ours) and
the equality statistics: how many reference masks have one of ours at IoU >= 0.98 (and the worst
best-match IoU), and the mask counts. ``--batches`` adds a table of the fast mode's seconds per
prompts-per-batch. The machine is shared: ratios come from one run, and the load is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from dtwin_agent import masks as mask_ops  # noqa: E402
from dtwin_agent.config import Settings  # noqa: E402
from dtwin_agent.images import downscale, load_image  # noqa: E402

SHARED_IMAGES = ROOT.parent / "shared" / "images"
HEAP_KEPT = "SamAutomaticMaskGenerator, heap kept"
MODES = {
    "fast": {"decoder": "fast", "precision": "auto"},
    "fast-fp32": {"decoder": "fast", "precision": "fp32"},
    "fast-fp32-system-heap": {"decoder": "fast", "precision": "fp32", "reuse_memory": False},
    "exact": {"decoder": "exact"},
}


def equality(reference: list[np.ndarray], ours: list[np.ndarray]) -> tuple[int, float]:
    """Reference masks matched by one of ours at IoU >= 0.98, and the lowest best-match IoU."""
    if not reference:
        return 0, 1.0
    if not ours:
        return 0, 0.0
    ious = mask_ops.iou_matrix([mask_ops.encode(m) for m in reference], [mask_ops.encode(m) for m in ours])
    best = ious.max(axis=1)
    return int((best >= 0.98).sum()), float(best.min())


def load(args: argparse.Namespace):
    from dtwin_agent.perception.sam import _backend, load_sam
    from dtwin_agent.weights import store

    try:
        checkpoint = store.resolve_model("mobile_sam", Settings())
    except Exception as exc:  # noqa: BLE001 - not fetched or not installed
        print(f"(skipped: MobileSAM weights unavailable: {exc})")
        return None
    backend = _backend()
    return backend, load_sam("vit_t", checkpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", default="16,32", help="points_per_side values")
    parser.add_argument("--photos", default="dog.jpg", help="photo names in ../shared/images, or paths")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--modes", default="fast,fast-fp32,exact")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method (the fastest is kept)")
    parser.add_argument("--batches", default="", help="also time the fast mode at these prompts per batch")
    parser.add_argument("--no-reference", action="store_true", help="skip SamAutomaticMaskGenerator")
    parser.add_argument(
        "--no-reference-heap", action="store_true", help="skip the reference with the heap kept"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    loaded = load(args)
    if loaded is None:
        return 0
    _, model = loaded
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from segment_anything import SamAutomaticMaskGenerator  # imported by load() through the project

    from dtwin_agent.perception.decoder import native_bf16
    from dtwin_agent.perception.memory import reuse_freed_memory
    from dtwin_agent.perception.sam import SamProposer

    sides = [int(s) for s in args.sides.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    photos = []
    for name in args.photos.split(","):
        path = Path(name) if Path(name).is_file() else SHARED_IMAGES / name
        if not path.is_file():
            print(f"(skipping {name}: not found)")
            continue
        small, _ = downscale(load_image(path).rgb, args.max_side)
        photos.append((path.name, np.ascontiguousarray(small)))
    load_avg = os.getloadavg()
    print(
        f"# everything mode, MobileSAM (vit_t), CPU: torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, "
        f"native bf16 {native_bf16()}; load average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}\n"
    )
    print(
        "| photo | points | method | seconds | speed-up vs reference | masks | reference masks matched "
        "at IoU>=0.98 | worst best-match IoU | speed-up vs reference, heap kept |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def settings_for(side: int, **extra: object) -> Settings:
        return Settings.model_validate(
            {
                "perception": {
                    "points_per_side": side,
                    "prompts": "grid",  # the reference's grid, not the CPU default's object-aware prompts
                    "policy": "sam_only",
                    "device": "cpu",
                    "sam_model_type": "vit_t",
                    **extra,
                }
            }
        )

    def timed(run) -> tuple[float, list[np.ndarray]]:
        best, masks = float("inf"), []
        for _ in range(args.repeat):
            started = time.perf_counter()
            masks = run()
            best = min(best, time.perf_counter() - started)
        return best, masks

    warm = np.zeros((64, 64, 3), np.uint8)
    for name, image in photos:
        for side in sides:
            results: dict[str, tuple[float, list[np.ndarray]]] = {}
            runners = {}
            if not args.no_reference:
                generator = SamAutomaticMaskGenerator(model, points_per_side=side, output_mode="binary_mask")
                runners["SamAutomaticMaskGenerator"] = lambda g=generator, image=image: [
                    r["segmentation"] for r in g.generate(image)
                ]
                if not args.no_reference_heap:

                    def kept(g=generator, image=image) -> list[np.ndarray]:
                        with reuse_freed_memory():
                            return [r["segmentation"] for r in g.generate(image)]

                    runners[HEAP_KEPT] = kept
            for mode in modes:
                proposer = SamProposer(settings_for(side, **MODES[mode]), model=model)
                proposer.propose(warm, "object")
                runners[f"ours: {mode}"] = lambda p=proposer, image=image: [
                    q.mask for q in p.propose(image, "object")
                ]
            order = list(runners)
            for key in order[::2] + order[1::2]:  # interleave, so that load changes hit every method
                results[key] = timed(runners[key])
                print(f"  {name} {side}: {key} {results[key][0]:.1f} s", file=sys.stderr, flush=True)
            ref_time, ref_masks = results.get("SamAutomaticMaskGenerator", (None, None))
            heap_time = results.get(HEAP_KEPT, (None, None))[0]
            for key in order:
                seconds, masks = results[key]
                if ref_masks is None or key == "SamAutomaticMaskGenerator":
                    ratio, matched, worst = "1.00" if ref_masks is not None else "-", "-", "-"
                    if ref_masks is not None:
                        matched = f"{len(ref_masks)}/{len(ref_masks)}"
                        worst = "1.000"
                else:
                    count, low = equality(ref_masks, masks)
                    ratio = f"{ref_time / seconds:.2f}"
                    matched = f"{count}/{len(ref_masks)} ({100.0 * count / max(len(ref_masks), 1):.1f}%)"
                    worst = f"{low:.3f}"
                heap_ratio = "-" if heap_time is None else f"{heap_time / seconds:.2f}"
                print(
                    f"| {name} | {side}x{side} | {key} | {seconds:.1f} | {ratio} | {len(masks)} | {matched} "
                    f"| {worst} | {heap_ratio} |",
                    flush=True,
                )
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if batches and photos:
        name, image = photos[0]
        side = sides[-1]
        print(f"\n| prompts per batch (fast, {name}, {side}x{side}) | seconds |")
        print("|---|---|")
        for batch in batches:
            proposer = SamProposer(settings_for(side, points_per_batch=batch), model=model)
            proposer.propose(warm, "object")
            seconds, _ = timed(lambda p=proposer: p.propose(image, "object"))
            print(f"| {batch} | {seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

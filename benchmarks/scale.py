"""Dataset-scale twin building: images per minute for 1 and 2 workers, local engine and Ray.

Run from the repository root (Ray from the ``ray`` extra; MobileSAM rows need ``dtwin models fetch
mobile_sam`` and the ``mobile_sam`` package, else they are skipped with a note)::

    python benchmarks/scale.py [--images DIR] [--photos N] [--repeat 2] [--points-per-side 8]
        [--skip-mobile-sam]

For each proposer (the offline proposer; MobileSAM ``vit_t`` at ``--points-per-side``) it builds the
twins of the same photos (default ``<repo>/../shared/images``, each listed ``--repeat`` times under
another name so every worker gets several) with ``dtwin_agent.evaluation.twins.build_twins``:
``local`` with 1 and 2 workers, then ``ray`` with 1 and 2 actors on a local Ray instance started
once beforehand (its start-up is printed separately, not counted). Columns:

- ``wall s``: the build's wall time (for Ray including the actors' start-up and model loading);
- ``img/min``: images / wall time;
- ``work s/img``: mean seconds a worker spent on one image (the rows' ``seconds``);
- ``overhead s/img``: ``(wall x workers - sum of work) / images``: what is not building twins
  (start-up, model loading, scheduling, transfer), per image;
- ``ray - local s/img``: Ray's wall time per image minus the local engine's at the same worker count.

The twin cache is off (the shards are the store) and every configuration writes to a fresh folder,
so nothing is reused between rows. The machine is shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from dtwin_agent.config import resolve_settings  # noqa: E402
from dtwin_agent.evaluation.shards import TwinShards  # noqa: E402
from dtwin_agent.evaluation.twins import build_twins  # noqa: E402

SHARED_IMAGES = ROOT.parent / "shared" / "images"


def photo_folder(source: Path, repeat: int, dest: Path, limit: int | None) -> int:
    """Copy the photos of ``source`` into ``dest`` ``repeat`` times (distinct names); returns the count."""
    photos = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    dest.mkdir(parents=True)
    for k in range(repeat):
        for photo in photos:
            shutil.copy(photo, dest / f"r{k}_{photo.name}")
    return len(photos) * repeat


def run(folder: Path, out: Path, engine: str, workers: int, settings) -> dict:
    report = build_twins(
        "images",
        folder,
        "all",
        out_dir=out,
        engine=engine,
        workers=workers,
        settings=settings,
        progress=False,
    )
    rows = TwinShards.open(out).rows().values()
    work = sum(float(r.get("seconds") or 0.0) for r in rows)
    n = report.n_new
    if report.errors:
        print(f"  note: {engine} x{workers}: errors {report.errors}: {report.first_error}", file=sys.stderr)
    return {
        "engine": engine,
        "workers": workers,
        "n": n,
        "wall": report.wall_seconds,
        "per_min": 60.0 * n / report.wall_seconds,
        "work": work / n,
        "overhead": (report.wall_seconds * workers - work) / n,
        "components": next(iter(rows)).get("components", {}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=SHARED_IMAGES)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--photos", type=int, default=None, help="use only the first N photos")
    p.add_argument("--points-per-side", type=int, default=8)
    p.add_argument("--skip-mobile-sam", action="store_true")
    args = p.parse_args(argv)
    if not args.images.is_dir():
        print(f"no photos at {args.images}; pass --images DIR", file=sys.stderr)
        return 0
    import ray

    from dtwin_agent.evaluation.engines.ray_engine import local_runtime_env
    from dtwin_agent.offline.profile import mobile_sam_available

    base = resolve_settings()
    configs = [("offline proposer", base.merged({"perception.proposer": "offline"}))]
    if args.skip_mobile_sam:
        pass
    elif mobile_sam_available(base):
        sam = {
            "perception.proposer": "sam",
            "perception.sam_checkpoint": "mobile_sam",
            "perception.points_per_side": args.points_per_side,
            "perception.prompts": "grid",
        }
        configs.append(
            (f"MobileSAM vit_t, {args.points_per_side}x{args.points_per_side} points", base.merged(sam))
        )
    else:
        print(
            "MobileSAM rows skipped: run `dtwin models fetch mobile_sam` and install mobilesam-mirror",
            file=sys.stderr,
        )

    cpus = os.cpu_count() or 1
    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="error", runtime_env=local_runtime_env())
    ray_start = time.perf_counter() - started
    tmp = Path(tempfile.mkdtemp(prefix="dtwin-scale-"))
    try:
        n_images = photo_folder(args.images, args.repeat, tmp / "photos", args.photos)
        results = []
        for label, settings in configs:
            for engine in ("local", "ray"):
                for workers in (1, 2):
                    out = tmp / f"{len(results)}-{engine}-{workers}"
                    row = run(tmp / "photos", out, engine, workers, settings)
                    row["proposer"] = label
                    results.append(row)
                    print(f"  {label}: {engine} x{workers}: {row['wall']:.1f} s", file=sys.stderr)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"\n{n_images} images ({args.repeat} x the photos of {args.images}), {cpus} CPUs, "
        f"load average before the table {load}; "
        f"a local Ray instance started in {ray_start:.1f} s (not counted)\n"
    )
    print(
        "| proposer | engine | workers | wall s | img/min | work s/img | overhead s/img | ray - local s/img |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    local = {(r["proposer"], r["workers"]): r for r in results if r["engine"] == "local"}
    for r in results:
        delta = "-"
        if r["engine"] == "ray":
            ref = local[(r["proposer"], r["workers"])]
            delta = f"{r['wall'] / r['n'] - ref['wall'] / ref['n']:+.2f}"
        print(
            f"| {r['proposer']} | {r['engine']} | {r['workers']} | {r['wall']:.1f} | {r['per_min']:.1f} | "
            f"{r['work']:.2f} | {r['overhead']:.2f} | {delta} |"
        )
    print(
        "\ncomponents: "
        + "; ".join(
            f"{label}: {json.dumps(next(r for r in results if r['proposer'] == label)['components'])}"
            for label, _ in configs
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

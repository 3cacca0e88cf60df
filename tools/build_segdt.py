"""Build Seg-DT skeleton records for annotators (paper 3.4) from images, queries and ground truth.

For each sample: build the digital twin D (dtwin_agent.api.build_twin, or --build-twin-fn), keep
the objects whose predicted IoU reaches tau (--tau), measure each object's overlap with the ground
truth, and write a one-step reasoning-path skeleton whose kept / rejected decisions are suggested
from that overlap. Reasoning notes are left EMPTY and status is "skeleton": experts write the
reasoning path (the paper's annotators did); this tool does not pretend to. Training refuses
skeletons until their status is "annotated".

Inputs, either
    --dataset reasonseg --root data/ReasonSeg --split train      (any dtwin_agent.evaluation.datasets loader)
    [--twins runs/rs-twins]      read each image's twin from shards built by `dtwin twins build` (same
                                 --root) instead of building it again (paper 3.4 at dataset scale)
or
    --manifest items.jsonl    lines {"id": "...", "image": "a.jpg", "query": "...", "mask": "a_mask.png",
                              "ignore": "a_ignore.png" (optional)}; masks are PNGs, non-zero = foreground

Output: --out segdt.jsonl (appended; records already there are skipped, so an interrupted run resumes).
A sample whose ground truth cannot be read (a bad annotation) is reported and skipped; the run goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from dtwin_agent.errors import ConfigError, DTwinError, InputError
from dtwin_agent.evaluation.runner import load_callable


def _png_mask(path: Path) -> np.ndarray:
    from PIL import Image

    from dtwin_agent.images import large_images_allowed

    if not path.is_file():
        raise InputError(f"mask not found: {path}")
    with large_images_allowed(), Image.open(path) as img:
        return np.asarray(img.convert("L")) > 0


Item = tuple[str, Path, str, Callable[[], tuple[np.ndarray, np.ndarray | None]], dict]


def manifest_items(path: Path) -> Iterator[Item]:
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    base = path.parent
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            image, query = base / item["image"], str(item["query"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{lineno}: bad manifest line ({exc})") from exc

        def masks(item: dict = item) -> tuple[np.ndarray, np.ndarray | None]:
            if not item.get("mask"):
                raise InputError("no 'mask' in the manifest line")
            gt = _png_mask(base / item["mask"])
            return gt, _png_mask(base / item["ignore"]) if item.get("ignore") else None

        yield str(item.get("id", f"{lineno}")), image, query, masks, {}


def dataset_items(name: str, root: Path, split: str) -> Iterator[Item]:
    from dtwin_agent.evaluation.datasets import load_dataset

    for s in load_dataset(name, root, split):
        yield s.sample_id, s.image_path, s.query, s.load_masks, dict(s.meta)


def existing_ids(path: Path) -> set[str]:
    from dtwin_agent.evaluation.jsonl import read_jsonl

    return set(read_jsonl(path, "id", repair=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="reasonseg | refcoco | refcoco+ | refcocog | llmseg40k")
    src.add_argument("--manifest", type=Path)
    p.add_argument("--root", type=Path, help="dataset folder (with --dataset)")
    p.add_argument("--split", default="train")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--min-inside",
        type=float,
        default=0.5,
        help="suggest 'kept' when this share of an object's pixels lies inside the ground truth",
    )
    p.add_argument("--tau", type=float, default=None, help="drop objects whose predicted IoU is below tau")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument(
        "--build-twin-fn",
        default=None,
        help="MODULE:NAME or FILE.py:NAME (default dtwin_agent.api.build_twin)",
    )
    p.add_argument(
        "--twins", type=Path, default=None, help="twin shards of the same --root (dtwin twins build)"
    )
    p.add_argument("--settings", default=None, help="JSON of setting overrides")
    p.add_argument("--config", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        from dtwin_agent.outputs.files import check_out_dir

        if args.out.is_dir():
            raise InputError(f"--out {args.out} is a folder; name the JSONL file to write")
        check_out_dir(args.out.parent, "--out (its folder)")
        from dtwin_agent.sft.build import build_skeleton

        if args.dataset and args.root is None:
            raise InputError("--root is required with --dataset")
        shards = None
        if args.twins is not None:
            from dtwin_agent.evaluation.shards import TwinShards, image_id

            if args.manifest:
                raise InputError("--twins needs --dataset and --root (twins are found by image path)")
            shards = TwinShards.open(args.twins)
            settings = None

            def build_twin(image, query=None, **kwargs):
                return shards.twin(image_id(image, args.root))
        elif args.build_twin_fn:
            build_twin = load_callable(args.build_twin_fn)
            settings = None
        else:
            from dtwin_agent.api import build_twin
            from dtwin_agent.config import resolve_settings
            from dtwin_agent.evaluation.work import check_models

            settings = resolve_settings(
                config_file=args.config, overrides=json.loads(args.settings) if args.settings else None
            )
            check_models(settings, "twin")  # a broken --vlm stops here, before any image
        items = (
            manifest_items(args.manifest)
            if args.manifest
            else dataset_items(args.dataset, args.root, args.split)
        )
        done = existing_ids(args.out)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        written = skipped = failed = 0
        with args.out.open("a", encoding="utf-8") as fh:
            for n, (rid, image, query, masks, meta) in enumerate(items):
                if args.limit is not None and n >= args.limit:
                    break
                if rid in done:
                    skipped += 1
                    continue
                kwargs = {"settings": settings} if settings is not None else {}
                try:
                    gt, ignore = masks()  # a bad annotation is this sample's failure, not the run's
                    twin = build_twin(str(image), query, **kwargs)
                    rec = build_skeleton(
                        twin,
                        query,
                        gt,
                        ignore,
                        record_id=rid,
                        min_inside=args.min_inside,
                        iou_threshold=args.tau,
                        meta={"image_path": str(image), **meta},
                    )
                except ConfigError:
                    raise  # wrong for every sample: stop (exit 2), never "skip" them all
                except DTwinError as exc:
                    # not written, so a rerun tries it again (a provider failure is not a result)
                    print(f"skip {rid}: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                fh.write(rec.model_dump_json() + "\n")
                fh.flush()
                written += 1
                print(
                    f"{rid}: {len(rec.input.twin)} objects, suggested ids {rec.target.ids}, "
                    f"suggested IoU {rec.meta['suggested_iou']:.3f}",
                    file=sys.stderr,
                )
    except (InputError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DTwinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the script's last line of defence: one line, exit 1
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {written} skeleton records to {args.out} ({skipped} already there, {failed} failed). "
        "Annotate the reasoning and set status to 'annotated' before training."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

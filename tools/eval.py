"""Scripted benchmark evaluation (resumable): the same runner as ``dtwin eval``.

Examples:
    python tools/eval.py --dataset reasonseg --split val,test --root data/ReasonSeg --out runs/rs
    python tools/eval.py --dataset refcoco --split all --root data/refer_seg --workers 8 \
        --settings '{"models": {"llm": "openai:gpt-4o"}}'
    # on a Ray cluster, reusing twins built by `dtwin twins build` (reasoning only)
    python tools/eval.py --dataset reasonseg --split val --root data/ReasonSeg --engine ray \
        --address auto --twins runs/rs-twins
    # evaluate any other segmenter: a callable (image_path, query, **kw) -> object with .mask/.ids/.usage
    python tools/eval.py --dataset reasonseg --root data/ReasonSeg --segment-fn my_module:segment

Rerun the same command after an interruption: finished samples are read back from
OUT/results.jsonl and not segmented again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dtwin_agent.errors import DTwinError, InputError
from dtwin_agent.evaluation.runner import load_callable, run_eval


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--split", default="val", help="split, comma-separated splits, or 'all'")
    p.add_argument("--out", type=Path, default=None, help="results folder (default eval_out/DATASET)")
    p.add_argument("--workers", "--concurrency", type=int, default=None, help="threads or Ray actors")
    p.add_argument("--engine", default="local", help="local | ray (docs/scaling.md)")
    p.add_argument(
        "--address", default=None, help="ray: cluster to join (default $RAY_ADDRESS or a local Ray)"
    )
    p.add_argument("--twins", type=Path, default=None, help="twin shards to reason over (dtwin twins build)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--empty-rule", default="lisa", choices=["lisa", "strict"])
    p.add_argument("--retry-errors", action="store_true")
    p.add_argument("--method", default="DTwinSeger (dtwin-agent)")
    p.add_argument("--settings", default=None, help="JSON of setting overrides (nested or dotted keys)")
    p.add_argument("--config", type=Path, default=None, help="dtwin.toml")
    p.add_argument(
        "--segment-fn", default=None, help="MODULE:NAME or FILE.py:NAME (default dtwin_agent.api.segment)"
    )
    p.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option, e.g. split_by=google, image_dir=/data/coco/train2014",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        from dtwin_agent.outputs.files import check_out_dir

        out_dir = check_out_dir(args.out or Path("eval_out") / args.dataset.lower())
        segment_fn = load_callable(args.segment_fn) if args.segment_fn else None
        settings = None
        if segment_fn is None or args.settings or args.config:
            from dtwin_agent.config import resolve_settings

            overrides = json.loads(args.settings) if args.settings else None
            settings = resolve_settings(config_file=args.config, overrides=overrides)
        options = {}
        for item in args.dataset_option:
            key, sep, value = item.partition("=")
            if not sep:
                raise InputError(f"--dataset-option must be KEY=VALUE, got {item!r}")
            options[key] = {"true": True, "false": False}.get(value.lower(), value)
        report = run_eval(
            args.dataset,
            args.root,
            args.split,
            out_dir=out_dir,
            segment_fn=segment_fn,
            settings=settings,
            engine=args.engine,
            workers=args.workers,
            address=args.address,
            twins_dir=args.twins,
            limit=args.limit,
            empty_rule=args.empty_rule,
            retry_errors=args.retry_errors,
            method=args.method,
            dataset_options=options,
            progress=not args.no_progress,
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
    except KeyboardInterrupt:
        print(
            "interrupted: finished samples are saved; run the same command again to resume", file=sys.stderr
        )
        return 130
    print(report.markdown)
    print(f"written: {Path(report.results_path).parent / 'summary.md'} and summary.json")
    if report.n_unfinished:
        print(
            f"error: {report.n_unfinished} samples failed at the provider and are not scored "
            f"(first: {report.first_problem}); run the same command again to finish them",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``dtwin twins build``: the digital twin of every image of a dataset, in resumable twin shards.

Translates options into :func:`dtwin_agent.evaluation.twins.build_twins`. Exit codes: 0 success,
2 bad input or a setting that cannot work (one line), 1 any other failure or images left unfinished
by provider failures (rerun to finish them), 130 interrupted (rerun to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dtwin_agent.cli._common import (
    AddressOpt,
    EngineOpt,
    ImageDirOpt,
    RayCpusOpt,
    SplitByOpt,
    VlmConcurrencyOpt,
    fail,
    handle_errors,
)
from dtwin_agent.cli._common import out as _out
from dtwin_agent.cli.options import pipeline_options
from dtwin_agent.config import Settings

twins_app = typer.Typer(
    help="Digital twins at dataset scale (docs/scaling.md).", no_args_is_help=True, rich_markup_mode=None
)


@twins_app.command("build")
@handle_errors(interrupted="interrupted; finished twins are saved, run the same command again to resume")
@pipeline_options
def build(
    dataset: Annotated[
        str,
        typer.Argument(
            help="reasonseg | refcoco | refcoco+ | refcocog | llmseg40k | images (a plain folder)"
        ),
    ],
    root: Annotated[Path, typer.Option("--root", help="the dataset folder (docs/evaluation.md)")],
    out_dir: Annotated[str, typer.Option("--out", help="twin shards folder; reused to resume")],
    split: Annotated[
        str, typer.Option("--split", help="a split, comma-separated splits or 'all' (images: a subfolder)")
    ] = "all",
    engine: EngineOpt = "local",
    workers: Annotated[
        int | None, typer.Option("--workers", help="threads (local) or actors (ray; default one per GPU/CPU)")
    ] = None,
    address: AddressOpt = None,
    ray_cpus: RayCpusOpt = None,
    vlm_concurrency: VlmConcurrencyOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="at most N images")] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="build failed images again")] = False,
    split_by: SplitByOpt = None,
    image_dir: ImageDirOpt = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")] = True,
    *,
    settings: Settings,
) -> None:
    """Build the twin of every image of a dataset (rerun to resume).

    Twins go into sharded JSONL files under OUT.
    """
    from dtwin_agent.evaluation.twins import build_twins
    from dtwin_agent.outputs.files import check_out_dir

    out = check_out_dir(out_dir)
    options = {k: v for k, v in {"split_by": split_by, "image_dir": image_dir}.items() if v is not None}
    report = build_twins(
        dataset,
        root,
        split,
        out_dir=out,
        engine=engine,
        workers=workers,
        address=address,
        num_cpus=ray_cpus,
        settings=settings,
        vlm_concurrency=vlm_concurrency,
        limit=limit,
        retry_errors=retry_errors,
        dataset_options=options,
        progress=progress,
    )
    errors = ", ".join(f"{n} {kind}" for kind, n in sorted(report.errors.items())) or "none"
    _out.print(
        f"{report.n_twins} of {report.n_images} images have a twin in {report.out_dir} "
        f"({report.n_new} built now by {report.workers} {report.engine} workers "
        f"in {report.wall_seconds:.1f} s, "
        f"{report.images_per_minute:.1f} images/min); errors: {errors}",
        highlight=False,
        markup=False,
    )
    if report.first_error:
        _out.print(f"first error: {report.first_error}", highlight=False, markup=False)
    if report.errors.get("provider"):
        fail(
            f"{report.errors['provider']} images failed at the provider; "
            "run the same command again to build them",
            1,
        )

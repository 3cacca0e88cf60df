"""``dtwin eval``: translate options into :func:`dtwin_agent.evaluation.runner.run_eval`, nothing more.

Registered by :mod:`dtwin_agent.cli` as ``app.command("eval")(eval_command)``. Exit codes: 0 success,
2 bad input or a setting that cannot work (one line on stderr, found before the first sample),
1 any other failure or samples left unfinished by provider failures (rerun to finish them),
130 interrupted (rerun to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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


@handle_errors(interrupted="interrupted; finished samples are saved, run the same command again to resume")
@pipeline_options
def eval_command(
    dataset: Annotated[
        str, typer.Option("--dataset", help="reasonseg | refcoco | refcoco+ | refcocog | llmseg40k")
    ],
    root: Annotated[Path, typer.Option("--root", help="the dataset folder (docs/evaluation.md)")],
    split: Annotated[str, typer.Option("--split", help="a split, comma-separated splits, or 'all'")] = "val",
    out_dir: Annotated[
        str | None, typer.Option("--out", help="results folder (default eval_out/DATASET); reused to resume")
    ] = None,
    engine: EngineOpt = "local",
    workers: Annotated[
        int | None,
        typer.Option("--workers", "--concurrency", help="samples segmented at once (threads or Ray actors)"),
    ] = None,
    address: AddressOpt = None,
    ray_cpus: RayCpusOpt = None,
    twins: Annotated[
        Path | None,
        typer.Option(
            "--twins", help="twin shards from `dtwin twins build`: reuse them, run the reasoning only"
        ),
    ] = None,
    vlm_concurrency: VlmConcurrencyOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="at most N samples per split")] = None,
    empty_rule: Annotated[
        str, typer.Option("--empty-rule", help="lisa: empty prediction on empty truth scores 1; strict: 0")
    ] = "lisa",
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="segment failed samples again")
    ] = False,
    method: Annotated[
        str, typer.Option("--method", help="row label of the table")
    ] = "DTwinSeger (dtwin-agent)",
    split_by: SplitByOpt = None,
    image_dir: ImageDirOpt = None,
    all_queries: Annotated[
        bool, typer.Option("--all-queries", help="ReasonSeg: every text entry, not only the first")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")] = True,
    *,
    settings: Settings,
) -> None:
    """Evaluate on a benchmark (gIoU / cIoU); rerun to resume.

    Prints the table in the paper's Table 1 layout.
    """
    from dtwin_agent.evaluation.runner import rich_table, run_eval
    from dtwin_agent.outputs.files import check_out_dir

    out_dir = check_out_dir(Path("eval_out") / dataset.lower() if out_dir is None else out_dir)
    options: dict[str, Any] = {}
    if split_by is not None:
        options["split_by"] = split_by
    if image_dir is not None:
        options["image_dir"] = image_dir
    if all_queries:
        options["all_queries"] = True
    report = run_eval(
        dataset,
        root,
        split,
        out_dir=out_dir,
        settings=settings,
        engine=engine,
        workers=workers,
        address=address,
        num_cpus=ray_cpus,
        twins_dir=twins,
        vlm_concurrency=vlm_concurrency,
        limit=limit,
        empty_rule=empty_rule,  # type: ignore[arg-type]
        retry_errors=retry_errors,
        method=method,
        dataset_options=options,
        progress=progress,
    )
    _out.print(rich_table(report))
    _out.print(
        f"{report.n_samples} samples ({report.n_new} new, {report.n_errors} errors, {report.n_bad} bad, "
        f"{report.n_unfinished} unfinished); table: {Path(report.results_path).parent / 'summary.md'}",
        highlight=False,
    )
    if report.n_bad:
        _out.print(
            f"{report.n_bad} bad samples (annotation or image unreadable) are not scored; "
            f"first: {report.first_problem}",
            highlight=False,
            markup=False,
        )
    if report.n_unfinished:
        fail(
            f"{report.n_unfinished} samples failed at the provider and are not scored "
            f"(first: {report.first_problem}); run the same command again to finish them",
            1,
        )

"""``dtwin twin`` and ``dtwin segment``: options in, library calls out, nothing more.

They call :func:`~dtwin_agent.api.build_twin` and :func:`~dtwin_agent.api.segment`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dtwin_agent.cli._common import (
    BaseUrlOpt,
    CheckpointOpt,
    ConfigOpt,
    DeviceOpt,
    GranularityOpt,
    LlmOpt,
    ModelTypeOpt,
    PointsOpt,
    ProposerOpt,
    VlmOpt,
    err,
    handle_errors,
    out,
    settings_from_cli,
)
from dtwin_agent.outputs.progress import ProgressDisplay


def usage_table(usage: dict[str, Any]) -> Table:
    """A rich table of per-stage usage."""
    table = Table(title="usage")
    for col in ("stage", "calls", "retries", "input tokens", "output tokens", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, row in (usage.get("stages") or {}).items():
        table.add_row(
            stage,
            str(row.get("calls", 0)),
            str(row.get("retries", 0)),
            str(row.get("input_tokens", 0)),
            str(row.get("output_tokens", 0)),
            f"{row.get('seconds', 0.0):.2f}",
        )
    return table


@handle_errors
def twin(
    image: Annotated[Path, typer.Argument(help="image file")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("out"),
    query: Annotated[str | None, typer.Option("--query", help="optional query guiding granularity")] = None,
    config: ConfigOpt = None,
    vlm: VlmOpt = None,
    llm: LlmOpt = None,
    proposer: ProposerOpt = None,
    sam_checkpoint: CheckpointOpt = None,
    sam_model_type: ModelTypeOpt = None,
    points_per_side: PointsOpt = None,
    granularity: GranularityOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Build the digital twin of IMAGE: writes OUT/twin.json and OUT/overlay.png."""
    from dtwin_agent.api import build_twin
    from dtwin_agent.images import load_image
    from dtwin_agent.outputs.files import check_out_dir, write_twin_outputs

    check_out_dir(out_dir)

    settings = settings_from_cli(
        config,
        vlm=vlm,
        llm=llm,
        proposer=proposer,
        sam_checkpoint=sam_checkpoint,
        sam_model_type=sam_model_type,
        points_per_side=points_per_side,
        granularity=granularity,
        device=device,
    )
    rgb = load_image(image).rgb
    with ProgressDisplay(err) as show:
        result = build_twin(image, query, settings=settings, on_progress=show)
    paths = write_twin_outputs(out_dir, result, rgb)
    out.print(f"{len(result.objects)} objects ({result.granularity} level)")
    for name, path in paths.items():
        out.print(f"{name}: {path}")


@handle_errors
def segment(
    image: Annotated[Path, typer.Argument(help="image file")],
    query: Annotated[str, typer.Argument(help="what to segment, e.g. 'what would you cut bread with?'")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("out"),
    config: ConfigOpt = None,
    vlm: VlmOpt = None,
    llm: LlmOpt = None,
    base_url: BaseUrlOpt = None,
    proposer: ProposerOpt = None,
    sam_checkpoint: CheckpointOpt = None,
    sam_model_type: ModelTypeOpt = None,
    points_per_side: PointsOpt = None,
    granularity: GranularityOpt = None,
    device: DeviceOpt = None,
    mode: Annotated[str | None, typer.Option("--mode", help="refine | single_shot | sftdt")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="refinement step limit")] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="brainstorm | direct | in_context")
    ] = None,
) -> None:
    """Segment what QUERY asks for in IMAGE: writes OUT/mask.png, OUT/overlay.png, OUT/result.json."""
    from dtwin_agent.api import segment as run_segment
    from dtwin_agent.images import load_image
    from dtwin_agent.outputs.files import check_out_dir, write_segment_outputs

    check_out_dir(out_dir)

    settings = settings_from_cli(
        config,
        vlm=vlm,
        llm=llm,
        base_url=base_url,
        proposer=proposer,
        sam_checkpoint=sam_checkpoint,
        sam_model_type=sam_model_type,
        points_per_side=points_per_side,
        granularity=granularity,
        device=device,
        mode=mode,
        max_steps=max_steps,
        strategy=strategy,
    )
    rgb = load_image(image).rgb
    with ProgressDisplay(err) as show:
        result = run_segment(image, query, settings=settings, on_progress=show)
    paths = write_segment_outputs(out_dir, result, rgb)
    for warning in result.warnings:
        err.print(f"[yellow]warning[/] {warning}", highlight=False)
    err.print(usage_table(result.usage))
    err.print("components: " + "; ".join(f"{k}={v}" for k, v in result.components.items()), highlight=False)
    out.print(result.message)
    for name, path in paths.items():
        out.print(f"{name}: {path}")

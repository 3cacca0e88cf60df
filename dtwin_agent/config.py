"""Settings: every provider string, threshold and budget, resolved in one place.

Precedence (highest first): per-run override > CLI flag > environment (``DTWIN_*``) >
``dtwin.toml`` > defaults. :func:`resolve_settings` is the only place that applies it.

Environment variables: ``DTWIN_<SECTION>__<FIELD>`` (e.g. ``DTWIN_PERCEPTION__POINTS_PER_SIDE=16``),
plus the shortcuts ``DTWIN_VLM``, ``DTWIN_LLM``, ``DTWIN_BASE_URL``, ``DTWIN_API_KEY`` and
``DTWIN_CONFIG`` (path of the TOML file). Provider keys (``OPENAI_API_KEY``...) are read by the
provider packages themselves.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dtwin_agent.errors import ConfigError

OFFLINE = "offline"
LEXICAL = "offline:lexical"
"""The keyword reasoner (``models.llm``): matches words, not an LLM."""


def is_offline(spec: object) -> bool:
    """True when a model setting names the embedded offline profile (or nothing)."""
    return spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", OFFLINE))


def model_name(spec: object, settings: Settings | None = None) -> str:
    """A short printable name of a model setting; ``"offline"`` says what it resolves to here."""
    lexical = f"{LEXICAL} (keyword matcher, not an LLM)"
    if isinstance(spec, str) and spec.strip().lower() == LEXICAL:
        return lexical
    if is_offline(spec):
        from dtwin_agent.offline.profile import offline_llm_name

        local = offline_llm_name(settings) if settings is not None else None
        return f"local:{local} (offline profile)" if local else lexical
    if isinstance(spec, str):
        return spec
    return getattr(spec, "model_name", None) or getattr(spec, "model", None) or type(spec).__name__


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Section):
    """Which chat models play the VLM and the LLM, and how to reach them.

    ``vlm`` / ``llm`` are ``"provider:model"`` strings for ``init_chat_model`` (``openai:gpt-4o``,
    ``anthropic:claude-sonnet-4-5``, ``ollama:qwen2.5vl``...), ``"offline"`` for the embedded
    no-network components, or a LangChain chat model instance passed in code.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    vlm: Any = Field(default=OFFLINE, description="VLM for granularity and semantics")
    llm: Any = Field(default=OFFLINE, description="LLM for refinement")
    vlm_base_url: str | None = None
    vlm_api_key: str | None = None
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    models_dir: str | None = Field(
        default=None, description="model store folder (default $DTWIN_MODELS_DIR, else ~/.cache/dtwin/models)"
    )
    temperature: float = 0.0
    timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="a remote provider's answer must arrive within this many seconds (per attempt)",
    )
    max_retries: int = Field(default=3, ge=0, description="retries on rate limits, timeouts and 5xx")
    backoff_s: float = Field(
        default=1.0, ge=0, description="first retry delay; doubles each time, plus up to this much jitter"
    )
    retry_budget_s: float = Field(
        default=150.0,
        gt=0,
        description="a retry starts only if it can end (timeout_s) within this many seconds of the first try",
    )
    local_stall_s: float = Field(
        default=90.0,
        gt=0,
        description="the local LLM server (streamed; it sends a heartbeat every 30 s while it reads a "
        "prompt) has stalled when nothing arrives for this many seconds",
    )
    structured_output: Literal["auto", "native", "json_schema", "function_calling", "json_mode", "prompt"] = (
        Field(
            default="auto",
            description="how answers are constrained: the provider's structured output (native: its "
            "default method; or json_schema / function_calling / json_mode), or prompt (JSON asked in "
            "the prompt, parsed from the text); auto: native where the model supports it, else prompt",
        )
    )


class PerceptionSettings(_Section):
    """Mask proposal (paper 3.1). Defaults follow the authors' public code."""

    proposer: str = Field(default="auto", description="auto | sam | offline | a registered name")
    sam_model_type: Literal["vit_h", "vit_l", "vit_b", "vit_t"] = "vit_h"
    sam_checkpoint: str | None = Field(
        default=None,
        description="a SAM checkpoint: a file path or a model-store name (sam_vit_h, mobile_sam...)",
    )
    device: str = Field(default="auto", description="auto (CUDA when present) | cpu | cuda | cuda:N")
    points_per_side: int = Field(default=32, ge=1)
    prompts: Literal["auto", "grid", "objects"] = Field(
        default="auto",
        description=(
            "grid: points_per_side^2 points; objects: one per offline colour region + a coarse grid; "
            "auto: objects on a CPU, grid on CUDA"
        ),
    )
    prompt_coarse_side: int = Field(
        default=8, ge=0, description="coarse grid side of the object-aware prompts"
    )
    points_per_batch: int | Literal["auto"] = Field(
        default="auto",
        description="prompts per decoder call; auto: 16 on a CPU (cache-sized), 1024 on CUDA (halved on OOM)",
    )
    decoder: Literal["fast", "exact"] = Field(
        default="fast",
        description="fast: per-image work once, low-rank attention (same masks, IoU >= 0.98); "
        "exact: segment-anything's own decoder (bit-identical)",
    )
    precision: Literal["fp32", "auto", "bf16"] = Field(
        default="fp32",
        description="fast decoder products: fp32 (same masks); bf16 / auto (bf16 on CPUs with AMX or "
        "AVX512-BF16) is faster but drops some masks near the thresholds",
    )
    reuse_memory: bool = Field(
        default=True,
        description="on a CPU with glibc, keep freed tensor memory in the heap between decoder batches "
        "(same masks, far less system time); process-wide while SAM proposes, given back after",
    )
    pred_iou_thresh: float = Field(
        default=0.88, ge=0, le=1, description="theta: drop masks with predicted IoU <= theta"
    )
    stability_score_thresh: float = Field(default=0.95, ge=0, le=1)
    box_nms_thresh: float = Field(default=0.7, ge=0, le=1)
    min_mask_region_area: int = Field(default=0, ge=0)
    part_iou_thresh: float = Field(default=0.85, ge=0, le=1, description="tau: part-level pairwise IoU")
    containment_thresh: float = Field(default=0.8, ge=0, le=1, description="tau': object-level Eq. 3")
    growth_cover: float = Field(
        default=0.9, ge=0, le=1, description="a re-prompted mask must cover this share of the original"
    )
    growth_border_max: float = Field(
        default=0.25, ge=0, le=1, description="largest share of the image border a re-prompted mask may add"
    )
    union_cover: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="a mask this much covered by two or more smaller masks is a group, not an object",
    )
    scene_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="a mask covering this share of the image (scene, floor, wall) never swallows others",
    )
    policy: Literal["granularity", "sam_only"] = Field(
        default="granularity", description="sam_only: exactly SamAutomaticMaskGenerator's masks"
    )
    max_image_side: int = Field(
        default=1024, ge=64, description="images are downscaled to this for proposals"
    )
    max_objects: int = Field(default=200, ge=1, description="keep at most this many objects (largest first)")
    min_area_pct: float = Field(
        default=0.05, ge=0, le=100, description="drop objects smaller than this % of the image"
    )
    granularity: Literal["auto", "group", "object", "part", "hierarchy"] = Field(
        default="hierarchy",
        description="auto: the VLM chooses (paper Eq. 1); hierarchy: objects and their parts in one twin",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        """Checked with the settings (exit 2 before any work), not when SAM is first built."""
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"{value!r} is not a device: auto | cpu | cuda | cuda:N")
        return value


class SpatialSettings(_Section):
    """The spatial layer (paper 3.2)."""

    max_relations: int = Field(
        default=3, ge=0, description="k: at most this many relations per object (the most salient first)"
    )
    near_fraction: float = Field(default=0.05, ge=0, description="'near': gap <= this x image diagonal")


class SemanticSettings(_Section):
    """Semantic assignment (paper Eq. 4)."""

    strategy: Literal["brainstorm", "direct", "in_context"] = "brainstorm"
    examples_file: str | None = Field(default=None, description="few-shot examples for in_context")
    batch_size: int = Field(default=1, ge=1, description="masks labelled per VLM call")
    classifier: str = Field(
        default="auto",
        description="offline labeller's classifier: auto (efficientnet_lite0 when fetched) | none | "
        "efficientnet_lite0 | efficientnet_lite2",
    )
    concurrency: int = Field(default=4, ge=1)
    crop_padding: float = Field(default=0.15, ge=0, description="padding around the bbox, as a fraction")
    image_max_side: int = Field(
        default=768, ge=64, description="images sent to the VLM are at most this large"
    )


class ReasoningSettings(_Section):
    """Refinement (paper Eqs. 6-9)."""

    mode: Literal["refine", "single_shot", "sftdt"] = Field(
        default="refine",
        description="refine: one step per call (Eqs. 7-8); single_shot: the ids at once (Eq. 6); "
        "sftdt: the whole path in one answer, with the messages Seg-DT records train on (Eq. 9)",
    )
    max_refine_steps: int = Field(default=4, ge=1)
    max_query_chars: int = Field(default=4000, ge=1)
    prefilter: bool = Field(
        default=True,
        description="show the LLM the deterministic keyword/rank pre-filter's candidates, which it may "
        "override (dtwin_agent.reasoning.prefilter)",
    )
    restate: bool = Field(
        default=True,
        description="when the request's own words give the pre-filter nothing to match at step 1, ask "
        'the LLM once for the request in plain words ("blue shape", "knife"), shown to it and matched '
        "by the pre-filter (dtwin_agent.reasoning.llm; benchmarks/local_llm.py measured it)",
    )
    samples: int = Field(
        default=1,
        ge=1,
        le=9,
        description="self-consistency: answers asked per step (the first greedy, the rest sampled); "
        "the most frequent id set wins",
    )
    sample_temperature: float = Field(default=0.7, ge=0, le=2, description="temperature of samples 2..k")


class CacheSettings(_Section):
    """Where twins and model answers are cached."""

    dir: str = Field(default_factory=lambda: str(Path.home() / ".cache" / "dtwin"))
    enabled: bool = True
    max_mb: float = Field(default=512.0, gt=0)


class AccessSettings(_Section):
    """Which image files the front doors for other programs may read.

    ``DTwinSegmentTool``, the MCP server (``dtwin mcp``, whose ``--root`` adds folders) and the
    LangGraph server graphs (``langgraph.json``; read from the server's own environment or
    ``dtwin.toml`` when the graph is loaded, never from a run's context) read images only under
    these folders; with none they read no image at all. The Python API and the CLI read what they
    are given.
    """

    image_roots: list[str] = Field(
        default_factory=list,
        description="allowed image folders; in the environment DTWIN_ACCESS__IMAGE_ROOTS, separated by "
        f"{os.pathsep!r}",
    )
    max_file_mb: float = Field(default=50.0, gt=0, description="larger image files are refused")

    @field_validator("image_roots", mode="before")
    @classmethod
    def _split_paths(cls, v: Any) -> Any:
        if isinstance(v, str):  # from the environment: folders separated like PATH
            return [part for part in v.split(os.pathsep) if part.strip()]
        return v


class Settings(_Section):
    """All settings of a run. Build with :func:`resolve_settings`, or directly in code."""

    models: ModelSettings = Field(default_factory=ModelSettings)
    perception: PerceptionSettings = Field(default_factory=PerceptionSettings)
    spatial: SpatialSettings = Field(default_factory=SpatialSettings)
    semantics: SemanticSettings = Field(default_factory=SemanticSettings)
    reasoning: ReasoningSettings = Field(default_factory=ReasoningSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)

    @field_validator("*", mode="before")
    @classmethod
    def _none_is_default(cls, v: Any) -> Any:
        return {} if v is None else v

    def merged(self, overrides: Mapping[str, Any] | None) -> Settings:
        """A copy with ``overrides`` (nested dict or dotted keys) applied on top."""
        if not overrides:
            return self
        base = self.model_dump(mode="python")
        return _validate(_deep_merge(base, _nest(overrides)), "override")


_SHORTCUTS = {
    "DTWIN_VLM": ("models", "vlm"),
    "DTWIN_LLM": ("models", "llm"),
    "DTWIN_BASE_URL": ("models", "llm_base_url"),
    "DTWIN_API_KEY": ("models", "llm_api_key"),
    "DTWIN_VLM_BASE_URL": ("models", "vlm_base_url"),
    "DTWIN_VLM_API_KEY": ("models", "vlm_api_key"),
    "DTWIN_CACHE_DIR": ("cache", "dir"),
    "DTWIN_MODELS_DIR": ("models", "models_dir"),
}


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"perception.points_per_side": 8}`` into nested dicts; nested input passes through."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = _deep_merge(node[parts[-1]], dict(value))
        else:
            node[parts[-1]] = dict(value) if isinstance(value, Mapping) else value
    return out


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings named by ``DTWIN_*`` environment variables, as a nested dict."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if name in _SHORTCUTS:
            section, field = _SHORTCUTS[name]
            out.setdefault(section, {})[field] = value
        elif name.startswith("DTWIN_") and "__" in name:
            section, _, field = name[len("DTWIN_") :].lower().partition("__")
            out.setdefault(section, {})[field] = value
    return out


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``dtwin.toml`` file.

    Raises:
        ConfigError: if it cannot be read or parsed.
    """
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except ValueError as exc:  # a NUL byte in the path
        raise ConfigError(f"config file path {os.fspath(path)!r} is not usable: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc


def _validate(data: dict[str, Any], origin: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid setting {where} (from {origin}): {err['msg']}") from exc


def resolve_settings(
    *,
    config_file: str | os.PathLike | None = None,
    cli: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings: overrides > cli > environment > TOML file > defaults.

    Args:
        config_file: a TOML file; default ``$DTWIN_CONFIG``, else ``./dtwin.toml`` if it exists.
        cli: values from command-line flags (nested or dotted keys; ``None`` values are ignored).
        overrides: per-run values (nested or dotted keys).
        environ: the environment to read (default ``os.environ``).

    Raises:
        ConfigError: naming the invalid setting and where it came from.
    """
    environ = os.environ if environ is None else environ
    path = config_file or environ.get("DTWIN_CONFIG")
    if path is None and Path("dtwin.toml").is_file():
        path = "dtwin.toml"
    data: dict[str, Any] = {}
    layers = [
        (load_toml(path) if path else {}, f"config file {path}"),
        (env_settings(environ), "environment"),
        (_nest({k: v for k, v in (cli or {}).items() if v is not None}), "command line"),
        (_nest(overrides or {}), "override"),
    ]
    for layer, origin in layers:
        data = _deep_merge(data, layer)
        _validate(data, origin)  # name the layer that introduced a bad value
    return _validate(data, "settings")

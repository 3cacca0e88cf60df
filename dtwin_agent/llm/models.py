"""Model settings -> LangChain chat models.

``models.vlm`` / ``models.llm`` hold a ``"provider:model"`` string for ``init_chat_model``
(``openai:gpt-4o``, ``anthropic:claude-sonnet-4-5``, ``ollama:qwen2.5vl``...), ``"offline"`` for
the embedded components, or a chat model instance. Any OpenAI-compatible server (vLLM, llama.cpp,
LM Studio, a fine-tuned model) is ``openai:<model>`` plus ``*_base_url``. The clients' own
retries are off (``max_retries=0``): :mod:`dtwin_agent.llm.retry` retries with LangChain's
``with_retry`` and counts every attempt, so no request is re-sent unseen.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import Any, Literal

from langchain_core.language_models.chat_models import BaseChatModel

from dtwin_agent.config import LEXICAL, OFFLINE, Settings
from dtwin_agent.errors import ConfigError

Role = Literal["vlm", "llm"]

#: Environment variable holding each provider's API key.
API_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "azure_openai": "AZURE_OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google_genai": "GOOGLE_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistralai": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "together": "TOGETHER_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "perplexity": "PPLX_API_KEY",
    "cohere": "COHERE_API_KEY",
    "upstage": "UPSTAGE_API_KEY",
    "nvidia": "NVIDIA_API_KEY",
}

#: Placeholder key for OpenAI-compatible servers that need none (local vLLM, llama.cpp, LM Studio).
NO_KEY = "not-needed"

_CACHE: dict[tuple[Any, ...], BaseChatModel] = {}
_CACHE_LOCK = threading.Lock()
_MAX_CACHED = 32


def _known_providers() -> dict[str, str]:
    """Provider name -> the pip package of its integration, as ``init_chat_model`` knows them."""
    try:
        from langchain.chat_models.base import _BUILTIN_PROVIDERS  # private: fall back if it moves
    except ImportError:  # pragma: no cover - depends on the installed langchain
        return {}
    return {name: entry[0].split(".")[0].replace("_", "-") for name, entry in _BUILTIN_PROVIDERS.items()}


def split_spec(spec: str, setting: str = "models.llm") -> tuple[str, str]:
    """``"openai:gpt-4o"`` -> ``("openai", "gpt-4o")``; the model part may hold more colons.

    Raises:
        ConfigError: when the provider or the model is missing.

    """
    provider, sep, model = spec.strip().partition(":")
    provider = provider.strip().lower().replace("-", "_")
    if not sep or not provider or not model.strip() or not re.fullmatch(r"[a-z0-9_]+", provider):
        raise ConfigError(
            f"{setting} = {spec!r} names no provider; use 'provider:model' "
            f"(e.g. 'openai:gpt-4o', 'anthropic:claude-sonnet-4-5', 'ollama:qwen2.5vl') or '{OFFLINE}'"
        )
    return provider, model.strip()


def _kwargs(provider: str, base_url: str | None, api_key: str | None, settings: Settings) -> dict[str, Any]:
    models = settings.models
    kwargs: dict[str, Any] = {"temperature": models.temperature}
    if provider == "ollama":  # ChatOllama has no timeout / max_retries fields
        kwargs["client_kwargs"] = {"timeout": models.timeout_s}
    else:
        kwargs |= {"timeout": models.timeout_s, "max_retries": 0}
    if base_url:
        kwargs["base_url"] = base_url
    if api_key:
        kwargs["api_key"] = api_key
    elif provider == "openai" and base_url and not os.environ.get("OPENAI_API_KEY"):
        kwargs["api_key"] = NO_KEY  # local OpenAI-compatible servers accept any key
    return kwargs


def _looks_like_missing_key(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("api_key", "api key", "apikey", "credentials", "auth token"))


def _build(
    role: Role, spec: str, base_url: str | None, api_key: str | None, settings: Settings
) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    setting = f"models.{role}"
    provider, model = split_spec(spec, setting)
    packages = _known_providers()
    if packages and provider not in packages:
        raise ConfigError(
            f"{setting} = {spec!r}: unknown provider {provider!r}; known: {', '.join(sorted(packages))}"
        )
    try:
        kwargs = _kwargs(provider, base_url, api_key, settings)
        return init_chat_model(model, model_provider=provider, **kwargs)
    except ImportError as exc:
        match = re.search(r"pip install ([A-Za-z0-9_.\-\[\]]+)", str(exc))
        default = f"langchain-{provider.replace('_', '-')}"
        package = match.group(1) if match else packages.get(provider, default)
        raise ConfigError(f"{setting} = {spec!r} needs the {package} package: pip install {package}") from exc
    except Exception as exc:
        if _looks_like_missing_key(exc):
            env = API_KEY_ENV.get(provider, f"{provider.upper()}_API_KEY")
            raise ConfigError(
                f"{setting} = {spec!r} has no API key: set {env} or models.{role}_api_key"
                + (" (DTWIN_API_KEY)" if role == "llm" else " (DTWIN_VLM_API_KEY)")
            ) from exc
        raise ConfigError(f"{setting} = {spec!r} could not be built: {type(exc).__name__}: {exc}") from exc


def _no_chat_model(role: Role, spec: str) -> ConfigError:
    """The error for an offline setting that stands for no chat model on this machine."""
    if role == "vlm":
        what = "the offline labeller and text-only granularity, not a chat model"
    elif spec.strip().lower() == LEXICAL:
        what = "the keyword reasoner, not a chat model (dtwin_agent.reasoning.get_reasoner gives it)"
    else:
        what = (
            f"the keyword reasoner {LEXICAL} here, not a chat model: the local LLM is not fetched "
            "(dtwin models fetch --offline-profile)"
        )
    return ConfigError(f"models.{role} = {spec!r} stands for {what}")


def _digest(secret: str | None) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else ""


def _local(name: str, settings: Settings) -> BaseChatModel:
    """A local GGUF model served by llama.cpp on 127.0.0.1, behind ChatOpenAI (started on first use)."""
    from dtwin_agent.offline.local_llm import local_chat_model

    return local_chat_model(name, settings, max_tokens=1024)


def chat_model(role: Role, settings: Settings) -> BaseChatModel:
    """The chat model playing ``role`` (``"vlm"`` or ``"llm"``) under ``settings``.

    A chat model instance in the settings is returned as is; ``"offline"`` (or an empty value)
    gives the offline profile's LLM when it is fetched (the local Qwen model, see
    :mod:`dtwin_agent.offline.profile`); ``"local:NAME"`` a model of the store served on
    127.0.0.1; a ``"provider:model"`` string is built with
    ``init_chat_model`` (``base_url``, ``api_key``, ``temperature``, ``timeout``; provider
    retries off) and cached per role, spec, base URL, key and sampling settings. An ``openai:``
    model with a ``base_url`` and no key anywhere gets a placeholder key, as local servers need none.

    Raises:
        ConfigError: one line naming the setting, when it stands for no chat model here
            (``"offline"`` without the fetched local LLM, ``"offline:lexical"``: reasoners come
            from :func:`dtwin_agent.reasoning.get_reasoner`), the spec has no provider, the provider is
            unknown, its integration package is missing (with the ``pip install`` to run) or its
            API key is missing (with the environment variable to set).

    """
    spec = getattr(settings.models, role)
    if isinstance(spec, BaseChatModel):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", OFFLINE, LEXICAL)):
        from dtwin_agent.offline.profile import offline_llm_name

        offline = (spec or "").strip().lower() == OFFLINE or not spec
        local = offline_llm_name(settings) if role == "llm" and offline else None
        if local:
            return _local(local, settings)
        raise _no_chat_model(role, spec or "")
    if isinstance(spec, str) and spec.strip().lower().startswith("local:"):
        return _local(spec.strip()[len("local:") :], settings)
    if not isinstance(spec, str):
        raise ConfigError(
            f"models.{role} must be a 'provider:model' string or a LangChain chat model, "
            f"not {type(spec).__name__}"
        )
    base_url = getattr(settings.models, f"{role}_base_url")
    api_key = getattr(settings.models, f"{role}_api_key")
    provider = spec.strip().partition(":")[0].strip().lower().replace("-", "_")
    env_key = os.environ.get(API_KEY_ENV.get(provider, ""), "")
    models = settings.models
    key = (
        role,
        spec.strip(),
        base_url,
        _digest(api_key),
        _digest(env_key),
        models.temperature,
        models.timeout_s,
    )
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    built = _build(role, spec, base_url, api_key, settings)
    with _CACHE_LOCK:
        if len(_CACHE) >= _MAX_CACHED:
            _CACHE.pop(next(iter(_CACHE)))
        return _CACHE.setdefault(key, built)


def clear_model_cache() -> None:
    """Forget every model built by :func:`chat_model` (tests, key rotation)."""
    with _CACHE_LOCK:
        _CACHE.clear()

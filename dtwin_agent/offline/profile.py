"""The offline profile: what ``"offline"`` and ``"auto"`` settings stand for on this machine.

With nothing configured, dtwin-agent runs on what is installed and fetched locally, best first:

- proposer ``auto``: SAM when ``perception.sam_checkpoint`` is set; else MobileSAM when its
  weights are fetched (``dtwin models fetch mobile_sam``) and ``mobile_sam`` is installed; else
  the weight-free offline proposer;
- LLM ``offline``: Qwen2.5-Coder-1.5B-Instruct (GGUF) on a local llama.cpp server when fetched
  and ``xllamacpp`` is installed; else the keyword matcher :class:`~dtwin_agent.offline.lexical.OfflineLLM`;
- VLM ``offline``: the offline labeller (with the ImageNet classifier when fetched).

``dtwin models fetch --offline-profile`` fetches everything the profile can use.
"""

from __future__ import annotations

import importlib.util
from typing import Any

LOCAL_LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m"
MOBILE_SAM = "mobile_sam"


def _fetched(name: str, settings: Any) -> bool:
    from dtwin_agent.weights import store

    return store.is_fetched(store.MODELS[name], store.models_dir(settings))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def offline_llm_name(settings: Any) -> str | None:
    """The local LLM the offline profile uses, or None when only the keyword matcher is available."""
    return LOCAL_LLM if _installed("xllamacpp") and _fetched(LOCAL_LLM, settings) else None


def mobile_sam_available(settings: Any) -> bool:
    """True when MobileSAM's code is installed and its weights are fetched."""
    return _installed("mobile_sam") and _fetched(MOBILE_SAM, settings)

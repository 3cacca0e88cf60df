"""Mask proposers behind one protocol, found by name in a registry (like ``sam_model_registry``).

Proposers register themselves with :func:`register_proposer`; :func:`get_proposer` resolves a
name from settings. ``auto`` means SAM when a checkpoint is configured, else the offline proposer.
Backends are imported lazily so optional dependencies load only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from dtwin_agent.config import Settings
from dtwin_agent.errors import ConfigError
from dtwin_agent.perception.base import MaskProposer, Proposal

__all__ = ["MaskProposer", "Proposal", "get_proposer", "register_proposer", "PROPOSERS"]

ProposerFactory = Callable[[Settings], MaskProposer]
PROPOSERS: dict[str, ProposerFactory] = {}
# name -> module that registers it on import (lazy: torch/segment-anything load only when asked for)
_BUILTIN_MODULES = {
    "sam": "dtwin_agent.perception.sam",
    "offline": "dtwin_agent.perception.offline",
}


def register_proposer(name: str) -> Callable[[ProposerFactory], ProposerFactory]:
    """Decorator registering a factory ``Settings -> MaskProposer`` under ``name``."""

    def deco(factory: ProposerFactory) -> ProposerFactory:
        PROPOSERS[name] = factory
        return factory

    return deco


def resolve_settings_for_proposer(settings: Settings) -> Settings:
    """Settings with ``auto`` and model-store names resolved (see :mod:`dtwin_agent.offline.profile`).

    ``auto`` becomes ``sam`` when a checkpoint is set, else ``sam`` with MobileSAM (``vit_t``) when
    it is fetched and installed, else ``offline``. A checkpoint given as a store name
    (``sam_vit_h``, ``mobile_sam``...) becomes its verified file, with the matching model type.
    For SAM, ``prompts = "auto"`` becomes ``grid`` or ``objects`` for the device
    (:func:`~dtwin_agent.perception.prompts.resolve_prompts`): the twin cache key and a resumed
    twin build see which prompts built a twin.
    """
    from dtwin_agent.offline.profile import MOBILE_SAM, mobile_sam_available
    from dtwin_agent.weights import store

    perception = settings.perception
    update: dict[str, object] = {}
    name, checkpoint = perception.proposer, perception.sam_checkpoint
    if name == "auto":
        if checkpoint:
            name = "sam"
        elif mobile_sam_available(settings):
            name, checkpoint = "sam", MOBILE_SAM
        else:
            name = "offline"
        update["perception.proposer"] = name
    if name == "sam" and checkpoint and checkpoint in store.MODELS:
        spec = store.MODELS[checkpoint]
        update["perception.sam_checkpoint"] = str(store.resolve_model(checkpoint, settings))
        update["perception.sam_model_type"] = spec.extra.get("sam_model_type", perception.sam_model_type)
    if name == "sam" and perception.prompts == "auto":  # the twin differs: cache keys must say which
        from dtwin_agent.perception.prompts import resolve_prompts

        on_cuda = _on_cuda(perception.device)
        update["perception.prompts"] = resolve_prompts("auto", on_cuda, perception.policy)
    return settings.merged(update) if update else settings


def _on_cuda(device: str) -> bool:
    """Whether SAM will run on CUDA for ``perception.device`` (``auto``: when torch sees a GPU)."""
    if device != "auto":
        return device.startswith("cuda")
    import torch  # only here: a SAM proposer imports it anyway

    return bool(torch.cuda.is_available())


def resolve_proposer_name(settings: Settings) -> str:
    """The proposer ``settings`` stand for, ``auto`` resolved."""
    return resolve_settings_for_proposer(settings).perception.proposer


def get_proposer(settings: Settings) -> MaskProposer:
    """Build the proposer named by ``settings.perception.proposer``.

    Raises:
        ConfigError: for an unknown name.
    """
    settings = resolve_settings_for_proposer(settings)
    name = settings.perception.proposer
    if name not in PROPOSERS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in PROPOSERS:
        known = ["auto", *sorted(set(PROPOSERS) | set(_BUILTIN_MODULES))]
        raise ConfigError(f"unknown perception.proposer {name!r}; known: {', '.join(known)}")
    return PROPOSERS[name](settings)

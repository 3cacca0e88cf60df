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


def resolve_proposer_name(settings: Settings) -> str:
    """The proposer ``auto`` stands for: ``sam`` when a checkpoint is set, else ``offline``."""
    name = settings.perception.proposer
    if name == "auto":
        return "sam" if settings.perception.sam_checkpoint else "offline"
    return name


def get_proposer(settings: Settings) -> MaskProposer:
    """Build the proposer named by ``settings.perception.proposer``.

    Raises:
        ConfigError: for an unknown name.
    """
    name = resolve_proposer_name(settings)
    if name not in PROPOSERS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in PROPOSERS:
        known = sorted(set(PROPOSERS) | set(_BUILTIN_MODULES))
        raise ConfigError(f"unknown perception.proposer {name!r}; known: {', '.join(known)}")
    return PROPOSERS[name](settings)

"""The timm stand-in: the four helpers MobileSAM's ``modeling/tiny_vit_sam.py`` imports, nothing else.

``from timm.models.layers import DropPath, to_2tuple, trunc_normal_`` and
``from timm.models.registry import register_model``. They follow timm's code: stochastic depth
(identity in eval mode or at rate 0), ``_ntuple(2)``, ``torch.nn.init.trunc_normal_`` (what timm's
``trunc_normal_`` computes, same signature and defaults) and a name -> model-function registry.
Why a stand-in at all: see :mod:`dtwin_agent._compat`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["DropPath", "drop_path", "register_model", "to_2tuple", "tree", "trunc_normal_"]


def tree() -> dict[str, dict[str, Any]]:
    """The stand-in's modules and what each holds (for :class:`~dtwin_agent._compat._install.StandIn`)."""
    layers = {
        "DropPath": DropPath,
        "drop_path": drop_path,
        "to_2tuple": to_2tuple,
        "trunc_normal_": trunc_normal_,
    }
    registry = {
        "register_model": register_model,
        "list_models": lambda: sorted(_MODELS),
        "is_model": lambda name: name in _MODELS,
        "model_entrypoint": lambda name: _MODELS[name],
    }
    return {
        "timm": {"__version__": "0.0.0+dtwin.stand_in"},
        "timm.models": {"register_model": register_model},
        "timm.models.layers": layers,
        "timm.models.registry": registry,
    }


class DropPath(torch.nn.Module):
    """Stochastic depth per sample, as ``timm.layers.DropPath`` (identity in eval mode)."""

    def __init__(self, drop_prob: float | None = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Any) -> Any:
        """``drop_path(x, drop_prob, training, scale_by_keep)``."""
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        """The drop rate, as timm prints it."""
        return "" if self.drop_prob is None else f"drop_prob={round(self.drop_prob, 3):0.3f}"


def drop_path(
    x: Any, drop_prob: float | None = 0.0, training: bool = False, scale_by_keep: bool = True
) -> Any:
    """As timm's ``drop_path``: zero whole samples with probability ``drop_prob`` while training."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


def to_2tuple(x: Any) -> tuple:
    """As timm's ``_ntuple(2)``: an iterable (not a string) as a tuple, anything else repeated twice."""
    if isinstance(x, Iterable) and not isinstance(x, str):
        return tuple(x)
    return (x, x)


def trunc_normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Any:
    """Fill ``tensor`` from N(mean, std) truncated to [a, b] (timm's ``trunc_normal_``)."""
    return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


_MODELS: dict[str, Any] = {}


def register_model(fn: Any) -> Any:
    """As timm's ``register_model`` decorator: record ``fn`` under its name and return it unchanged."""
    _MODELS[fn.__name__] = fn
    return fn

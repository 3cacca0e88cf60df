"""The proposer protocol and the proposal record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dtwin_agent.twin import Granularity


@dataclass
class Proposal:
    """One mask proposal at the size of the image the proposer was given.

    Attributes:
        mask: boolean ``H x W`` array.
        predicted_iou: the model's own quality estimate (1.0 where a proposer has none).
        stability: SAM's stability score (1.0 where a proposer has none).
        point: the prompt point ``(x, y)`` that produced it, if any.
    """

    mask: np.ndarray
    predicted_iou: float = 1.0
    stability: float = 1.0
    point: tuple[float, float] | None = None


@runtime_checkable
class MaskProposer(Protocol):
    """Anything that turns an RGB image into mask proposals for a granularity level."""

    name: str

    def propose(self, image: np.ndarray, granularity: Granularity) -> list[Proposal]:
        """Return proposals for an ``H x W x 3`` uint8 image, masks at ``H x W``."""
        ...

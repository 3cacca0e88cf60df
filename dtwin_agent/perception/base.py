"""The proposer protocol and the proposal record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dtwin_agent.twin import TwinLevel


@dataclass
class Proposal:
    """One mask proposal at the size of the image the proposer was given.

    Attributes:
        mask: boolean ``H x W`` array.
        predicted_iou: the model's own quality estimate (1.0 where a proposer has none).
        stability: SAM's stability score (1.0 where a proposer has none).
        point: the prompt point ``(x, y)`` that produced it, if any.
        parent: hierarchy proposals: the index, in the same list, of the object this part belongs
            to (``None`` for objects).
    """

    mask: np.ndarray
    predicted_iou: float = 1.0
    stability: float = 1.0
    point: tuple[float, float] | None = None
    parent: int | None = None


ProgressCallback = Callable[[int, int], None]
"""``on_progress(done, total)``: called by a proposer as its work advances (SAM: after each decoder
batch, counting prompts)."""


@runtime_checkable
class MaskProposer(Protocol):
    """Anything that turns an RGB image into mask proposals for a granularity level."""

    name: str

    def propose(
        self, image: np.ndarray, granularity: TwinLevel, *, on_progress: ProgressCallback | None = None
    ) -> list[Proposal]:
        """Return proposals for an ``H x W x 3`` uint8 image, masks at ``H x W``.

        ``granularity`` is a level of paper Eq. 1 or ``hierarchy`` (objects first, then their parts
        with :attr:`Proposal.parent` set).

        ``on_progress(done, total)``, when given, is called as the work advances (at least once,
        at the end, with ``done == total``).
        """
        ...

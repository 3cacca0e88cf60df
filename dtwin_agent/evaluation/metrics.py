r"""gIoU and cIoU for reasoning / referring segmentation, as LISA's evaluation computes them.

Per sample, with binary prediction ``P``, ground truth ``G`` and ignore mask ``X`` (pixels labelled
``ignore`` in ReasonSeg, value 255 in LISA's label maps)::

    I = |P ∩ G \ X|          U = |(P ∪ G) \ X|

Ignored pixels are excluded from both the intersection and the union, exactly as LISA's
``intersectionAndUnionGPU(..., ignore_index=255)`` does (it overwrites the prediction with 255
wherever the target is 255, and 255 falls outside the class histogram).

Over a set of samples:

- **gIoU** is the mean of the per-sample IoUs ``I / U``.
- **cIoU** is the cumulative IoU ``sum(I) / sum(U)`` (0.0 when every union is empty).

The empty-sample rule: a sample whose prediction and ground truth are both empty (outside the
ignore region), so ``U == 0``:

- ``empty_rule="lisa"`` (default) scores it **1.0** in gIoU, as LISA's
  ``acc_iou[union_i == 0] += 1.0`` does ("no-object target": predicting nothing is right).
- ``empty_rule="strict"`` scores it **0.0**, the rule of code that computes IoU as
  ``I / U if U else 0`` (e.g. :func:`dtwin_agent.masks.iou`).

Either way it adds nothing to cIoU. LISA divides by ``U + 1e-5`` for the per-sample IoU and by
``sum(U) + 1e-10`` for cIoU; this module divides exactly (no epsilon), which differs from LISA by at
most ``1e-5 / U`` per sample (below 1e-5 for any non-empty union) and not at all where ``U == 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dtwin_agent.errors import InputError

EmptyRule = Literal["lisa", "strict"]
EMPTY_RULES: tuple[str, ...] = ("lisa", "strict")


def _as_bool(name: str, mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D H x W mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must be numeric or boolean, got dtype {arr.dtype}")
    return arr != 0


def _check_rule(empty_rule: str) -> None:
    if empty_rule not in EMPTY_RULES:
        raise InputError(f"empty_rule must be one of {EMPTY_RULES}, got {empty_rule!r}")


def intersection_union(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int]:
    """Intersection and union pixel counts of two binary masks, ignored pixels excluded from both.

    Args:
        pred: predicted mask ``H x W`` (bool, or numbers where non-zero means foreground).
        gt: ground-truth mask ``H x W``, same shape. A uint8 LISA label map (0 / 1 / 255) is
            accepted only through ``ignore``: pass ``gt == 1`` and ``ignore = gt == 255``.
        ignore: pixels excluded from evaluation, same shape; ``None`` ignores nothing.

    Returns:
        ``(intersection, union)`` as Python ints.

    Raises:
        InputError: if a mask is not 2-D or the shapes differ (masks are never resized here).

    """
    p = _as_bool("prediction", pred)
    g = _as_bool("ground truth", gt)
    if p.shape != g.shape:
        raise InputError(f"prediction shape {p.shape} differs from ground-truth shape {g.shape}")
    if ignore is not None:
        x = _as_bool("ignore", ignore)
        if x.shape != g.shape:
            raise InputError(f"ignore shape {x.shape} differs from ground-truth shape {g.shape}")
        keep = ~x
        p = p & keep
        g = g & keep
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def sample_iou(intersection: int, union: int, empty_rule: EmptyRule = "lisa") -> float:
    """IoU of one sample from its counts, applying the empty-sample rule when ``union == 0``.

    Raises:
        InputError: for an unknown rule or inconsistent counts.

    """
    _check_rule(empty_rule)
    if intersection < 0 or union < 0 or intersection > union:
        raise InputError(f"bad counts: intersection={intersection}, union={union}")
    if union == 0:
        return 1.0 if empty_rule == "lisa" else 0.0
    return intersection / union


def mask_iou(
    pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None, empty_rule: EmptyRule = "lisa"
) -> float:
    """IoU of one sample, ignored pixels excluded, with the chosen empty-sample rule."""
    return sample_iou(*intersection_union(pred, gt, ignore), empty_rule=empty_rule)


@dataclass
class IoUAccumulator:
    """Accumulates per-sample counts and reports gIoU and cIoU (the module docstring has the rules).

    Example:
        >>> acc = IoUAccumulator()
        >>> acc.add_counts(1, 2); acc.add_counts(0, 0)
        >>> round(acc.giou, 3), round(acc.ciou, 3)
        (0.75, 0.5)

    """

    empty_rule: EmptyRule = "lisa"
    intersections: list[int] = field(default_factory=list)
    unions: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_rule(self.empty_rule)

    def add(self, pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
        """Add one sample from masks; returns its IoU under this accumulator's rule."""
        inter, union = intersection_union(pred, gt, ignore)
        return self.add_counts(inter, union)

    def add_counts(self, intersection: int, union: int) -> float:
        """Add one sample from its counts; returns its IoU under this accumulator's rule."""
        iou = sample_iou(int(intersection), int(union), self.empty_rule)
        self.intersections.append(int(intersection))
        self.unions.append(int(union))
        return iou

    def __len__(self) -> int:
        return len(self.unions)

    @property
    def ious(self) -> list[float]:
        """Per-sample IoUs in insertion order."""
        return [
            sample_iou(i, u, self.empty_rule) for i, u in zip(self.intersections, self.unions, strict=True)
        ]

    @property
    def giou(self) -> float:
        """Mean per-sample IoU (0.0 for no samples)."""
        return float(np.mean(self.ious)) if self.unions else 0.0

    @property
    def ciou(self) -> float:
        """Total intersection over total union (0.0 when the total union is 0)."""
        total_u = sum(self.unions)
        return sum(self.intersections) / total_u if total_u else 0.0

    def summary(self) -> dict[str, float | int]:
        """``{"giou", "ciou", "n", "intersection", "union"}``."""
        return {
            "giou": self.giou,
            "ciou": self.ciou,
            "n": len(self),
            "intersection": sum(self.intersections),
            "union": sum(self.unions),
        }


def giou_ciou(
    samples: Iterable[tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    empty_rule: EmptyRule = "lisa",
) -> tuple[float, float]:
    """GIoU and cIoU of ``(pred, gt)`` or ``(pred, gt, ignore)`` triples.

    Returns:
        ``(giou, ciou)``.

    """
    acc = IoUAccumulator(empty_rule=empty_rule)
    for item in samples:
        if len(item) == 2:
            acc.add(item[0], item[1])
        elif len(item) == 3:
            acc.add(item[0], item[1], item[2])
        else:
            raise InputError(f"each sample must be (pred, gt) or (pred, gt, ignore), got {len(item)} items")
    return acc.giou, acc.ciou


def from_counts(records: Iterable[Mapping[str, Any]], empty_rule: EmptyRule = "lisa") -> IoUAccumulator:
    """Build an accumulator from records holding ``intersection`` and ``union`` counts."""
    acc = IoUAccumulator(empty_rule=empty_rule)
    for rec in records:
        acc.add_counts(int(rec["intersection"]), int(rec["union"]))
    return acc

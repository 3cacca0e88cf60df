"""The granularity policy of paper section 3.1, as pure functions on masks and scores.

After SAM's everything mode (``{m_1..m_N} = SAM_everything(x_img)``):

- :func:`filter_by_predicted_iou`: ``M_filtered = {m_i | IoU_pred(m_i) > theta}``;
- part level: :func:`part_dedup` removes one mask of each pair with ``IoU(m_i, m_j) > tau``;
- object and group level: :func:`centroid_prompt_point` gives the centroid ``c_i`` of each mask
  (Eq. 2), used as a new SAM prompt, and :func:`containment_filter` drops every mask ``m_j``
  whose intersection ratio ``R(m_j) = |m_j ∩ m*| / |m_j|`` with a larger kept mask ``m*`` exceeds
  ``tau'`` (Eq. 3).

No torch here: masks are boolean ``H x W`` numpy arrays; pairwise overlaps go through pycocotools.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from dtwin_agent import masks as mask_ops
from dtwin_agent.perception.base import Proposal

__all__ = ["filter_by_predicted_iou", "part_dedup", "centroid_prompt_point", "containment_filter"]


def _check_threshold(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def filter_by_predicted_iou(proposals: Sequence[Proposal], theta: float) -> list[Proposal]:
    """Keep the proposals whose predicted IoU is strictly above ``theta``.

    Paper 3.1: ``M_filtered = {m_i | IoU_pred(m_i) > theta}``. A proposal with exactly
    ``theta`` is dropped (the same strict ``>`` as ``SamAutomaticMaskGenerator``).

    Args:
        proposals: the proposals, in any order; the order is kept.
        theta: the threshold, in [0, 1].

    Returns:
        The kept proposals.

    Raises:
        ValueError: if ``theta`` is outside [0, 1].
    """
    theta = _check_threshold("theta", theta)
    return [p for p in proposals if p.predicted_iou > theta]


def part_dedup(proposals: Sequence[Proposal], tau: float) -> list[Proposal]:
    """Part level: of each pair of masks with ``IoU(m_i, m_j) > tau``, keep the better one.

    Paper 3.1: ``IoU(m_i, m_j) = |m_i ∩ m_j| / |m_i ∪ m_j|``; when it exceeds ``tau`` one of the two
    masks is removed. The one removed is the one with the lower predicted IoU. Pairs are resolved
    greedily, like NMS: proposals are visited in descending predicted IoU (ties: input order), and
    one is dropped when it overlaps an already *kept* proposal with IoU > ``tau``. So a mask is
    never removed on account of a mask that was itself removed. IoUs come from pycocotools
    (through :mod:`dtwin_agent.masks`).

    Args:
        proposals: proposals with masks of one common shape.
        tau: the pairwise IoU threshold, in [0, 1].

    Returns:
        The kept proposals, in input order.

    Raises:
        ValueError: if ``tau`` is outside [0, 1] or the masks differ in shape.
    """
    tau = _check_threshold("tau", tau)
    if len(proposals) < 2:
        return list(proposals)
    _common_shape([p.mask for p in proposals])
    rles = [mask_ops.encode(p.mask) for p in proposals]
    ious = mask_ops.iou_matrix(rles, rles)
    order = sorted(range(len(proposals)), key=lambda i: -proposals[i].predicted_iou)  # stable
    kept: list[int] = []
    for i in order:
        if all(ious[i, k] <= tau for k in kept):
            kept.append(i)
    return [proposals[i] for i in sorted(kept)]


def centroid_prompt_point(mask: np.ndarray) -> tuple[float, float]:
    """Return the prompt point of a mask: its centroid ``c_i`` (paper Eq. 2), kept inside the mask.

    ``c_i = (1/|m_i| Σ x, 1/|m_i| Σ y)`` over the mask's pixels, in pixel-index coordinates
    (column ``x``, row ``y``), which is SAM's convention for point prompts. For a non-convex mask
    (a ring, a C shape) the centroid can fall outside the mask, and a prompt there would ask SAM
    for a different object; then the point is *snapped* to the in-mask pixel nearest to the
    centroid (Euclidean distance; ties: the first in row-major order). The centroid counts as
    outside when the pixel it rounds to is not in the mask.

    Args:
        mask: a boolean ``H x W`` mask.

    Returns:
        ``(x, y)``: the centroid itself when it lies in the mask, else the snapped pixel.

    Raises:
        ValueError: if the mask is not 2-D or is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D H x W array, got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    cx, cy = mask_ops.centroid(mask)  # raises ValueError on an empty mask
    height, width = mask.shape
    col = min(max(int(np.floor(cx + 0.5)), 0), width - 1)
    row = min(max(int(np.floor(cy + 0.5)), 0), height - 1)
    if mask[row, col]:
        return cx, cy
    ys, xs = np.nonzero(mask)
    nearest = int(np.argmin((xs - cx) ** 2 + (ys - cy) ** 2))
    return float(xs[nearest]), float(ys[nearest])


def containment_filter(masks: Sequence[np.ndarray], tau_prime: float) -> list[int]:
    """Object / group level: drop masks mostly contained in a larger kept mask (paper Eq. 3).

    Masks are visited by area, largest first (ties: input order, the earlier counting as the
    larger). The first is the largest mask ``m* = argmax A(m_i)`` and is kept; each following mask
    ``m_j`` is dropped when ``R(m_j) = |m_j ∩ m*| / |m_j| > tau'`` for *any* already kept (hence
    larger or equal) mask ``m*``, and kept otherwise. Applying Eq. 3 against every kept mask rather
    than only the single largest one is what removes the parts of every object, not just of the
    biggest. Empty masks are always dropped (``R`` is undefined). Ratios come from pycocotools'
    crowd IoU, which is exactly ``|dt ∩ gt| / |dt|``.

    Args:
        masks: boolean ``H x W`` masks of one common shape.
        tau_prime: the containment threshold ``tau'``, in [0, 1].

    Returns:
        Indices into ``masks`` of the kept masks, largest first.

    Raises:
        ValueError: if ``tau_prime`` is outside [0, 1] or the masks differ in shape.
    """
    tau_prime = _check_threshold("tau_prime", tau_prime)
    if not masks:
        return []
    _common_shape(masks)
    rles = [mask_utils.encode(np.asfortranarray(np.asarray(m, dtype=np.uint8))) for m in masks]
    areas = np.asarray(mask_utils.area(rles), dtype=np.int64)
    order = sorted((i for i in range(len(masks)) if areas[i] > 0), key=lambda i: -areas[i])  # stable
    if not order:
        return []
    # ratio[j, k] = |m_j ∩ m_k| / |m_j| (pycocotools: rows are "detections", crowd "ground truths")
    ratio = np.asarray(mask_utils.iou(rles, rles, [1] * len(rles)), dtype=float).reshape(len(rles), len(rles))
    kept: list[int] = []
    for j in order:
        if not any(ratio[j, k] > tau_prime for k in kept):
            kept.append(j)
    return kept


def _common_shape(masks: Sequence[np.ndarray]) -> tuple[int, int]:
    shapes = {np.shape(m) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"masks must all have one shape, got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 2:
        raise ValueError(f"masks must be 2-D H x W arrays, got shape {shape}")
    return shape

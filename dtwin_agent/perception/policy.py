"""The granularity policy of paper section 3.1, as pure functions on masks and scores.

After SAM's everything mode (``{m_1..m_N} = SAM_everything(x_img)``):

- :func:`filter_by_predicted_iou`: ``M_filtered = {m_i | IoU_pred(m_i) > theta}``;
- part level: :func:`part_dedup` removes one mask of each pair with ``IoU(m_i, m_j) > tau``;
- object and group level: :func:`centroid_prompt_point` gives the centroid ``c_i`` of each mask
  (Eq. 2), used as a new SAM prompt in multi-mask mode; :func:`choose_growth` decides, for each
  everything-mode mask, which re-prompted mask (if any) replaces it: the largest that is a
  *plausible growth* of it, so that no object is lost to a re-prompt that returned a group, the
  background or the whole scene; :func:`find_groups` marks the masks that are groups of objects
  (nearly the union of two or more smaller masks); then :func:`containment_filter` drops every
  mask ``m_j`` whose intersection ratio ``R(m_j) = |m_j ∩ m*| / |m_j|`` with a larger kept mask
  ``m*`` exceeds ``tau'`` (Eq. 3), where neither a group nor a mask covering much of the image
  (the scene, the floor) may act as ``m*``.

Hierarchy twins (``perception.granularity = "hierarchy"``): :func:`assemble_hierarchy` puts the
object-level and the part-level masks of one everything-mode run in one list, each part naming the
object it lies in, so that no choice of level can lose the target.

No torch here: masks are boolean ``H x W`` numpy arrays; pairwise overlaps go through pycocotools.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from dtwin_agent import masks as mask_ops
from dtwin_agent.perception.base import Proposal

__all__ = [
    "filter_by_predicted_iou",
    "part_dedup",
    "centroid_prompt_point",
    "choose_growth",
    "find_groups",
    "containment_filter",
    "assemble_hierarchy",
]


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


def choose_growth(
    originals: Sequence[np.ndarray],
    candidates: Sequence[Sequence[np.ndarray]],
    candidate_ious: Sequence[Sequence[float]],
    *,
    theta: float,
    cover: float,
    tau_prime: float,
    border_max: float,
    full_frame: float = 0.95,
) -> list[int | None]:
    r"""Which re-prompted mask replaces each everything-mode mask (object / group level).

    Paper 3.1 re-prompts SAM at the centroid ``c_i`` of every kept mask ``m_i`` in multi-mask mode
    and takes the largest mask. Taken blindly, the largest is often a group of objects, the
    background or the whole scene, and Eq. 3 then removes every object it contains. Here a
    candidate ``c`` replaces the original ``m_o`` only when it is a **plausible growth** of it,
    that is when every rule holds:

    1. *quality*: ``IoU_pred(c) > theta`` (the filter every kept mask passed);
    2. *growth*: ``|c| > |m_o|``, and ``c`` covers less than ``full_frame`` of the image;
    3. *cover*: ``c`` covers most of the original: ``|c ∩ m_o| >= cover * |m_o|``;
    4. *no swallowing*: ``c`` does not take in another kept mask ``m_k`` that ``m_o`` did not
       already hold, where "takes in" is Eq. 3's test ``|c ∩ m_k| / |m_k| > tau'``. (When ``c``
       is a larger kept object that the original is part of, the original stays here and Eq. 3
       then merges it into that object, as before.)
    5. *not the background*: the added region ``c \ m_o`` covers at most ``border_max`` of the
       image border's pixels (what grows along the frame is floor, sky, wall or table).

    Among the candidates that pass, the largest is chosen (the paper's ``argmax A``; ties: the
    first); with none, the original stays (``None``).

    Args:
        originals: the kept everything-mode masks ``m_o`` (boolean ``H x W``, one shape).
        candidates: for each original, its re-prompted masks (any number, same shape).
        candidate_ious: SAM's predicted IoU of each candidate, same nesting as ``candidates``.
        theta: the predicted-IoU threshold, in [0, 1].
        cover: the cover threshold of rule 3, in [0, 1].
        tau_prime: Eq. 3's containment threshold ``tau'``, in [0, 1].
        border_max: largest share of the image border the growth may add, in [0, 1].
        full_frame: a mask covering this share of the image is the scene, in [0, 1].

    Returns:
        For each original, the index of the chosen candidate, or ``None`` to keep the original.

    Raises:
        ValueError: if a threshold is outside [0, 1], the nesting does not match, or masks differ
            in shape.
    """
    theta = _check_threshold("theta", theta)
    cover = _check_threshold("cover", cover)
    tau_prime = _check_threshold("tau_prime", tau_prime)
    border_max = _check_threshold("border_max", border_max)
    full_frame = _check_threshold("full_frame", full_frame)
    if len(candidates) != len(originals) or len(candidate_ious) != len(originals):
        raise ValueError("candidates and candidate_ious need one entry per original")
    if not originals:
        return []
    flat = [c for group in candidates for c in group]
    owner = np.repeat(np.arange(len(originals)), [len(g) for g in candidates])
    flat_ious = np.asarray([v for group in candidate_ious for v in group], dtype=float)
    if len(flat_ious) != len(flat):
        raise ValueError("candidate_ious must have one value per candidate")
    if not flat:
        return [None] * len(originals)
    height, width = _common_shape([*originals, *flat])
    orig_rles = [_rle(m) for m in originals]
    cand_rles = [_rle(m) for m in flat]
    orig_area = np.asarray(mask_utils.area(orig_rles), dtype=float)
    cand_area = np.asarray(mask_utils.area(cand_rles), dtype=float)
    # held[k, j] = |m_k ∩ c_j| / |m_k|; inner[k, o] = |m_k ∩ m_o| / |m_k|
    held = _pairwise(orig_rles, cand_rles, crowd=True)
    inner = _pairwise(orig_rles, orig_rles, crowd=True)
    border_o = np.stack([_border(m) for m in originals])
    border_c = np.stack([_border(m) for m in flat])

    n = len(originals)
    choice: list[int | None] = [None] * n
    best_area = np.zeros(n)
    for j in range(len(flat)):
        o = int(owner[j])
        if not (flat_ious[j] > theta and orig_area[o] < cand_area[j] < full_frame * height * width):
            continue  # rules 1 and 2
        if held[o, j] < cover:
            continue  # rule 3
        others = np.arange(n) != o
        if (others & (held[:, j] > tau_prime) & (inner[:, o] <= tau_prime)).any():
            continue  # rule 4
        if (border_c[j] & ~border_o[o]).mean() > border_max:
            continue  # rule 5
        if cand_area[j] > best_area[o]:
            choice[o] = j - int(np.searchsorted(owner, o))
            best_area[o] = cand_area[j]
    return choice


def find_groups(
    masks: Sequence[np.ndarray],
    predicted_ious: Sequence[float],
    *,
    tau: float,
    tau_prime: float,
    union_cover: float,
) -> list[bool]:
    """Object / group level: which masks are groups of objects, i.e. (nearly) unions of others.

    SAM's everything mode (and a centroid re-prompt) often returns one mask for two objects: two
    touching objects, or two apart (the mask then has several connected components). Taken as
    Eq. 3's ``m*``, such a mask removes both real objects. A mask ``c`` is a **group** when

    - it holds at least two *members*: other masks ``m_k`` with Eq. 3's ratio
      ``|m_k ∩ c| / |m_k| > tau'``, smaller than ``c`` and not the same mask
      (``IoU(m_k, c) <= tau``, the part-level duplicate test), and
    - the members together cover at least ``union_cover`` of it:
      ``|c ∩ (m_1 ∪ ... ∪ m_K)| >= union_cover * |c|``, and
    - SAM is surer of a member than of ``c``: ``IoU_pred(c) < max_k IoU_pred(m_k)``.

    An object with parts inside it (a car and its wheels) is not a group when the parts SAM found
    leave enough of it uncovered, or when SAM's predicted IoU for the whole is at least that of
    every part (on the synthetic scenes every union of two objects scored below one of them).

    Args:
        masks: boolean ``H x W`` masks of one common shape (empty ones are never groups).
        predicted_ious: SAM's predicted IoU of each mask.
        tau: the duplicate threshold (``perception.part_iou_thresh``), in [0, 1].
        tau_prime: Eq. 3's containment threshold ``tau'``, in [0, 1].
        union_cover: the share of ``c`` its members must cover, in [0, 1].

    Returns:
        One flag per mask, in input order: True for a group.

    Raises:
        ValueError: if a threshold is outside [0, 1], ``predicted_ious`` has not one value per
            mask, or the masks differ in shape.
    """
    tau = _check_threshold("tau", tau)
    tau_prime = _check_threshold("tau_prime", tau_prime)
    union_cover = _check_threshold("union_cover", union_cover)
    if len(predicted_ious) != len(masks):
        raise ValueError(
            f"predicted_ious needs one value per mask, got {len(predicted_ious)} for {len(masks)}"
        )
    if len(masks) < 3:
        return [False] * len(masks)
    _common_shape(masks)
    rles = [_rle(m) for m in masks]
    areas = np.asarray(mask_utils.area(rles), dtype=np.int64)
    held = _pairwise(rles, rles, crowd=True)  # held[k, c] = |m_k ∩ c| / |m_k|
    same = _pairwise(rles, rles, crowd=False)  # IoU
    groups = [False] * len(masks)
    for c in range(len(masks)):
        members = np.flatnonzero((held[:, c] > tau_prime) & (same[:, c] <= tau) & (areas < areas[c]))
        if members.size < 2 or predicted_ious[c] >= max(predicted_ious[k] for k in members):
            continue
        union = mask_utils.merge([rles[k] for k in members], intersect=False)
        groups[c] = bool(_pairwise([rles[c]], [union], crowd=True)[0, 0] >= union_cover)
    return groups


def containment_filter(
    masks: Sequence[np.ndarray],
    tau_prime: float,
    *,
    containers: Sequence[bool] | None = None,
    scene_share: float | None = None,
) -> list[int]:
    """Object / group level: drop masks mostly contained in a larger kept mask (paper Eq. 3).

    Masks are visited by area, largest first (ties: input order, the earlier counting as the
    larger). The first is the largest mask ``m* = argmax A(m_i)`` and is kept; each following mask
    ``m_j`` is dropped when ``R(m_j) = |m_j ∩ m*| / |m_j| > tau'`` for *any* already kept (hence
    larger or equal) mask ``m*`` that may act as a container, and kept otherwise. Applying Eq. 3
    against every kept mask rather than only the single largest one is what removes the parts of
    every object, not just of the biggest. A mask may not act as a container when ``containers``
    says so (the groups of :func:`find_groups`) or when it covers at least ``scene_share`` of the
    image: such a mask is the scene, the floor, a table top or a wall with the objects on it, and
    as ``m*`` it would remove all of them. Such masks are still kept themselves. Empty masks
    are always dropped (``R`` is undefined). Ratios come from pycocotools' crowd IoU, which is
    exactly ``|dt ∩ gt| / |dt|``.

    Args:
        masks: boolean ``H x W`` masks of one common shape.
        tau_prime: the containment threshold ``tau'``, in [0, 1].
        containers: one flag per mask, False for a mask that may not drop others (default: all
            may).
        scene_share: a mask covering this share of the image or more is not a container, in
            [0, 1] (default: no such rule).

    Returns:
        Indices into ``masks`` of the kept masks, largest first.

    Raises:
        ValueError: if ``tau_prime`` or ``scene_share`` is outside [0, 1], ``containers`` has not
            one flag per mask, or the masks differ in shape.
    """
    tau_prime = _check_threshold("tau_prime", tau_prime)
    if scene_share is not None:
        scene_share = _check_threshold("scene_share", scene_share)
    if containers is not None and len(containers) != len(masks):
        raise ValueError(f"containers needs one flag per mask, got {len(containers)} for {len(masks)}")
    if not masks:
        return []
    height, width = _common_shape(masks)
    rles = [_rle(m) for m in masks]
    areas = np.asarray(mask_utils.area(rles), dtype=np.int64)
    order = sorted((i for i in range(len(masks)) if areas[i] > 0), key=lambda i: -areas[i])  # stable
    if not order:
        return []
    can_hold = np.ones(len(masks), bool) if containers is None else np.asarray(containers, bool)
    if scene_share is not None:
        can_hold &= areas < scene_share * height * width
    # ratio[j, k] = |m_j ∩ m_k| / |m_j| (pycocotools: rows are "detections", crowd "ground truths")
    ratio = _pairwise(rles, rles, crowd=True)
    kept: list[int] = []
    for j in order:
        if not any(ratio[j, k] > tau_prime for k in kept if can_hold[k]):
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


def assemble_hierarchy(
    objects: Sequence[Proposal], parts: Sequence[Proposal], *, tau: float, tau_prime: float
) -> list[Proposal]:
    """Objects and their parts in one list (hierarchy twins).

    Each part is compared with the objects:

    - a part with ``IoU(part, object) > tau`` for some object *is* that object (a part-level mask
      that needed no merging) and is dropped;
    - otherwise its parent is the smallest object that holds it, ``R = |part ∩ object| / |part|
      > tau'`` (Eq. 3's ratio): the most specific object it belongs to;
    - a part that no object holds stays, as a top-level entry (``parent`` None): nothing the
      part level found is lost.

    Args:
        objects: the object-level proposals (the object / group policy's output).
        parts: the part-level proposals (``part_dedup`` of the same everything-mode masks).
        tau: the part-level IoU threshold, in [0, 1].
        tau_prime: the containment threshold, in [0, 1].

    Returns:
        New proposals: the objects in their order (``parent`` None), then the kept parts in theirs,
        ``parent`` being the index of their object in this list.

    Raises:
        ValueError: if a threshold is outside [0, 1] or the masks differ in shape.
    """
    from dataclasses import replace

    tau = _check_threshold("tau", tau)
    tau_prime = _check_threshold("tau_prime", tau_prime)
    out = [replace(obj, parent=None) for obj in objects]
    if not parts:
        return out
    if not objects:
        return out + [replace(part, parent=None) for part in parts]
    _common_shape([p.mask for p in (*objects, *parts)])
    obj_rles = [_rle(o.mask) for o in objects]
    part_rles = [_rle(p.mask) for p in parts]
    same = _pairwise(part_rles, obj_rles, crowd=False)  # IoU
    held = _pairwise(part_rles, obj_rles, crowd=True)  # |part ∩ object| / |part|
    obj_area = np.asarray(mask_utils.area(obj_rles), dtype=float)
    for k, part in enumerate(parts):
        if (same[k] > tau).any():
            continue
        holders = np.flatnonzero(held[k] > tau_prime)
        parent = int(holders[np.argmin(obj_area[holders])]) if holders.size else None
        out.append(replace(part, parent=parent))
    return out


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))


def _pairwise(rows: list, cols: list, *, crowd: bool) -> np.ndarray:
    """``len(rows) x len(cols)``: IoU, or with ``crowd`` the share ``|r ∩ c| / |r|`` (pycocotools)."""
    if not rows or not cols:
        return np.zeros((len(rows), len(cols)))
    out = mask_utils.iou(rows, cols, [int(crowd)] * len(cols))
    return np.asarray(out, dtype=float).reshape(len(rows), len(cols))


def _border(mask: np.ndarray) -> np.ndarray:
    """The mask's values on the image border: top row, bottom row, then the columns in between."""
    mask = np.asarray(mask, dtype=bool)
    return np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])

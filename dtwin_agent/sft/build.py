"""Seg-DT skeletons from (image, query, ground-truth mask): what ``tools/build_segdt.py`` writes.

The paper's Seg-DT reasoning paths were written by domain experts (paper 3.4). This builder does
the mechanical part only: it builds the twin D, keeps the objects whose predicted IoU reaches τ
(D_filtered), measures how each object's mask overlaps the ground truth, and writes a one-step
skeleton whose decisions are *suggested* from that overlap. Every reasoning note is left empty and
the record's ``status`` is ``skeleton``: an annotator writes the reasoning (and may add steps,
change decisions and semantics), then sets ``status`` to ``annotated``. Training refuses skeletons.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dtwin_agent.errors import InputError
from dtwin_agent.sft.records import SegDTInput, SegDTRecord, SegDTTarget
from dtwin_agent.twin import DigitalTwin, ObjectDecision, ReasoningStep


def object_overlaps(
    twin: DigitalTwin, gt_mask: np.ndarray, ignore_mask: np.ndarray | None = None
) -> dict[int, dict[str, float]]:
    """For each object: ``inside`` (share of its pixels inside the ground truth) and ``iou`` with it.

    Ignored pixels are left out of both, as in the metrics.

    Raises:
        InputError: if the masks do not have the twin's image size.

    """
    gt = np.asarray(gt_mask, dtype=bool)
    size = (twin.image.height, twin.image.width)
    if gt.shape != size:
        raise InputError(f"ground-truth mask shape {gt.shape} is not the image size {size}")
    keep = np.ones_like(gt) if ignore_mask is None else ~np.asarray(ignore_mask, dtype=bool)
    if keep.shape != size:
        raise InputError(f"ignore mask shape {keep.shape} is not the image size {size}")
    gt = gt & keep
    out: dict[int, dict[str, float]] = {}
    for obj in twin.objects:
        m = obj.decode_mask() & keep
        area = int(m.sum())
        inter = int((m & gt).sum())
        union = int((m | gt).sum())
        out[obj.id] = {
            "inside": inter / area if area else 0.0,
            "iou": inter / union if union else 0.0,
        }
    return out


def build_skeleton(
    twin: DigitalTwin,
    query: str,
    gt_mask: np.ndarray,
    ignore_mask: np.ndarray | None = None,
    *,
    record_id: str,
    min_inside: float = 0.5,
    iou_threshold: float | None = None,
    meta: dict[str, Any] | None = None,
) -> SegDTRecord:
    """Build a ``skeleton`` Seg-DT record for annotators.

    Args:
        twin: the digital twin D of the image.
        query: the text query.
        gt_mask: bool ``H x W`` ground truth at the image size.
        ignore_mask: pixels to leave out of the overlap measures.
        record_id: the record's id.
        min_inside: an object is suggested ``kept`` when at least this share of its pixels lies
            inside the ground truth.
        iou_threshold: τ of paper 3.4: drop objects whose predicted IoU is below it (objects
            without a predicted IoU are kept); ``None`` keeps every object.
        meta: extra fields for ``record.meta``.

    Raises:
        InputError: empty query, bad masks, or no object left after filtering.

    """
    if not query.strip():
        raise InputError("query is empty")
    objects = [
        o
        for o in twin.objects
        if iou_threshold is None or o.predicted_iou is None or o.predicted_iou >= iou_threshold
    ]
    if not objects:
        raise InputError(f"{record_id}: no object left after the predicted-IoU filter (tau={iou_threshold})")
    overlaps = object_overlaps(twin, gt_mask, ignore_mask)
    suggested = sorted(o.id for o in objects if overlaps[o.id]["inside"] >= min_inside)
    decisions = {
        o.id: ObjectDecision(
            decision="kept" if o.id in suggested else "rejected",
            semantic=o.semantic if o.id in suggested else "",
            reasoning="",
        )
        for o in objects
    }
    union = twin.union_mask(suggested)
    gt = np.asarray(gt_mask, dtype=bool)
    keep = np.ones_like(gt) if ignore_mask is None else ~np.asarray(ignore_mask, dtype=bool)
    inter, uni = int((union & gt & keep).sum()), int(((union | gt) & keep).sum())
    return SegDTRecord(
        id=record_id,
        status="skeleton",
        input=SegDTInput.from_twin(twin, query, ids=[o.id for o in objects]),
        target=SegDTTarget(steps=[ReasoningStep(step=1, objects=decisions)], ids=suggested),
        meta={
            "image": twin.image.model_dump(),
            "suggested_by": f"ground-truth overlap (inside >= {min_inside})",
            "tau": iou_threshold,
            "overlaps": {str(k): {n: round(v, 4) for n, v in d.items()} for k, d in overlaps.items()},
            "suggested_iou": inter / uni if uni else 0.0,
            "annotator_todo": "write every reasoning note, check decisions, add steps if useful, "
            'then set "status": "annotated"',
            **(meta or {}),
        },
    )

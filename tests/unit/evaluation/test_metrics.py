"""gIoU / cIoU: hand-computed cases, hypothesis properties, and agreement with LISA's own accumulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dtwin_agent.errors import InputError
from dtwin_agent.evaluation.metrics import (
    IoUAccumulator,
    from_counts,
    giou_ciou,
    intersection_union,
    mask_iou,
    sample_iou,
)

# ----------------------------------------------------------------------------- LISA, reproduced
# A faithful copy of the accumulation in LISA's train_ds.py ``validate`` and utils/utils.py
# (intersectionAndUnionGPU with ignore_index=255, AverageMeter). Only change: torch.histc needs a
# floating tensor on CPU (LISA runs it on CUDA ints); the counts are the same.


def lisa_intersection_and_union(output, target, K, ignore_index=255):
    assert output.dim() in [1, 2, 3]
    assert output.shape == target.shape
    output = output.view(-1)
    target = target.view(-1)
    output[target == ignore_index] = ignore_index
    intersection = output[output == target]
    area_intersection = torch.histc(intersection.float(), bins=K, min=0, max=K - 1)
    area_output = torch.histc(output.float(), bins=K, min=0, max=K - 1)
    area_target = torch.histc(target.float(), bins=K, min=0, max=K - 1)
    area_union = area_output + area_target - area_intersection
    return area_intersection, area_union, area_target


class LisaAverageMeter:
    def __init__(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def lisa_validate(batches):
    """``batches``: list of (masks_list, output_list) int tensors (N x H x W), one per image."""
    intersection_meter, union_meter, acc_iou_meter = (
        LisaAverageMeter(),
        LisaAverageMeter(),
        LisaAverageMeter(),
    )
    for masks_list, output_list in batches:
        intersection, union, acc_iou = 0.0, 0.0, 0.0
        for mask_i, output_i in zip(masks_list, output_list):  # noqa: B905 - LISA verbatim
            intersection_i, union_i, _ = lisa_intersection_and_union(
                output_i.contiguous().clone(), mask_i.contiguous(), 2, ignore_index=255
            )
            intersection += intersection_i
            union += union_i
            acc_iou += intersection_i / (union_i + 1e-5)
            acc_iou[union_i == 0] += 1.0  # no-object target
        intersection, union = intersection.cpu().numpy(), union.cpu().numpy()
        acc_iou = acc_iou.cpu().numpy() / masks_list.shape[0]
        intersection_meter.update(intersection)
        union_meter.update(union)
        acc_iou_meter.update(acc_iou, n=masks_list.shape[0])
    iou_class = intersection_meter.sum / (union_meter.sum + 1e-10)
    return float(acc_iou_meter.avg[1]), float(iou_class[1])


def _random_sample(rng, h, w, kind):
    """(pred bool, gt bool, ignore bool) with blobs; some samples are empty on purpose."""

    def blob():
        m = np.zeros((h, w), dtype=bool)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        m[y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w)] = True
        return m

    gt = blob() if kind != "empty" else np.zeros((h, w), dtype=bool)
    pred = (gt ^ (rng.random((h, w)) < 0.15)) if kind == "noisy" else blob()
    if kind == "empty":
        pred = np.zeros((h, w), dtype=bool)
    ignore = blob() & (rng.random((h, w)) < 0.8) if rng.random() < 0.6 else np.zeros((h, w), dtype=bool)
    if kind == "only-ignore":  # gt and pred only inside the ignore region: union 0 after ignoring
        ignore = gt | pred
    return pred, gt, ignore


def _label_map(gt, ignore):
    label = gt.astype(np.int64)
    label[ignore] = 255  # LISA's ground truth: 0 / 1 / 255
    return label


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_lisa_accumulation_on_random_masks_with_ignore(seed):
    rng = np.random.default_rng(seed)
    batches, ours = [], IoUAccumulator(empty_rule="lisa")
    kinds = ["blob", "noisy", "empty", "only-ignore"]
    for _ in range(25):
        h, w = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        n = int(rng.integers(1, 4))  # LISA groups several masks of one image in one batch
        gts, preds = [], []
        for _ in range(n):
            pred, gt, ignore = _random_sample(rng, h, w, kinds[int(rng.integers(0, 4))])
            ours.add(pred, gt, ignore)
            gts.append(_label_map(gt, ignore))
            preds.append(pred.astype(np.int64))
        batches.append((torch.from_numpy(np.stack(gts)).int(), torch.from_numpy(np.stack(preds)).int()))
    lisa_giou, lisa_ciou = lisa_validate(batches)
    # LISA divides by U + 1e-5 per sample: differs from the exact ratio by at most 1e-5 / U.
    assert ours.giou == pytest.approx(lisa_giou, abs=2e-5)
    assert ours.ciou == pytest.approx(lisa_ciou, abs=1e-6)  # LISA sums float32 histograms
    assert any(u == 0 for u in ours.unions), "the fixture must exercise the empty-sample rule"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            arrays(np.bool_, (6, 7)),
            arrays(np.bool_, (6, 7)),
            arrays(np.bool_, (6, 7)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_matches_lisa_on_hypothesis_masks(samples):
    batches = []
    for pred, gt, ignore in samples:
        batches.append(
            (
                torch.from_numpy(_label_map(gt, ignore)[None]).int(),
                torch.from_numpy(pred.astype(np.int64)[None]).int(),
            )
        )
    lisa_giou, lisa_ciou = lisa_validate(batches)
    giou, ciou = giou_ciou(samples, empty_rule="lisa")
    assert giou == pytest.approx(lisa_giou, abs=2e-5)
    assert ciou == pytest.approx(lisa_ciou, abs=1e-6)


# --------------------------------------------------------------------------------- hand computed


def test_hand_computed_counts():
    pred = np.array([[1, 1, 0], [0, 0, 0]], dtype=bool)
    gt = np.array([[0, 1, 1], [0, 0, 0]], dtype=bool)
    assert intersection_union(pred, gt) == (1, 3)
    assert mask_iou(pred, gt) == pytest.approx(1 / 3)


def test_ignore_pixels_leave_both_intersection_and_union():
    pred = np.array([[1, 1, 1, 0]], dtype=bool)
    gt = np.array([[0, 1, 1, 1]], dtype=bool)
    ignore = np.array([[1, 0, 0, 1]], dtype=bool)
    # without ignore: I = 2, U = 4; ignoring columns 0 and 3: I = 2, U = 2
    assert intersection_union(pred, gt) == (2, 4)
    assert intersection_union(pred, gt, ignore) == (2, 2)
    ignore_hit = np.array([[0, 1, 0, 0]], dtype=bool)  # an ignored pixel inside the intersection
    assert intersection_union(pred, gt, ignore_hit) == (1, 3)


def test_empty_rule_lisa_and_strict():
    empty = np.zeros((3, 3), dtype=bool)
    assert mask_iou(empty, empty) == 1.0
    assert mask_iou(empty, empty, empty_rule="strict") == 0.0
    # prediction only inside the ignore region also counts as empty
    pred = np.zeros((3, 3), dtype=bool)
    pred[0, 0] = True
    ignore = pred.copy()
    assert mask_iou(pred, empty, ignore) == 1.0
    assert mask_iou(pred, empty) == 0.0


def test_giou_ciou_hand_computed_over_samples():
    counts = [
        {"intersection": 1, "union": 2},
        {"intersection": 3, "union": 4},
        {"intersection": 0, "union": 0},
    ]
    lisa = from_counts(counts)
    assert lisa.giou == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    assert lisa.ciou == pytest.approx(4 / 6)
    strict = from_counts(counts, "strict")
    assert strict.giou == pytest.approx((0.5 + 0.75 + 0.0) / 3)
    assert strict.ciou == pytest.approx(4 / 6)
    assert IoUAccumulator().giou == 0.0 and IoUAccumulator().ciou == 0.0


def test_ciou_weights_big_objects_giou_does_not():
    acc = IoUAccumulator()
    acc.add_counts(90, 100)  # a big object, well segmented
    acc.add_counts(0, 10)  # a small object, missed
    assert acc.giou == pytest.approx(0.45)
    assert acc.ciou == pytest.approx(90 / 110)


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="shape"):
        intersection_union(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(InputError, match="ignore shape"):
        intersection_union(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(InputError, match="2-D"):
        intersection_union(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)))
    with pytest.raises(InputError, match="empty_rule"):
        IoUAccumulator(empty_rule="loose")
    with pytest.raises(InputError, match="bad counts"):
        sample_iou(3, 2)
    with pytest.raises(InputError, match="each sample"):
        giou_ciou([(np.zeros((1, 1)),)])


# ---------------------------------------------------------------------------------- properties


@st.composite
def triples(draw):
    shape = draw(st.tuples(st.integers(1, 8), st.integers(1, 8)))
    return (
        draw(arrays(np.bool_, shape)),
        draw(arrays(np.bool_, shape)),
        draw(arrays(np.bool_, shape)),
    )


@settings(max_examples=60, deadline=None)
@given(triples())
def test_iou_bounds_and_symmetry(t):
    pred, gt, ignore = t
    inter, union = intersection_union(pred, gt, ignore)
    assert 0 <= inter <= union
    assert (inter, union) == intersection_union(gt, pred, ignore)
    for rule in ("lisa", "strict"):
        assert 0.0 <= mask_iou(pred, gt, ignore, rule) <= 1.0


@settings(max_examples=60, deadline=None)
@given(triples(), st.data())
def test_prediction_inside_ignore_does_not_matter(t, data):
    pred, gt, ignore = t
    noise = data.draw(arrays(np.bool_, pred.shape))
    changed = np.where(ignore, noise, pred)
    assert intersection_union(changed, gt, ignore) == intersection_union(pred, gt, ignore)


@settings(max_examples=60, deadline=None)
@given(triples())
def test_perfect_prediction_scores_one(t):
    _, gt, ignore = t
    assert mask_iou(gt, gt, ignore, "lisa") == 1.0
    expected_strict = 1.0 if (gt & ~ignore).any() else 0.0
    assert mask_iou(gt, gt, ignore, "strict") == expected_strict


@settings(max_examples=50, deadline=None)
@given(st.lists(triples(), min_size=1, max_size=8))
def test_ciou_is_a_union_weighted_mean_and_rules_only_differ_on_empty(samples):
    lisa, strict = IoUAccumulator("lisa"), IoUAccumulator("strict")
    for pred, gt, ignore in samples:
        lisa.add(pred, gt, ignore)
        strict.add(pred, gt, ignore)
    assert lisa.ciou == strict.ciou
    n_empty = sum(1 for u in lisa.unions if u == 0)
    assert lisa.giou - strict.giou == pytest.approx(n_empty / len(samples))
    nonempty = [i / u for i, u in zip(lisa.intersections, lisa.unions, strict=True) if u]
    if nonempty:
        assert min(nonempty) - 1e-12 <= lisa.ciou <= max(nonempty) + 1e-12
    else:
        assert lisa.ciou == 0.0
    assert (lisa.giou, lisa.ciou) == giou_ciou(samples)

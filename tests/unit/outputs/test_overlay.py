"""Overlays: labels never hide a labelled mask, outlines always show."""

from __future__ import annotations

import numpy as np

from dtwin_agent.outputs.overlay import _colour, draw_objects, place_labels


def _box(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _covered(box, mask):
    x0, y0, x1, y1 = box
    return int(mask[y0:y1, x0:x1].sum())


def test_small_mask_label_goes_beside_with_a_leader_line():
    shape = (300, 400)
    small = _box(shape, 140, 152, 250, 262)  # 12 x 12: smaller than its label
    big = _box(shape, 40, 260, 30, 180)
    placed = {p.id: p for p in place_labels([(12, small), (1, big)], {12: (30, 20), 1: (20, 20)}, shape)}
    assert not placed[12].inside and _covered(placed[12].box, small) == 0
    assert _covered(placed[12].box, big) == 0
    assert small[placed[12].anchor[1], placed[12].anchor[0]]  # the leader line ends on the mask
    assert placed[1].inside  # big enough to hold its number


def test_labels_do_not_overlap_each_other():
    shape = (100, 100)
    masks = [(i + 1, _box(shape, 40 + 3 * i, 43 + 3 * i, 40, 43)) for i in range(4)]  # a cluster
    placed = place_labels(masks, {i: (14, 12) for i in range(1, 5)}, shape)
    boxes = [p.box for p in placed]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])


def test_small_chosen_mask_stays_visible_with_its_outline():
    rgb = np.full((300, 400, 3), 180, np.uint8)
    small = _box((300, 400), 140, 152, 250, 262)
    other = _box((300, 400), 40, 260, 30, 180)
    out = draw_objects(rgb, [(1, other), (12, small)], highlight={12})
    inner = out[142:150, 252:260].reshape(-1, 3)
    fill = (0.6 * 180 + 0.4 * np.array(_colour(11))).astype(int)
    assert np.abs(inner.astype(int) - fill).max() <= 1  # the mask's inside is its fill, no label on it
    edge = out[140, 250:262]
    assert (edge == np.array(_colour(11), np.uint8)).all()  # the outline is drawn, on top
    assert (out[100, 100] == 180).all()  # the unchosen object is not filled

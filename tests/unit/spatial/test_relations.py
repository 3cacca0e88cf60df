"""Pairwise relations with known answers, their consistency, and the budget of k per object."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.synthetic import box_mask as box
from helpers.synthetic import random_masks

from dtwin_agent.config import Settings, SpatialSettings
from dtwin_agent.spatial import CONVERSE, build_spatial, pairwise_relations

W, H = 100, 100


def rel(*masks: np.ndarray, near: float = 0.05) -> dict[tuple[int, int], list[str]]:
    return pairwise_relations(list(masks), W, H, SpatialSettings(near_fraction=near))


def test_left_right():
    r = rel(box(5, 40, 15, 50), box(70, 42, 80, 52))
    assert r[(0, 1)] == ["left of"]
    assert r[(1, 0)] == ["right of"]


def test_above_below():
    r = rel(box(40, 5, 50, 15), box(42, 70, 52, 80))
    assert r[(0, 1)] == ["above"]
    assert r[(1, 0)] == ["below"]


def test_diagonal_gives_both_directions():
    r = rel(box(5, 5, 15, 15), box(70, 70, 80, 80))
    assert r[(0, 1)] == ["left of", "above"]
    assert r[(1, 0)] == ["right of", "below"]


def test_inside_surrounding_in_a_hole():
    frame = box(10, 10, 60, 60) & ~box(25, 25, 45, 45)
    content = box(25, 25, 45, 45)  # fills the hole exactly: touches the frame, yet inside
    r = rel(frame, content)
    assert r[(1, 0)] == ["inside"]
    assert r[(0, 1)] == ["surrounding"]


def test_inside_for_overlapping_part():
    whole, part = box(10, 10, 80, 80), box(30, 30, 40, 40)  # SAM-style: the part lies on the whole
    r = rel(whole, part)
    assert r[(1, 0)] == ["inside"] and r[(0, 1)] == ["surrounding"]


def test_overlapping():
    r = rel(box(10, 10, 40, 40), box(30, 12, 60, 42))
    assert r[(0, 1)] == ["overlapping", "left of"]
    assert r[(1, 0)] == ["overlapping", "right of"]


def test_touching():
    r = rel(box(10, 10, 29, 29), box(30, 10, 49, 29))
    assert r[(0, 1)] == ["touching", "left of"]
    assert r[(1, 0)] == ["touching", "right of"]


def test_near_and_far():
    a, b, c = box(10, 10, 20, 20), box(24, 10, 34, 20), box(85, 10, 95, 20)
    r = rel(a, b, c, near=0.05)  # 0.05 x diagonal = 7.07 px
    assert r[(0, 1)] == ["near", "left of"]
    assert r[(0, 2)] == ["left of"]  # far: direction only
    assert "near" not in r[(1, 2)]
    r = rel(a, b, near=0.0)
    assert r[(0, 1)] == ["left of"]


def test_identical_centroids_have_no_direction():
    a, b = box(40, 40, 60, 60), box(45, 45, 55, 55) & ~box(48, 48, 52, 52)
    r = rel(b, a)
    assert r[(0, 1)] == ["inside"]
    ring_a = box(30, 30, 70, 70) & ~box(35, 35, 65, 65)
    ring_b = box(20, 20, 80, 80) & ~box(25, 25, 75, 75)
    r = rel(ring_a, ring_b)
    assert r[(0, 1)] == ["inside"]  # inside the filled outline of the larger ring


def _assert_consistent(r: dict[tuple[int, int], list[str]], n: int) -> None:
    topo = {"inside", "surrounding", "overlapping", "touching", "near"}
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            ab, ba = r.get((a, b), []), r.get((b, a), [])
            assert sorted(CONVERSE[k] for k in ab) == sorted(ba), (a, b, ab, ba)
            assert len(topo.intersection(ab)) <= 1
            assert not {"left of", "right of"} <= set(ab)
            assert not {"above", "below"} <= set(ab)
            for kind in ("left of", "right of", "above", "below", "inside", "surrounding"):
                assert not (kind in ab and kind in ba), (a, b, kind)
            if {"inside", "surrounding"} & set(ab):
                assert len(ab) == 1


@pytest.mark.parametrize("seed", range(4))
def test_converse_and_no_contradiction_random(seed):
    masks = random_masks(40, width=W, height=H, seed=seed, max_side_frac=0.4)
    r = pairwise_relations(masks, W, H)
    _assert_consistent(r, len(masks))
    assert {k for kinds in r.values() for k in kinds} >= {"overlapping", "left of", "above"}


def test_converse_on_a_partition():
    from helpers.synthetic import make_scene

    scene = make_scene(10, placement="touching", seed=3)
    masks = [*scene.masks, ~np.any(scene.masks, axis=0)]
    h, w = scene.image.shape[:2]
    r = pairwise_relations(masks, w, h)
    _assert_consistent(r, len(masks))
    assert any(k == "touching" for kinds in r.values() for k in kinds)
    assert not any(k == "overlapping" for kinds in r.values() for k in kinds)  # a partition


# ---------------------------------------------------------------- budget and text


@pytest.mark.parametrize("k", [0, 1, 2, 6])
def test_budget_respected(k):
    masks = random_masks(30, width=W, height=H, seed=1, max_side_frac=0.3)
    geos = build_spatial(masks, None, W, H, SpatialSettings(max_relations=k))
    assert all(len(g.relations) <= k for g in geos)
    if k:
        assert all(len(g.relations) == k for g in geos)  # 30 objects: always enough candidates
    full = pairwise_relations(masks, W, H)
    for index, g in enumerate(geos):
        for r in g.relations:
            assert r.kind in full[(index, r.target - 1)]
            assert r.target != g.id


def test_budget_prefers_salient_relations():
    big = box(0, 0, 99, 99) & ~box(40, 40, 59, 59)
    hole_fill = box(40, 40, 59, 59)
    far_things = [box(2 + 12 * i, 2, 8 + 12 * i, 8) for i in range(3)]
    # far_things overlap "big": they are inside it; hole_fill is inside it as well
    geos = build_spatial(
        [hole_fill, big, *far_things], None, W, H, Settings().merged({"spatial.max_relations": 1})
    )
    assert [(r.target, r.kind) for r in geos[0].relations] == [(2, "inside")]


def test_hierarchy_targets():
    from dtwin_agent.spatial.relations import hierarchy_targets

    # objects 1, 2; parts 3, 4 of 1; part 5 of 2
    allowed = hierarchy_targets([None, None, 1, 1, 2], [1, 2, 3, 4, 5])
    names = {a + 1: sorted(b + 1 for b in range(5) if allowed[a, b]) for a in range(5)}
    assert names == {1: [2], 2: [1], 3: [2, 4], 4: [2, 3], 5: [1]}

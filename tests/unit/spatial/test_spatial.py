"""The spatial layer (paper 3.2): polygons, bbox / area / centroid, relations, budget, T_i."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from helpers.synthetic import random_masks

from dtwin_agent import masks as mask_ops
from dtwin_agent.config import Settings, SpatialSettings
from dtwin_agent.spatial.relations import (
    CONVERSE,
    KIND_ORDER,
    build_spatial,
    filled,
    mask_to_polygon,
    pairwise_relations,
    spatial_text,
)
from dtwin_agent.twin import RLE, DigitalTwin, ImageInfo, Relation, TwinObject

W, H = 100, 100


def box(x0: int, y0: int, x1: int, y1: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """Boolean mask of the pixels x0..x1, y0..y1 inclusive."""
    mask = np.zeros(shape, bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def rel(*masks: np.ndarray, near: float = 0.05) -> dict[tuple[int, int], list[str]]:
    return pairwise_relations(list(masks), W, H, SpatialSettings(near_fraction=near))


# ---------------------------------------------------------------- polygons


def test_polygon_with_hole_is_valid_and_exact():
    ring = box(10, 10, 50, 50) & ~box(20, 20, 30, 40)
    poly = mask_to_polygon(ring)
    assert poly.is_valid and poly.geom_type == "Polygon"
    assert len(poly.interiors) == 1
    assert poly.area == ring.sum()
    assert poly.bounds == (10.0, 10.0, 51.0, 51.0)
    assert filled(poly).area == 41 * 41


def test_polygon_pixel_edges_random_masks():
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:18, 0:23]
    for _ in range(100):
        mask = rng.random((18, 23)) < rng.uniform(0.2, 0.8)  # holes, islands, diagonal pinches
        poly = mask_to_polygon(mask)
        assert poly.is_valid
        assert poly.area == pytest.approx(mask.sum())
        assert np.array_equal(shapely.contains_xy(poly, xs + 0.5, ys + 0.5), mask)


def test_adjacent_squares_touch():
    left, right = mask_to_polygon(box(10, 10, 19, 19)), mask_to_polygon(box(20, 10, 29, 19))
    assert left.touches(right)
    assert left.intersection(right).length == 10
    below = mask_to_polygon(box(10, 20, 19, 29))
    assert left.touches(below)


def test_empty_mask_polygon():
    assert mask_to_polygon(np.zeros((5, 5), bool)).is_empty
    with pytest.raises(ValueError):
        mask_to_polygon(np.zeros((2, 2, 2), bool))


# ---------------------------------------------------------------- per-object geometry


def test_bbox_area_centroid():
    mask = box(10, 20, 29, 29)
    (geo,) = build_spatial([mask], None, W, H)
    assert geo.id == 1
    assert geo.bbox == (10, 20, 29, 29) == mask_ops.bbox(mask)
    assert geo.area_pct == pytest.approx(2.0)
    assert geo.centroid == pytest.approx(mask_ops.centroid(mask))
    assert geo.relations == []
    assert geo.text == "bbox [10, 20, 29, 29]; 2.0% of the image; centre (20, 24), top left"


def test_rle_dict_and_array_inputs_agree():
    masks = [box(5, 5, 30, 30), box(31, 5, 60, 30), box(10, 60, 20, 70)]
    from_arrays = build_spatial(masks, [3, 7, 9], W, H)
    rles = [mask_ops.encode(m) for m in masks]
    from_rles = build_spatial(rles, [3, 7, 9], W, H)
    from_dicts = build_spatial([r.model_dump() for r in rles], [3, 7, 9], W, H)
    for a, b, c in zip(from_arrays, from_rles, from_dicts, strict=True):
        assert (a.id, a.bbox, a.area_pct, a.centroid, a.relations, a.text) == (
            b.id,
            b.bbox,
            b.area_pct,
            b.centroid,
            b.relations,
            b.text,
        )
        assert b.text == c.text
    assert {r.target for r in from_arrays[0].relations} <= {7, 9}


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        build_spatial([np.zeros((H, W), bool)], None, W, H)
    with pytest.raises(ValueError, match="shape"):
        build_spatial([np.ones((5, 5), bool)], None, W, H)
    with pytest.raises(ValueError, match="ids"):
        build_spatial([box(1, 1, 5, 5)], [1, 2], W, H)
    with pytest.raises(ValueError, match="unique"):
        build_spatial([box(1, 1, 5, 5), box(8, 8, 9, 9)], [2, 2], W, H)
    assert build_spatial([], None, W, H) == []


# ---------------------------------------------------------------- relations with known answers


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


def test_spatial_text_template():
    relations = [
        Relation(target=5, kind="touching"),
        Relation(target=1, kind="inside"),
        Relation(target=3, kind="touching"),
        Relation(target=4, kind="left of", distance=12.5),
        Relation(target=5, kind="above"),
    ]
    text = spatial_text((12, 40, 200, 310), 3.214, (106.4, 175.6), relations, 1000, 800)
    assert text == (
        "bbox [12, 40, 200, 310]; 3.2% of the image; centre (106, 176), top left; "
        "inside #1; touching #3, #5; left of #4; above #5"
    )
    assert spatial_text((0, 0, 9, 9), 45.3, (500, 400), [], 1000, 800).endswith(
        "45% of the image; centre (500, 400), centre"
    )
    assert "0.35% of the image" in spatial_text((0, 0, 1, 1), 0.3512, (990, 790), [], 1000, 800)
    assert spatial_text((0, 0, 1, 1), 1, (990, 790), [], 1000, 800).endswith("bottom right")
    assert KIND_ORDER[0] == "inside"


def test_text_lists_budgeted_relations():
    masks = [box(10, 10, 29, 29), box(30, 10, 49, 29), box(10, 60, 29, 79)]
    geos = build_spatial(masks, [1, 2, 3], W, H)
    assert geos[0].text.startswith("bbox [10, 10, 29, 29]; 4.0% of the image; centre (20, 20), top left; ")
    assert "touching #2" in geos[0].text and "left of #2" in geos[0].text and "above #3" in geos[0].text
    assert geos[0].relations[0] == Relation(target=2, kind="touching", distance=0.0)


def test_200_objects_fill_a_valid_twin():
    masks = random_masks(200, width=512, height=512, seed=3)
    rles = [mask_ops.encode(m) for m in masks]
    settings = Settings()
    geos = build_spatial(rles, None, 512, 512, settings)
    assert len(geos) == 200
    assert all(len(g.relations) <= settings.spatial.max_relations for g in geos)
    objects = [
        TwinObject(
            id=g.id,
            mask=RLE.model_validate(rle.model_dump()),
            bbox=g.bbox,
            area_pct=g.area_pct,
            centroid=g.centroid,
            relations=g.relations,
            spatial=g.text,
        )
        for g, rle in zip(geos, rles, strict=True)
    ]
    twin = DigitalTwin(image=ImageInfo(width=512, height=512, sha256="0" * 64), objects=objects)
    prompt = twin.to_prompt_json()
    assert len(prompt) < 200 * 400  # linear in N': bounded text per object
    for g, m in zip(geos, masks, strict=True):
        assert g.area_px == m.sum()
        assert g.polygon.is_valid and g.polygon.area == pytest.approx(m.sum())

"""Per-object records: bbox / area / centroid, input forms, T_i of the budgeted relations."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.synthetic import box_mask as box
from helpers.synthetic import random_masks

from dtwin_agent import masks as mask_ops
from dtwin_agent.config import Settings
from dtwin_agent.spatial import build_spatial
from dtwin_agent.twin import RLE, DigitalTwin, ImageInfo, Relation, TwinObject

W, H = 100, 100


def test_bbox_area_centroid():
    mask = box(10, 20, 29, 29)
    (geo,) = build_spatial([mask], None, W, H)
    assert geo.id == 1
    assert geo.bbox == (10, 20, 29, 29) == mask_ops.bbox(mask)
    assert geo.area_pct == pytest.approx(2.0)
    assert geo.centroid == pytest.approx(mask_ops.centroid(mask))
    assert geo.relations == []
    assert geo.text == "top left; x 10-30 y 20-30; area 2.0%"  # a single object has no ranks


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


def test_text_lists_budgeted_relations():
    masks = [box(10, 10, 29, 29), box(30, 10, 49, 29), box(10, 60, 29, 79)]
    geos = build_spatial(masks, [1, 2, 3], W, H)
    assert geos[0].text.startswith("top left; x 10-30 y 10-30; area 4.0%, largest; leftmost, topmost; ")
    assert "area 4.0%, largest; rightmost, topmost;" in geos[1].text  # ties share the better rank
    assert "area 4.0%, largest; leftmost, bottommost;" in geos[2].text
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


def car_with_parts() -> tuple[list[np.ndarray], list[int], list[int | None]]:
    """A car (#1) with a wheel (#3) and a window (#4), and a lamp post (#2) beside it."""
    car = box(10, 40, 69, 79)
    post = box(75, 10, 79, 79)
    wheel = box(15, 70, 24, 79)
    window = box(20, 45, 39, 54)
    return [car, post, wheel, window], [1, 2, 3, 4], [None, None, 1, 1]


def test_hierarchy_relations_skip_what_part_of_says():
    """An object's budget goes to other objects, a part's to its siblings and other objects."""
    masks, ids, parents = car_with_parts()
    geos = {g.id: g for g in build_spatial(masks, ids, W, H, parents=parents)}
    car, post, wheel, window = geos[1], geos[2], geos[3], geos[4]
    assert {r.target for r in car.relations} == {2}  # not "surrounding #3 #4": its own parts
    assert {r.target for r in post.relations} == {1}  # objects name objects, not the car's parts
    assert all(r.target != 1 for r in wheel.relations + window.relations)  # no "inside #1"
    assert {r.target for r in wheel.relations} <= {2, 4}
    assert "part of #1" in wheel.text and "inside" not in wheel.text
    assert "surrounding" not in car.text
    # without parents the same masks relate by containment, as in a one-level twin
    flat = {g.id: g for g in build_spatial(masks, ids, W, H)}
    assert "surrounding #3 #4" in flat[1].text and "inside #1" in flat[3].text


def test_hierarchy_ranks_count_objects_among_objects_and_parts_among_siblings():
    masks, ids, parents = car_with_parts()
    geos = {g.id: g for g in build_spatial(masks, ids, W, H, parents=parents)}
    assert "largest" in geos[1].text.split("; ")[2]  # car vs lamp post
    assert "smallest" in geos[2].text.split("; ")[2]
    # the window is the larger of the car's two parts, though far smaller than either object
    assert geos[4].text.split("; ")[3] == "area 2.0%, largest"
    assert geos[3].text.split("; ")[3] == "area 1.0%, smallest"
    assert "leftmost" in geos[3].text and "rightmost" in geos[4].text
    flat = {g.id: g for g in build_spatial(masks, ids, W, H)}
    assert "smallest" in flat[3].text and "2nd smallest" in flat[4].text  # ranked with the objects


def test_a_part_alone_in_its_object_has_no_ranks():
    car, post, wheel, _ = car_with_parts()[0]
    geos = build_spatial([car, post, wheel], [1, 2, 3], W, H, parents=[None, None, 1])
    assert geos[2].text.split("; ")[:3] == ["bottom left", "part of #1", "x 15-25 y 70-80"]
    assert geos[2].text.split("; ")[3] == "area 1.0%"  # ranked alone: no rank words


@pytest.mark.parametrize("parents", [[None, 9], [None, 1, 2], [1, None]])
def test_parents_must_be_top_level_ids(parents):
    masks = [box(10 * i, 10 * i, 10 * i + 5, 10 * i + 5) for i in range(len(parents))]
    with pytest.raises(ValueError, match="top-level"):
        build_spatial(masks, None, W, H, parents=parents)

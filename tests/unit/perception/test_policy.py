"""The granularity policy (paper 3.1) on hand-made masks whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from dtwin_agent.perception.base import Proposal
from dtwin_agent.perception.policy import (
    assemble_hierarchy,
    centroid_prompt_point,
    choose_growth,
    containment_filter,
    filter_by_predicted_iou,
    find_groups,
    part_dedup,
)

H, W = 40, 50


def box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """A boolean H x W mask with the rectangle [y0:y1, x0:x1] set."""
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# --------------------------------------------------------------------------- theta filter


def test_theta_filter_is_strictly_greater() -> None:
    props = [Proposal(box(0, 0, 5, 5), predicted_iou=v) for v in (0.5, 0.88, 0.880001, 0.95)]
    kept = filter_by_predicted_iou(props, 0.88)
    assert [p.predicted_iou for p in kept] == [0.880001, 0.95]


def test_theta_filter_keeps_order_and_rejects_bad_theta() -> None:
    props = [Proposal(box(0, 0, 5, 5), predicted_iou=v) for v in (0.99, 0.2, 0.9)]
    assert [p.predicted_iou for p in filter_by_predicted_iou(props, 0.0)] == [0.99, 0.2, 0.9]
    with pytest.raises(ValueError, match="theta"):
        filter_by_predicted_iou(props, 1.5)


# --------------------------------------------------------------------------- part dedup


def test_part_dedup_keeps_the_higher_predicted_iou() -> None:
    a = box(0, 0, 20, 20)  # 400 px
    b = box(0, 0, 20, 19)  # 380 px inside a: IoU 0.95
    far = box(30, 25, 45, 35)
    props = [
        Proposal(a, predicted_iou=0.90),
        Proposal(b, predicted_iou=0.97),
        Proposal(far, predicted_iou=0.5),
    ]
    kept = part_dedup(props, tau=0.85)
    assert [p.predicted_iou for p in kept] == [0.97, 0.5]  # input order, a removed
    assert kept[0].mask is b


def test_part_dedup_keeps_both_when_iou_not_above_tau() -> None:
    a = box(0, 0, 20, 20)
    b = box(0, 0, 20, 19)  # IoU exactly 0.95
    props = [Proposal(a, predicted_iou=0.9), Proposal(b, predicted_iou=0.97)]
    assert len(part_dedup(props, tau=0.95)) == 2  # strict >
    assert len(part_dedup(props, tau=0.949)) == 1


def test_part_dedup_is_greedy_like_nms() -> None:
    # a ~ b and b ~ c overlap above tau, a and c do not: b loses to a; c survives because b was removed.
    a = box(0, 0, 20, 10)
    b = box(2, 0, 22, 10)
    c = box(4, 0, 24, 10)
    ious = (180 / 220, 160 / 240)  # IoU(a,b)=IoU(b,c)=0.818, IoU(a,c)=0.667
    assert ious[0] > 0.8 > ious[1]
    props = [Proposal(a, predicted_iou=0.99), Proposal(b, predicted_iou=0.95), Proposal(c, predicted_iou=0.9)]
    kept = part_dedup(props, tau=0.8)
    assert [p.predicted_iou for p in kept] == [0.99, 0.9]


def test_part_dedup_validates() -> None:
    with pytest.raises(ValueError, match="tau"):
        part_dedup([], tau=-0.1)
    with pytest.raises(ValueError, match="shape"):
        part_dedup([Proposal(box(0, 0, 2, 2)), Proposal(np.ones((3, 3), dtype=bool))], tau=0.5)
    assert part_dedup([], tau=0.5) == []


# --------------------------------------------------------------------------- containment (Eq. 3)


def test_containment_drops_inner_mask_above_tau_prime() -> None:
    outer = box(0, 0, 20, 20)
    inner = box(5, 5, 9, 9)  # fully inside: R = 1.0
    assert containment_filter([inner, outer], tau_prime=0.8) == [1]


def test_containment_keeps_mask_with_ratio_below_or_equal_tau_prime() -> None:
    outer = box(0, 0, 20, 20)
    part_70 = box(13, 0, 23, 1)  # 10 px, 7 inside: R = 0.7
    part_80 = box(12, 5, 22, 6)  # 10 px, 8 inside: R = 0.8 (not > 0.8)
    part_90 = box(11, 10, 21, 11)  # 10 px, 9 inside: R = 0.9
    kept = containment_filter([outer, part_70, part_80, part_90], tau_prime=0.8)
    assert kept == [0, 1, 2]
    assert containment_filter([outer, part_90], tau_prime=0.95) == [0, 1]


def test_containment_checks_every_larger_kept_mask_and_sorts_by_area() -> None:
    big = box(0, 0, 20, 40)  # 800 px, left
    medium = box(25, 0, 45, 20)  # 400 px, right, disjoint from big
    inside_medium = box(30, 5, 35, 10)  # inside medium only
    tiny_free = box(47, 30, 49, 32)  # disjoint from all
    kept = containment_filter([inside_medium, tiny_free, medium, big], tau_prime=0.8)
    assert kept == [3, 2, 1]  # largest first; inside_medium dropped against medium


def test_containment_drops_empty_masks_and_duplicates() -> None:
    a = box(0, 0, 10, 10)
    assert containment_filter([a, np.zeros((H, W), dtype=bool), a.copy()], tau_prime=0.8) == [0]
    assert containment_filter([], tau_prime=0.8) == []
    with pytest.raises(ValueError, match="tau_prime"):
        containment_filter([a], tau_prime=2.0)


def test_containment_skips_masks_that_may_not_be_containers() -> None:
    outer, inner = box(0, 0, 20, 20), box(5, 5, 9, 9)
    assert containment_filter([inner, outer], tau_prime=0.8, containers=[True, False]) == [1, 0]
    assert containment_filter([inner, outer], tau_prime=0.8, containers=[False, True]) == [1]
    with pytest.raises(ValueError, match="containers"):
        containment_filter([inner, outer], tau_prime=0.8, containers=[True])


def test_containment_scene_share_mask_is_not_a_container() -> None:
    scene = box(0, 0, W, H)  # SAM's everything mode returns the whole frame as one mask
    cup, saucer = box(5, 5, 12, 12), box(20, 20, 30, 30)
    assert containment_filter([cup, scene, saucer], tau_prime=0.8, scene_share=0.5) == [1, 2, 0]
    assert containment_filter([cup, scene, saucer], tau_prime=0.8) == [1]  # without the rule: Eq. 3
    table = box(0, 10, W, H)  # 75% of the image: the table top with the cup on it
    assert containment_filter([cup, table], tau_prime=0.8, scene_share=0.5) == [1, 0]
    car = box(0, 0, W, 19)  # 47.5% of the image: an object, it holds its parts
    wheel = box(5, 14, 10, 19)
    assert containment_filter([car, wheel], tau_prime=0.8, scene_share=0.5) == [0]
    with pytest.raises(ValueError, match="scene_share"):
        containment_filter([cup], tau_prime=0.8, scene_share=1.5)


# --------------------------------------------------------------------------- groups (unions of objects)

GROUPS = {"tau": 0.85, "tau_prime": 0.8, "union_cover": 0.9}


def groups(masks, ious=None, **changes):
    """find_groups with the default thresholds; SAM surest of the smallest mask unless ``ious``."""
    if ious is None:
        ious = [1.0 - m.sum() / m.size for m in masks]
    return find_groups(masks, ious, **(GROUPS | changes))


def test_group_union_of_two_touching_objects() -> None:
    cup, saucer = box(10, 10, 18, 18), box(18, 10, 26, 18)  # touching: the union is one component
    both = box(10, 10, 26, 18)
    assert groups([both, cup, saucer]) == [True, False, False]
    # as Eq. 3's m* the union would drop both objects; as a group it holds nothing
    keep = containment_filter([both, cup, saucer], tau_prime=0.8, containers=[False, True, True])
    assert keep == [0, 1, 2]


def test_group_union_of_two_objects_apart() -> None:
    left, right = box(2, 5, 10, 15), box(30, 20, 40, 30)
    both = left | right  # two connected components
    assert groups([left, both, right]) == [False, True, False]


def test_group_needs_members_to_cover_union_cover() -> None:
    car = box(5, 10, 45, 30)  # 800 px
    wheels = [box(8, 26, 14, 30), box(36, 26, 42, 30)]  # 24 px each: the car holds its parts
    assert groups([car, *wheels]) == [False, False, False]
    keep = containment_filter([car, *wheels], tau_prime=0.8, containers=[True] * 3)
    assert keep == [0]  # Eq. 3: the wheels go into the car at object level
    body = box(5, 10, 45, 26)  # the parts SAM found cover the car: 640 + 48 of 800 px = 0.86
    assert groups([car, body, *wheels]) == [False, False, False, False]
    assert groups([car, body, *wheels], union_cover=0.85) == [True] + [False] * 3


def test_group_needs_two_members() -> None:
    obj, part = box(10, 10, 30, 30), box(10, 10, 30, 27)  # one member: IoU 0.85 <= tau, covers 0.85
    other = box(40, 0, 50, 10)
    assert groups([obj, part, other], union_cover=0.8) == [False, False, False]
    half = box(10, 27, 30, 30)  # a second member
    assert groups([obj, part, other, half], union_cover=0.8) == [True, False, False, False]


def test_group_members_are_not_duplicates_of_the_mask() -> None:
    obj = box(10, 10, 30, 30)  # 400 px
    copy_a, copy_b = box(10, 10, 30, 29), box(10, 11, 30, 30)  # IoU 0.95 > tau: the same object
    assert groups([obj, copy_a, copy_b]) == [False, False, False]
    assert groups([obj, copy_a, copy_b], tau=0.99) == [True, False, False]


def test_group_only_when_sam_is_surer_of_a_member() -> None:
    cup, saucer = box(10, 10, 18, 18), box(18, 10, 26, 18)
    both = box(10, 10, 26, 18)
    assert groups([both, cup, saucer], [0.93, 0.97, 0.95]) == [True, False, False]
    # SAM as sure of the whole as of each part: one object whose parts tile it (a shirt, two sleeves)
    assert groups([both, cup, saucer], [0.97, 0.97, 0.95]) == [False, False, False]


def test_find_groups_validates() -> None:
    a = box(0, 0, 5, 5)
    assert groups([]) == []
    assert groups([a, a]) == [False, False]
    with pytest.raises(ValueError, match="union_cover"):
        groups([a], union_cover=-0.1)
    with pytest.raises(ValueError, match="shape"):
        groups([a, a, np.zeros((3, 3), bool)])
    with pytest.raises(ValueError, match="predicted_ious"):
        find_groups([a, a, a], [0.9], **GROUPS)


# --------------------------------------------------------------------------- re-prompt growth (object level)

GROWTH = {"theta": 0.88, "cover": 0.9, "tau_prime": 0.8, "border_max": 0.25}


def grow(originals, candidates, ious=None, **changes):
    ious = ious or [[0.95] * len(group) for group in candidates]
    return choose_growth(originals, candidates, ious, **(GROWTH | changes))


def test_growth_part_to_whole_object_replaces_the_original() -> None:
    window = box(20, 10, 26, 16)  # the part everything mode found
    vehicle = box(15, 8, 35, 25)  # the object the re-prompt returns: holds the part, away from the border
    assert grow([window], [[window, vehicle]]) == [1]


def test_growth_below_theta_keeps_the_original() -> None:
    window, vehicle = box(20, 10, 26, 16), box(15, 8, 35, 25)
    assert grow([window], [[vehicle]], [[0.88]]) == [None]  # strict >, as the theta filter
    assert grow([window], [[vehicle]], [[0.881]]) == [0]


def test_growth_must_be_larger_and_not_the_whole_frame() -> None:
    obj = box(10, 10, 30, 30)
    tighter = box(11, 11, 30, 30)  # covers 90% of the original but is smaller: no growth
    assert grow([obj], [[tighter]]) == [None]
    scene = np.ones((H, W), dtype=bool)
    assert grow([obj], [[scene]], border_max=1.0) == [None]  # >= 95% of the image: the scene


def test_growth_must_cover_most_of_the_original() -> None:
    obj = box(10, 10, 20, 20)  # 100 px
    shifted = box(12, 10, 32, 22)  # 240 px, holds 80 px of the original
    assert grow([obj], [[shifted]]) == [None]
    assert grow([obj], [[shifted]], cover=0.8) == [0]


def test_growth_that_swallows_another_kept_proposal_is_rejected() -> None:
    cup, saucer = box(10, 10, 18, 18), box(19, 10, 27, 18)  # two kept objects side by side
    both = box(10, 10, 27, 18)  # the re-prompt at the cup returns the pair: a group
    assert grow([cup, saucer], [[both], [both]]) == [None, None]
    # a proposal mostly outside the growth (R <= tau') does not count as swallowed
    beside = box(26, 10, 36, 18)  # 1 of its 10 columns inside `both`
    assert grow([cup, beside], [[both], []]) == [0, None]


def test_growth_may_hold_proposals_the_original_already_held() -> None:
    body = box(10, 10, 30, 30)
    logo = box(14, 14, 18, 18)  # a kept proposal inside the original
    bigger_body = box(9, 9, 31, 32)
    assert grow([body, logo], [[bigger_body], []]) == [0, None]


def test_growth_along_the_image_border_is_background() -> None:
    obj = box(20, 15, 30, 25)
    floor = box(0, 15, W, H)  # the object plus the floor up to three image edges
    assert grow([obj], [[floor]]) == [None]
    assert grow([obj], [[floor]], border_max=1.0) == [0]
    # an object already at the border may grow along what it touched
    cut = box(0, 15, 10, 25)
    assert grow([cut], [[box(0, 13, 12, 27)]]) == [0]


def test_largest_plausible_candidate_wins() -> None:
    obj = box(20, 15, 26, 21)
    small, medium = box(19, 14, 27, 22), box(17, 12, 29, 24)
    group = box(17, 12, 45, 24)
    other = box(32, 12, 44, 24)  # kept: makes `group` a swallowing growth
    assert grow([obj, other], [[small, group, medium], []]) == [2, None]


def test_choose_growth_validates() -> None:
    a = box(0, 0, 5, 5)
    assert choose_growth([], [], [], **GROWTH) == []
    assert grow([a], [[]]) == [None]
    with pytest.raises(ValueError, match="cover"):
        grow([a], [[a]], cover=1.5)
    with pytest.raises(ValueError, match="one entry per original"):
        choose_growth([a], [], [], **GROWTH)
    with pytest.raises(ValueError, match="one value per candidate"):
        choose_growth([a], [[a]], [[0.9, 0.9]], **GROWTH)
    with pytest.raises(ValueError, match="shape"):
        grow([a], [[np.ones((3, 3), dtype=bool)]])


# --------------------------------------------------------------------------- hierarchy twins


def test_hierarchy_lists_objects_then_parts_with_their_object() -> None:
    vehicle, house = box(2, 2, 30, 20), box(34, 2, 48, 38)
    window, wheel = box(5, 4, 10, 8), box(20, 15, 26, 20)
    door = box(37, 25, 42, 38)
    out = assemble_hierarchy(
        [Proposal(vehicle), Proposal(house)],
        [Proposal(window), Proposal(wheel), Proposal(door)],
        tau=0.85,
        tau_prime=0.8,
    )
    assert [p.parent for p in out] == [None, None, 0, 0, 1]
    assert out[2].mask is window and out[4].mask is door


def test_hierarchy_parent_is_the_smallest_object_holding_the_part() -> None:
    scene_wide, vehicle = box(0, 0, 50, 40), box(2, 2, 30, 20)
    window = box(5, 4, 10, 8)
    out = assemble_hierarchy(
        [Proposal(scene_wide), Proposal(vehicle)], [Proposal(window)], tau=0.85, tau_prime=0.8
    )
    assert out[-1].parent == 1


def test_hierarchy_drops_parts_that_are_objects_and_keeps_orphans() -> None:
    cup = box(2, 2, 12, 12)
    same_cup = box(2, 2, 12, 11)  # IoU 0.9 > tau: the part is the object
    straddling = box(10, 10, 20, 20)  # 4% inside the cup: no object holds it
    out = assemble_hierarchy(
        [Proposal(cup)], [Proposal(same_cup), Proposal(straddling)], tau=0.85, tau_prime=0.8
    )
    assert len(out) == 2 and out[1].mask is straddling and out[1].parent is None


def test_hierarchy_edge_cases_and_validation() -> None:
    a = Proposal(box(0, 0, 5, 5), parent=3)
    assert [p.parent for p in assemble_hierarchy([a], [], tau=0.85, tau_prime=0.8)] == [None]
    assert [p.parent for p in assemble_hierarchy([], [a], tau=0.85, tau_prime=0.8)] == [None]
    assert a.parent == 3  # inputs are not changed
    with pytest.raises(ValueError, match="tau_prime"):
        assemble_hierarchy([a], [a], tau=0.85, tau_prime=1.2)


# --------------------------------------------------------------------------- centroid (Eq. 2)


def test_centroid_of_convex_mask_is_the_mean() -> None:
    mask = box(10, 4, 20, 8)  # x 10..19, y 4..7
    assert centroid_prompt_point(mask) == (14.5, 5.5)


def test_centroid_of_ring_snaps_inside() -> None:
    ys, xs = np.mgrid[0:H, 0:W]
    r = np.hypot(xs - 25, ys - 20)
    ring = (r >= 8) & (r < 11)
    assert not ring[20, 25]  # the true centroid is in the hole
    x, y = centroid_prompt_point(ring)
    assert ring[int(y), int(x)]
    assert float(x).is_integer() and float(y).is_integer()
    assert 8 <= np.hypot(x - 25, y - 20) < 9  # on the inner edge: the nearest ring pixel


def test_centroid_of_c_shape_snaps_to_nearest_pixel() -> None:
    c_shape = box(10, 10, 30, 13) | box(10, 27, 30, 30) | box(10, 10, 13, 30)  # opening to the right
    cx, cy = np.nonzero(c_shape)[1].mean(), np.nonzero(c_shape)[0].mean()
    assert not c_shape[round(cy), round(cx)]
    x, y = centroid_prompt_point(c_shape)
    assert c_shape[int(y), int(x)]
    ys, xs = np.nonzero(c_shape)
    assert np.isclose(np.hypot(x - cx, y - cy), np.hypot(xs - cx, ys - cy).min())


def test_centroid_rejects_empty_and_non_2d() -> None:
    with pytest.raises(ValueError):
        centroid_prompt_point(np.zeros((H, W), dtype=bool))
    with pytest.raises(ValueError):
        centroid_prompt_point(np.ones((2, 2, 2), dtype=bool))

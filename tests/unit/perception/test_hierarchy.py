"""Hierarchy twins: objects and their parts in one twin, each part's T_i naming its object."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.synthetic import make_composite_scene
from helpers.tiny_sam import build_tiny_sam, synthetic_image

from dtwin_agent.config import Settings
from dtwin_agent.graph.nodes.propose import proposals_to_records
from dtwin_agent.graph.nodes.spatial import build_spatial
from dtwin_agent.masks import encode
from dtwin_agent.perception.base import Proposal
from dtwin_agent.perception.offline import OfflineProposer
from dtwin_agent.perception.sam import SamProposer
from dtwin_agent.twin import DigitalTwin, ImageInfo, TwinObject

SHA = "0" * 64


def check_structure(proposals: list[Proposal]) -> None:
    objects = [p for p in proposals if p.parent is None]
    assert proposals[: len(objects)] == objects or all(p.parent is None for p in proposals[: len(objects)])
    for part in proposals:
        if part.parent is not None:
            assert 0 <= part.parent < len(proposals)
            parent = proposals[part.parent]
            assert parent.parent is None
            held = (part.mask & parent.mask).sum() / part.mask.sum()
            assert held > 0.8


def test_sam_hierarchy_is_objects_then_parts_from_one_encoder_pass() -> None:
    model = build_tiny_sam()
    settings = Settings.model_validate(
        {"perception": {"points_per_side": 5, "prompts": "grid", "box_nms_thresh": 1.0, "device": "cpu"}}
    )
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        proposer = SamProposer(settings, model=model)
        image = synthetic_image()
        hierarchy = proposer.propose(image, "hierarchy")
    finally:
        handle.remove()
    assert len(calls) == 1
    objects = proposer.propose(image, "object")
    n = len(objects)
    assert n and all(p.parent is None for p in hierarchy[:n])
    assert [p.mask.tobytes() for p in hierarchy[:n]] == [p.mask.tobytes() for p in objects]
    check_structure(hierarchy)
    with pytest.raises(ValueError, match="hierarchy"):
        proposer.propose(image, "scene")


def test_offline_hierarchy_nests_part_regions_in_object_regions() -> None:
    scene = make_composite_scene(3, noise=6.0, seed=1)
    proposer = OfflineProposer(Settings())
    out = proposer.propose(scene.image, "hierarchy")
    check_structure(out)
    objects = proposer.propose(scene.image, "object")
    assert len(out) >= len(objects)


def test_records_map_parent_indices_to_ids() -> None:
    big = np.zeros((20, 20), bool)
    big[0:10, 0:10] = True
    small = np.zeros((20, 20), bool)
    small[2:4, 2:4] = True
    tiny = np.zeros((20, 20), bool)
    tiny[15, 15] = True
    # parts listed before their object: ids follow area, parents follow ids
    proposals = [Proposal(small, parent=1), Proposal(big), Proposal(tiny, parent=3), Proposal(tiny.copy())]
    records = proposals_to_records(proposals, (20, 20), min_area_pct=0.5, max_objects=10)
    assert [(r.id, r.parent) for r in records] == [(1, None), (2, 1)]  # the 1-px masks are under 0.5%


def test_twin_text_names_the_parent_and_the_twin_validates_it() -> None:
    big = np.zeros((40, 60), bool)
    big[5:35, 5:55] = True
    window = np.zeros((40, 60), bool)
    window[10:15, 10:20] = True
    state = {
        "proposals": proposals_to_records(
            [Proposal(big), Proposal(window, parent=0)], (40, 60), min_area_pct=0.0, max_objects=10
        ),
        "width": 60,
        "height": 40,
        "image_sha256": SHA,
        "granularity": "hierarchy",
    }
    twin = build_spatial(state, None)["twin"]  # the graph node, default settings
    assert twin.granularity == "hierarchy"
    assert twin.get(2).parent == 1 and twin.get(1).parent is None
    assert "part of #1" in twin.get(2).spatial and "part of" not in twin.get(1).spatial
    assert "part of #1" in twin.to_prompt_json()
    again = DigitalTwin.model_validate_json(twin.model_dump_json())
    assert again == twin


def obj(object_id: int, parent: int | None = None) -> TwinObject:
    mask = np.zeros((10, 10), bool)
    mask[object_id, object_id] = True
    return TwinObject(
        id=object_id,
        mask=encode(mask),
        bbox=(object_id,) * 4,
        area_pct=1.0,
        centroid=(0.0, 0.0),
        parent=parent,
    )


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([obj(1), obj(2, parent=3)], "parent: 3"),  # unknown
        ([obj(1, parent=1)], "parent: 1"),  # itself
        ([obj(1), obj(2, parent=1), obj(3, parent=2)], "parent: 2"),  # a part of a part
    ],
)
def test_twin_rejects_bad_parents(objects, message) -> None:
    with pytest.raises(ValueError, match=message):
        DigitalTwin(
            image=ImageInfo(width=10, height=10, sha256=SHA), granularity="hierarchy", objects=objects
        )


def test_json_d_grows_linearly_with_parts() -> None:
    """Each part adds its own entry and one clause; nothing per pair of objects."""
    image = ImageInfo(width=10, height=10, sha256=SHA)
    sizes = []
    for parts in (0, 2, 4, 6):
        objects = [obj(i) for i in range(1, 3)] + [obj(i, parent=1) for i in range(3, 3 + parts)]
        objects = [
            o.model_copy(update={"spatial": "t" + (f"; part of #{o.parent}" if o.parent else "")})
            for o in objects
        ]
        sizes.append(len(DigitalTwin(image=image, granularity="hierarchy", objects=objects).to_prompt_json()))
    steps = np.diff(sizes)
    assert len(set(steps.tolist())) == 1 and steps[0] > 0

import json

import numpy as np
import pytest
from pydantic import ValidationError

from dtwin_agent import masks
from dtwin_agent.twin import RLE, DigitalTwin, ImageInfo, ObjectDecision, ReasoningStep, Relation, TwinObject


def square(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def make_twin(h=40, w=60):
    a = square(h, w, 2, 2, 20, 20)
    b = square(h, w, 30, 5, 50, 30)
    objs = []
    for i, m in enumerate([a, b], start=1):
        objs.append(
            TwinObject(
                id=i,
                mask=masks.encode(m),
                bbox=masks.bbox(m),
                area_pct=100 * m.mean(),
                centroid=masks.centroid(m),
                predicted_iou=0.9,
                semantic=f"thing {i}",
                relations=[Relation(target=3 - i, kind="left of" if i == 1 else "right of", distance=10.0)],
                spatial=f"T{i}",
            )
        )
    return DigitalTwin(image=ImageInfo(width=w, height=h, sha256="0" * 64, source="t"), objects=objs), a, b


def test_rle_round_trip_and_helpers():
    m = square(30, 50, 3, 4, 20, 25)
    rle = masks.encode(m)
    assert rle.size == (30, 50)
    assert np.array_equal(masks.decode(rle), m)
    assert masks.area(rle) == m.sum()
    assert masks.bbox(m) == (3, 4, 19, 24)
    cx, cy = masks.centroid(m)
    assert (cx, cy) == pytest.approx((11.0, 14.0))


def test_iou_matrix_matches_numpy():
    a = square(20, 20, 0, 0, 10, 10)
    b = square(20, 20, 5, 5, 15, 15)
    got = masks.iou_matrix([masks.encode(a)], [masks.encode(a), masks.encode(b)])
    assert got.shape == (1, 2)
    assert got[0, 0] == pytest.approx(1.0)
    assert got[0, 1] == pytest.approx(masks.iou(a, b)) == pytest.approx(25 / 175)


def test_resize_mask_nearest_back_to_original():
    m = square(10, 10, 2, 2, 6, 6)
    big = masks.resize_mask(m, (100, 100))
    assert big.shape == (100, 100) and big.dtype == bool
    assert big[20:60, 20:60].all() and not big[:20].any()


def test_lossless_json_round_trip():
    twin, a, b = make_twin()
    again = DigitalTwin.model_validate_json(twin.model_dump_json())
    assert again == twin
    assert np.array_equal(again.get(1).decode_mask(), a)
    assert np.array_equal(again.union_mask([1, 2]), a | b)
    assert not again.union_mask([]).any()


def test_prompt_json_has_no_masks_and_follows_eq5():
    twin, _, _ = make_twin()
    data = json.loads(twin.to_prompt_json())
    assert data == {
        "1": {"spatial": "T1", "semantic": "thing 1"},
        "2": {"spatial": "T2", "semantic": "thing 2"},
    }
    refined = ReasoningStep(
        step=1,
        objects={
            1: ObjectDecision(decision="rejected"),
            2: ObjectDecision(semantic="new", reasoning="because"),
        },
    )
    step = json.loads(twin.to_prompt_json(refined))
    assert step == {"2": {"spatial": "T2", "semantic": "new", "reasoning": "because"}}
    assert "counts" not in twin.to_prompt_json()


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["objects"][1].update(id=1), "duplicate ids"),
        (lambda d: d["objects"][0]["mask"].update(size=[10, 10]), "objects[id=1].mask"),
        (lambda d: d["objects"][0].update(bbox=[0, 0, 999, 5]), "objects[id=1].bbox"),
        (lambda d: d["objects"][0]["relations"][0].update(target=9), "objects[id=1].relations"),
        (lambda d: d.update(granularity="pixel"), "granularity"),
        (lambda d: d["objects"][0].update(area_pct=140), "area_pct"),
    ],
    ids=[
        "duplicate-id",
        "mask-size",
        "bbox-outside",
        "unknown-relation-target",
        "bad-granularity",
        "area>100",
    ],
)
def test_validation_errors_name_the_field(mutate, field):
    twin, _, _ = make_twin()
    data = json.loads(twin.model_dump_json())
    mutate(data)
    with pytest.raises(ValidationError, match=field.replace("[", r"\[").replace("]", r"\]")):
        DigitalTwin.model_validate(data)


def test_rle_rejects_bad_size():
    with pytest.raises(ValidationError):
        RLE(size=(0, 5), counts="")


def test_summary_counts_objects_and_parts():
    twin, _, _ = make_twin()
    assert twin.summary == "2 objects (object level)"
    part = twin.objects[1].model_copy(update={"parent": 1, "relations": []})
    hierarchy = DigitalTwin(
        image=twin.image,
        granularity="hierarchy",
        objects=[twin.objects[0].model_copy(update={"relations": []}), part],
    )
    assert hierarchy.summary == "1 object with 1 part"

"""Loaders on tiny fixture datasets written here in the real formats."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dtwin_agent.errors import InputError
from dtwin_agent.evaluation.datasets import (
    EVAL_SPLITS,
    Sample,
    canonical_name,
    load_dataset,
    load_llmseg40k,
    load_reasonseg,
    load_refcoco,
    reasonseg_label_map,
)


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def write_image(path, w, h):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)


# ------------------------------------------------------------------------------------ ReasonSeg


@pytest.fixture
def reasonseg(tmp_path):
    root = tmp_path / "ReasonSeg"
    write_image(root / "val" / "a.jpg", 20, 16)
    (root / "val" / "a.json").write_text(
        json.dumps(
            {
                "text": ["the thing you would sit on after a long walk"],
                "is_sentence": True,
                "shapes": [
                    {"label": "target", "points": rect(2, 2, 10, 8), "shape_type": "polygon"},
                    {"label": "ignore", "points": rect(4, 4, 6, 6), "shape_type": "polygon"},
                    {"label": "flag", "points": rect(0, 0, 19, 15), "shape_type": "polygon"},
                ],
            }
        )
    )
    write_image(root / "val" / "b.jpg", 12, 10)
    (root / "val" / "b.json").write_text(
        json.dumps(
            {
                "text": ["cup", "the mug"],
                "is_sentence": False,
                "shapes": [
                    # a big ignore region drawn first (larger area), the target on top of it
                    {"label": "ignore", "points": rect(0, 0, 11, 9)},
                    {"label": "target", "points": rect(3, 3, 5, 5)},
                ],
            }
        )
    )
    return root


def test_reasonseg_masks_follow_lisa_drawing_rules(reasonseg):
    samples = list(load_reasonseg(reasonseg, "val"))
    assert [s.sample_id for s in samples] == ["val/a", "val/b"]
    a, b = samples
    # polylines + fillPoly make the rectangle inclusive: 9 x 7 = 63 pixels, minus the 3 x 3 ignore on top
    assert a.gt_mask.shape == (16, 20)
    assert int(a.ignore_mask.sum()) == 9 and bool(a.ignore_mask[5, 5])
    assert int(a.gt_mask.sum()) == 63 - 9
    assert not (a.gt_mask & a.ignore_mask).any()
    assert a.meta["query_type"] == "long" and a.meta["is_sentence"] is True
    assert a.query.startswith("the thing")
    # b: the larger ignore polygon is drawn first, the small target (3 x 3) on top of it
    assert int(b.gt_mask.sum()) == 9
    assert int(b.ignore_mask.sum()) == 12 * 10 - 9
    assert b.meta["query_type"] == "short" and b.query == "cup"  # LISA: first text only


def test_reasonseg_all_queries_and_unpacking(reasonseg):
    samples = list(load_reasonseg(reasonseg, "val", all_queries=True))
    assert [s.sample_id for s in samples] == ["val/a#0", "val/b#0", "val/b#1"]
    image_path, query, gt, ignore, meta = samples[2]
    assert image_path.name == "b.jpg" and query == "the mug" and gt.dtype == bool and meta["query_index"] == 1


def test_reasonseg_label_map_values():
    label = reasonseg_label_map({"shapes": [{"label": "target", "points": rect(1, 1, 2, 2)}]}, 4, 4)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1} and int(label.sum()) == 4


def test_reasonseg_parent_folder_and_errors(reasonseg, tmp_path):
    assert len(list(load_reasonseg(tmp_path, "val"))) == 2  # the parent of ReasonSeg/ also works
    with pytest.raises(InputError, match="split folder"):
        load_reasonseg(reasonseg, "test")
    with pytest.raises(InputError, match="not found"):
        load_reasonseg(tmp_path / "nope", "val")
    (reasonseg / "val" / "b.json").unlink()
    a, b = load_reasonseg(reasonseg, "val")  # listing goes on; the one sample's masks name the file
    assert a.load_masks()[0].any()
    with pytest.raises(InputError, match=r"b\.jpg: annotation b\.json is missing"):
        b.load_masks()


# ------------------------------------------------------------------------------- RefCOCO family


@pytest.fixture
def refer(tmp_path):
    root = tmp_path / "refer_seg"
    img_dir = root / "images" / "mscoco" / "images" / "train2014"
    write_image(img_dir / "COCO_train2014_000000000001.jpg", 10, 8)
    write_image(img_dir / "COCO_train2014_000000000002.jpg", 6, 6)
    rle_mask = np.zeros((6, 6), np.uint8)
    rle_mask[1:3, 1:5] = 1
    rle = mask_utils.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode("ascii")
    instances = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 8, "width": 10},
            {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": 6, "width": 6},
        ],
        "annotations": [
            # two polygons of one object (overlapping): merged into one binary mask
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 6, 2, 6]],
            },
            {"id": 12, "image_id": 2, "category_id": 1, "iscrowd": 1, "segmentation": rle},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }

    def ref(ref_id, ann_id, image_id, split, sents):
        return {
            "ref_id": ref_id,
            "ann_id": ann_id,
            "image_id": image_id,
            "split": split,
            "category_id": 1,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            "sentences": [
                {"sent_id": 100 * ref_id + k, "sent": s, "raw": s.upper(), "tokens": s.split()}
                for k, s in enumerate(sents)
            ],
            "sent_ids": [100 * ref_id + k for k in range(len(sents))],
        }

    for name, split_by, refs in [
        ("refcoco", "unc", [ref(1, 11, 1, "val", ["left box", "the box"]), ref(2, 12, 2, "testA", ["blob"])]),
        ("refcocog", "umd", [ref(3, 12, 2, "test", ["a long description of the blob"])]),
        ("refcocog", "google", [ref(4, 11, 1, "val", ["google split box"])]),
    ]:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "instances.json").write_text(json.dumps(instances))
        with (root / name / f"refs({split_by}).p").open("wb") as fh:
            pickle.dump(refs, fh)
    return root


def test_refcoco_yields_one_sample_per_sentence(refer):
    samples = list(load_refcoco(refer, "refcoco", "val"))
    assert [s.query for s in samples] == ["left box", "the box"]
    assert samples[0].sample_id == "refcoco/unc/val/ref1/sent100"
    s = samples[0]
    assert s.image_path.name == "COCO_train2014_000000000001.jpg" and s.image_path.is_file()
    assert s.gt_mask.shape == (8, 10) and not s.ignore_mask.any()
    expected = mask_utils.decode(
        mask_utils.frPyObjects([[0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 6, 2, 6]], 8, 10)
    )
    np.testing.assert_array_equal(s.gt_mask, expected.sum(axis=2) > 0)
    (t,) = load_refcoco(refer, "refcoco", "testA")
    assert int(t.gt_mask.sum()) == 8 and t.meta["ann_id"] == 12


def test_refcocog_split_by_defaults_to_umd_and_accepts_google(refer):
    (u,) = load_dataset("RefCOCOg", refer, "test")
    assert u.meta["split_by"] == "umd" and u.query.startswith("a long")
    (g,) = load_dataset("refcocog", refer, "val", split_by="google")
    assert g.meta["split_by"] == "google"


def test_refcoco_errors(refer, tmp_path):
    with pytest.raises(InputError, match="no split 'testC'"):
        load_refcoco(refer, "refcoco", "testC")
    with pytest.raises(InputError, match=r"refs\(unc\)\.p"):
        load_refcoco(refer, "refcoco+", "val")
    with pytest.raises(InputError, match="image folder"):
        load_refcoco(refer, "refcoco", "val", image_dir=tmp_path / "none")


# ------------------------------------------------------------------------------------ LLM-Seg40K


def test_llmseg40k(tmp_path):
    root = tmp_path / "llmseg40k"
    m = np.zeros((5, 7), np.uint8)
    m[2:4, 3:6] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "000000000009.jpg": {
            "from_dataset": "coco",
            "qa_pairs": [
                {"question": "what holds the food?", "answer": "the plate", "rle_seg": rle},
                {"question": "what is edible?", "answer": "the food", "rle_seg": rle},
            ],
        },
        "ego_1.jpg": {
            "from_dataset": "ego_objects",
            "qa_pairs": [{"question": "what could cut?", "answer": "knife", "rle_seg": rle}],
        },
    }
    root.mkdir()
    (root / "validation.json").write_text(json.dumps(data))
    samples = list(load_llmseg40k(root, "val"))
    assert [s.sample_id for s in samples] == [
        "val/000000000009.jpg#0",
        "val/000000000009.jpg#1",
        "val/ego_1.jpg#0",
    ]
    assert samples[0].image_path == root / "coco" / "train2017" / "000000000009.jpg"
    assert samples[2].image_path == root / "ego_objects" / "images" / "ego_1.jpg"
    np.testing.assert_array_equal(samples[1].gt_mask, m.astype(bool))
    assert samples[0].meta["answer"] == "the plate"
    with pytest.raises(InputError, match="test file not found"):
        load_llmseg40k(root, "test")


# --------------------------------------------------------------------------------------- misc


def test_names_splits_and_sample_construction(tmp_path):
    assert canonical_name("LLM-Seg40K") == "llmseg40k" and canonical_name("ReasonSeg") == "reasonseg"
    assert EVAL_SPLITS["refcoco"] == ("val", "testA", "testB")
    with pytest.raises(InputError, match="unknown dataset"):
        canonical_name("imagenet")
    with pytest.raises(InputError, match="dataset root not found"):
        load_dataset("reasonseg", tmp_path / "missing", "val")
    calls = []
    lazy = Sample(
        "x.jpg", "q", lambda: calls.append(1) or (np.ones((2, 2)), np.zeros((2, 2))), {"sample_id": "x"}
    )
    assert calls == [] and lazy.gt_mask.all() and lazy.ignore_mask.dtype == bool and calls == [1]
    _ = lazy.gt_mask
    assert calls == [1]


def test_image_sizes_of_large_images_give_no_pil_warning(tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    from dtwin_agent.evaluation.datasets import _image_size

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)  # 1200 px: over PIL's (patched) warning limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _image_size(path) == (30, 40)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]

"""A tiny benchmark made here in the real loaders' formats, and work functions Ray workers can import.

``write_benchmark(root)`` writes flat-colour scenes (three rectangles each) as
``ReasonSeg/{val,test}/*.jpg + *.json`` (LabelMe polygons, LISA's layout) and
``llmseg40k/val.json`` (COCO RLE ``rle_seg``) over the same images, so the real pipeline (offline
proposer and labeller, keyword reasoner) runs on them in well under a second per image.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

BACKGROUND = (235, 235, 225)
COLOURS = {"red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 210)}
#: image name -> {colour: (x0, y0, x1, y1) exclusive}, and the queried colour
SCENES = {
    "s1": ({"red": (8, 40, 40, 88), "green": (52, 40, 76, 88), "blue": (88, 40, 120, 88)}, "red"),
    "s2": ({"red": (10, 10, 60, 50), "green": (70, 70, 120, 120), "blue": (10, 80, 50, 118)}, "green"),
    "s3": ({"red": (80, 8, 120, 40), "green": (8, 8, 40, 60), "blue": (50, 60, 110, 110)}, "blue"),
    "s4": ({"red": (30, 30, 98, 98), "green": (0, 0, 20, 20), "blue": (108, 108, 128, 128)}, "red"),
}
SPLITS = {"val": ["s1", "s2"], "test": ["s3", "s4"]}


def _scene(rects: dict[str, tuple[int, int, int, int]]) -> np.ndarray:
    rgb = np.full((128, 128, 3), BACKGROUND, dtype=np.uint8)
    for colour, (x0, y0, x1, y1) in rects.items():
        rgb[y0:y1, x0:x1] = COLOURS[colour]
    return rgb


def write_benchmark(root: Path) -> dict[str, Path]:
    """Write the benchmark under ``root``; returns ``{"reasonseg": ..., "llmseg40k": ...}`` roots."""
    from pycocotools import mask as mask_utils

    rs = root / "ReasonSeg"
    llm = root / "llmseg40k"
    (llm / "coco" / "train2017").mkdir(parents=True)
    llm_val: dict[str, dict] = {}
    for split, names in SPLITS.items():
        (rs / split).mkdir(parents=True)
        for k, name in enumerate(names):
            rects, target = SCENES[name]
            rgb = _scene(rects)
            Image.fromarray(rgb).save(rs / split / f"{name}.jpg", quality=95)
            Image.fromarray(rgb).save(llm / "coco" / "train2017" / f"{name}.jpg", quality=95)
            x0, y0, x1, y1 = rects[target]
            anno = {
                "text": [f"the {target} rectangle"],
                "is_sentence": bool(k % 2),
                "shapes": [
                    {
                        "label": "target",
                        "points": [[x0, y0], [x1 - 1, y0], [x1 - 1, y1 - 1], [x0, y1 - 1]],
                        "shape_type": "polygon",
                    }
                ],
            }
            (rs / split / f"{name}.json").write_text(json.dumps(anno))
            mask = np.zeros((128, 128), np.uint8)
            mask[y0:y1, x0:x1] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            llm_val[f"{name}.jpg"] = {
                "from_dataset": "coco",
                "qa_pairs": [{"question": f"which {target} thing?", "answer": target, "rle_seg": rle}],
            }
    (llm / "val.json").write_text(json.dumps(llm_val))
    return {"reasonseg": rs, "llmseg40k": llm}


# ------------------------------------------------------------------ work functions for workers


def _log(name: str) -> None:
    """Append the image name to $DTWIN_TEST_CALL_LOG (calls counted across processes and actors)."""
    path = os.environ.get("DTWIN_TEST_CALL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(name + "\n")


def build_twin_failing_on_s2(image, query=None, **kwargs):
    """``dtwin_agent.build_twin``, except that it raises a plain error on image s2."""
    from dtwin_agent import build_twin

    if Path(image).stem == "s2":
        raise RuntimeError("worker exploded on s2")
    return build_twin(image, query, **kwargs)


def slow_twin(image, query=None, **kwargs):
    """A cheap one-object twin after a pause, logging every call (for kill-and-resume tests)."""
    from dtwin_agent.twin import DigitalTwin

    _log(Path(image).stem)
    time.sleep(float(os.environ.get("DTWIN_TEST_PAUSE", "0")))
    w, h = Image.open(image).size
    return DigitalTwin.model_validate(
        {"image": {"width": w, "height": h, "sha256": "0" * 64, "source": Path(image).name}, "objects": []}
    )


def square_segment(image, query, **kwargs):
    """Predicts a 40 x 40 square at the top-left, logging every call; raises on s2 when asked."""
    _log(Path(image).stem)
    if Path(image).stem in os.environ.get("DTWIN_TEST_FAIL_ON", "").split(","):
        raise RuntimeError("worker exploded")
    w, h = Image.open(image).size
    mask = np.zeros((h, w), bool)
    mask[:40, :40] = True
    return SimpleNamespace(mask=mask, ids=[1], usage={"calls": 1})


def square_segment_failing_on_s2(image, query, **kwargs):
    """:func:`square_segment`, but a plain error on image s2 (a worker raising on one image)."""
    if Path(image).stem == "s2":
        raise RuntimeError("worker exploded on s2")
    return square_segment(image, query, **kwargs)

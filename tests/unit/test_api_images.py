"""build_twin on every kind of image input, huge images included (masks come back at original size)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dtwin_agent import masks as mask_ops
from dtwin_agent.api import build_twin, segment
from dtwin_agent.errors import ImageError

FAST = {"cache.enabled": False, "perception.max_image_side": 256}


def flat_scene(height: int, width: int) -> tuple[np.ndarray, list[np.ndarray]]:
    img = np.full((height, width, 3), (235, 235, 225), np.uint8)
    boxes = [
        (0.05, 0.1, 0.4, 0.5, (220, 30, 30)),
        (0.55, 0.1, 0.95, 0.45, (30, 60, 210)),
        (0.2, 0.6, 0.8, 0.92, (30, 160, 40)),
    ]
    truths = []
    for x0, y0, x1, y1, col in boxes:
        m = np.zeros((height, width), bool)
        m[int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)] = True
        img[m] = col
        truths.append(m)
    return img, truths


def best_iou(twin, truth):
    small = truth[::8, ::8]
    return max(mask_ops.iou(o.decode_mask()[::8, ::8], small) for o in twin.objects)


@pytest.mark.slow
def test_6000_by_6000_image_masks_at_original_size(tmp_path):
    img, truths = flat_scene(6000, 6000)
    path = tmp_path / "huge.png"
    Image.fromarray(img).save(path, compress_level=1)
    twin = build_twin(path, settings=FAST | {"perception.granularity": "object"})
    assert (twin.image.width, twin.image.height) == (6000, 6000)
    assert all(o.mask.size == (6000, 6000) for o in twin.objects)
    assert all(0 <= o.bbox[2] < 6000 and 0 <= o.bbox[3] < 6000 for o in twin.objects)
    for truth in truths:
        assert best_iou(twin, truth) >= 0.95


@pytest.mark.parametrize("kind", ["path", "pil", "array"])
def test_inputs_give_the_same_twin(tmp_path, kind):
    img, _ = flat_scene(120, 160)
    path = tmp_path / "s.png"
    Image.fromarray(img).save(path)
    value = {"path": path, "pil": Image.open(path), "array": img}[kind]
    twin = build_twin(value, settings=FAST | {"cache.dir": str(tmp_path / "c")})
    assert (
        twin.image.sha256 == build_twin(img, settings=FAST | {"cache.dir": str(tmp_path / "c")}).image.sha256
    )
    assert len(twin.objects) >= 4  # three boxes and the background


def test_exif_rotated_photo_twin_is_in_display_orientation(tmp_path):
    img, _ = flat_scene(90, 160)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(img).save(path, exif=exif, quality=95)
    twin = build_twin(path, settings=FAST)
    assert (twin.image.width, twin.image.height) == (90, 160)


@pytest.mark.parametrize(
    "content, match",
    [(b"", "empty"), (b"GIF89a not really", "not an image|truncated|unreadable")],
    ids=["zero-byte", "garbage"],
)
def test_bad_files_fail_before_any_model_call(tmp_path, content, match):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match):
        segment(path, "anything", settings=FAST)


def test_one_pixel_image(tmp_path):
    twin = build_twin(np.full((1, 1, 3), 128, np.uint8), settings=FAST | {"perception.min_area_pct": 0})
    assert (twin.image.width, twin.image.height) == (1, 1)
    assert len(twin.objects) <= 1

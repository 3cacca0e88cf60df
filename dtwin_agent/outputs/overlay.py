"""Overlays for people: every object of a twin outlined, filled and numbered, or only the chosen ones.

(What the VLM is shown lives with the VLM calls, in :mod:`dtwin_agent.llm.views`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dtwin_agent.twin import DigitalTwin

_PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (220, 190, 255),
        (170, 110, 40),
        (255, 250, 200),
        (128, 0, 0),
        (170, 255, 195),
        (128, 128, 0),
        (0, 0, 128),
    ],
    dtype=np.uint8,
)


def _colour(index: int) -> tuple[int, int, int]:
    """A distinct colour for object ``index``."""
    return tuple(int(c) for c in _PALETTE[index % len(_PALETTE)])


def _label_point(mask: np.ndarray) -> tuple[int, int]:
    """A point well inside the mask (the maximum of the distance transform), as ``(x, y)``."""
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def _contours(mask: np.ndarray) -> Sequence[np.ndarray]:
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return found


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_objects(
    rgb: np.ndarray,
    objects: Iterable[tuple[int, np.ndarray]],
    *,
    highlight: set[int] | None = None,
    alpha: float = 0.4,
) -> np.ndarray:
    """Outline each mask, fill it translucent and print its id at a point inside it.

    Args:
        rgb: ``H x W x 3`` uint8 image.
        objects: ``(id, bool mask)`` pairs at the image size.
        highlight: when given, only these ids are filled and labelled; the rest are outlined faintly.
        alpha: fill opacity.
    """
    out = rgb.astype(np.float32).copy()
    height, width = rgb.shape[:2]
    thickness = max(1, round(max(height, width) / 500))
    labels = []
    items = list(objects)
    for object_id, mask in items:
        col = np.array(_colour(object_id - 1), dtype=np.float32)
        chosen = highlight is None or object_id in highlight
        if chosen:
            out[mask] = out[mask] * (1 - alpha) + col * alpha
            labels.append((object_id, _label_point(mask), tuple(int(c) for c in col)))
    canvas = np.clip(out, 0, 255).astype(np.uint8)
    for object_id, mask in items:
        chosen = highlight is None or object_id in highlight
        col = _colour(object_id - 1) if chosen else (200, 200, 200)
        cv2.drawContours(canvas, list(_contours(mask)), -1, col, thickness if chosen else 1)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    font = _font(max(12, round(max(height, width) / 45)))
    for object_id, (x, y), _col in labels:
        text = str(object_id)
        box = draw.textbbox((x, y), text, font=font, anchor="mm")
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        draw.text((x, y), text, fill=(255, 255, 255), font=font, anchor="mm")
    return np.asarray(img)


def twin_overlay(rgb: np.ndarray, twin: DigitalTwin, highlight: set[int] | None = None) -> np.ndarray:
    """The image with the twin's objects outlined, filled and numbered (``highlight``: only those)."""
    return draw_objects(rgb, [(o.id, o.decode_mask()) for o in twin.objects], highlight=highlight)

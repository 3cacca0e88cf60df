"""Overlays for people: every object of a twin outlined, filled and numbered, or only the chosen ones.

Labels never hide an answer: a number goes inside its mask only when the mask is big enough to hold
it with room to spare; otherwise it goes beside the mask, where it covers the least of any labelled
mask and of other labels, joined to the mask by a leader line. Drawing order: fills, leader lines,
the outlines of every labelled mask (over fills and leader lines, so an outline always shows), then
the numbers (placed where they cover no labelled mask, so they stay readable over other outlines).

(What the VLM is shown lives with the VLM calls, in :mod:`dtwin_agent.llm.views`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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

INSIDE_MAX_COVER = 0.2
"""A label goes inside its mask only if its box covers at most this share of the mask."""


def _colour(index: int) -> tuple[int, int, int]:
    """A distinct colour for object ``index``."""
    return tuple(int(c) for c in _PALETTE[index % len(_PALETTE)])


def _deepest(mask: np.ndarray) -> tuple[int, int, float]:
    """``(x, y, distance to the background)`` of the mask's deepest point."""
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y), float(dist[y, x])


def _contours(mask: np.ndarray) -> Sequence[np.ndarray]:
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return found


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


@dataclass(frozen=True)
class LabelPlacement:
    """Where an object's number is drawn.

    Attributes:
        id: the object id.
        box: the label box ``(x0, y0, x1, y1)`` in pixels (x1, y1 exclusive).
        inside: True when the box sits inside the mask (no leader line).
        anchor: the point on the mask a leader line goes to (outside labels).
    """

    id: int
    box: Box
    inside: bool
    anchor: tuple[int, int]


def _box_sum(integral: np.ndarray, box: Box) -> int:
    x0, y0, x1, y1 = box
    return int(integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0])


def _integral(mask: np.ndarray) -> np.ndarray:
    return cv2.integral(mask.astype(np.uint8))


def _overlap(a: Box, b: Box) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def _nearest_on(mask: np.ndarray, point: tuple[float, float]) -> tuple[int, int]:
    """The mask's outline point nearest to ``point`` (x, y)."""
    points = np.concatenate([c.reshape(-1, 2) for c in _contours(mask)] or [np.zeros((1, 2), int)])
    d = ((points - np.asarray(point)) ** 2).sum(axis=1)
    x, y = points[int(np.argmin(d))]
    return int(x), int(y)


def place_labels(
    masks: Sequence[tuple[int, np.ndarray]], sizes: dict[int, tuple[int, int]], shape: tuple[int, int]
) -> list[LabelPlacement]:
    """Place one label box per mask so that no label hides a labelled mask.

    Small masks are placed first (they have the fewest good places). A label goes inside its mask
    when the box fits well inside it and covers at most :data:`INSIDE_MAX_COVER` of it; otherwise at
    the candidate position around the mask's bounding box (8 directions, two distances) that covers
    the least of its own mask, of the other labelled masks and of the labels placed so far, with a
    small preference for near positions.

    Args:
        masks: ``(id, bool H x W mask)`` of the labelled objects.
        sizes: ``id -> (width, height)`` of each label box in pixels.
        shape: ``(H, W)`` of the image.
    """
    height, width = shape
    union = np.zeros(shape, bool)
    for _, mask in masks:
        union |= mask
    union_sum = _integral(union)
    placed: list[LabelPlacement] = []
    boxes: list[Box] = []
    for object_id, mask in sorted(masks, key=lambda m: int(m[1].sum())):
        area = int(mask.sum())
        if area == 0:
            continue
        w, h = sizes[object_id]
        w, h = min(w, width), min(h, height)
        x, y, depth = _deepest(mask)
        inside = (x - w // 2, y - h // 2, x - w // 2 + w, y - h // 2 + h)
        fits = depth >= 0.5 * float(np.hypot(w, h)) + 1 and w * h <= INSIDE_MAX_COVER * area
        if fits and not any(_overlap(inside, b) for b in boxes):
            placed.append(LabelPlacement(object_id, inside, True, (x, y)))
            boxes.append(inside)
            continue
        own_sum = _integral(mask)
        ys, xs = np.nonzero(mask)
        bx0, by0, bx1, by1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        cx, cy = (bx0 + bx1) // 2, (by0 + by1) // 2
        candidates: list[tuple[float, Box]] = []
        for ring in (max(3, h // 3), h + w // 2):
            for px, py in (
                (cx - w // 2, by0 - ring - h),  # above
                (bx1 + ring, cy - h // 2),  # right
                (cx - w // 2, by1 + ring),  # below
                (bx0 - ring - w, cy - h // 2),  # left
                (bx1 + ring, by0 - ring - h),  # corners
                (bx0 - ring - w, by0 - ring - h),
                (bx1 + ring, by1 + ring),
                (bx0 - ring - w, by1 + ring),
            ):
                px, py = min(max(px, 0), width - w), min(max(py, 0), height - h)
                box = (px, py, px + w, py + h)
                cost = (
                    10.0 * _box_sum(own_sum, box)
                    + 3.0 * (_box_sum(union_sum, box) - _box_sum(own_sum, box))
                    + 20.0 * sum(_overlap(box, b) for b in boxes)
                    + 0.05 * float(np.hypot(px + w / 2 - cx, py + h / 2 - cy))
                )
                candidates.append((cost, box))
        box = min(candidates, key=lambda c: c[0])[1]  # the first of equal costs: the nearest ring, above
        anchor = _nearest_on(mask, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
        placed.append(LabelPlacement(object_id, box, False, anchor))
        boxes.append(box)
    return placed


def _leader_start(box: Box, anchor: tuple[int, int]) -> tuple[int, int]:
    """The point of the box's edge nearest to ``anchor``."""
    x = min(max(anchor[0], box[0]), box[2] - 1)
    y = min(max(anchor[1], box[1]), box[3] - 1)
    return x, y


def draw_objects(
    rgb: np.ndarray,
    objects: Iterable[tuple[int, np.ndarray]],
    *,
    highlight: set[int] | None = None,
    alpha: float = 0.4,
) -> np.ndarray:
    """Fill and outline each mask and number it, with labels that never hide a labelled mask.

    Args:
        rgb: ``H x W x 3`` uint8 image.
        objects: ``(id, bool mask)`` pairs at the image size.
        highlight: when given, only these ids are filled and labelled; the rest are outlined faintly.
        alpha: fill opacity.

    Returns:
        The overlay, ``H x W x 3`` uint8. Labels are placed by :func:`place_labels`.
    """
    height, width = rgb.shape[:2]
    items = list(objects)
    chosen = [(i, m) for i, m in items if highlight is None or i in highlight]
    others = [(i, m) for i, m in items if not (highlight is None or i in highlight)]
    thickness = max(1, round(max(height, width) / 500))
    out = rgb.astype(np.float32).copy()
    for object_id, mask in chosen:
        out[mask] = out[mask] * (1 - alpha) + np.array(_colour(object_id - 1), dtype=np.float32) * alpha
    canvas = np.clip(out, 0, 255).astype(np.uint8)
    for _, mask in others:
        cv2.drawContours(canvas, list(_contours(mask)), -1, (200, 200, 200), 1)

    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    font = _font(max(12, round(max(height, width) / 45)))
    pad = 2
    sizes = {}
    for object_id, _ in chosen:
        left, top, right, bottom = draw.textbbox((0, 0), str(object_id), font=font)
        sizes[object_id] = (right - left + 2 * pad, bottom - top + 2 * pad)
    placements = place_labels(chosen, sizes, (height, width))
    line = max(1, thickness)
    for place in placements:  # leader lines first: the outlines go over their ends
        if not place.inside:
            start = _leader_start(place.box, place.anchor)
            draw.line([start, place.anchor], fill=(0, 0, 0), width=line + 2)
            draw.line([start, place.anchor], fill=_colour(place.id - 1), width=line)
    canvas = np.array(img)
    for object_id, mask in chosen:  # every labelled mask's outline, over the fills and the leader lines
        cv2.drawContours(canvas, list(_contours(mask)), -1, _colour(object_id - 1), thickness)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for place in placements:  # the numbers last, readable: placed where they cover no labelled mask
        x0, y0, x1, y1 = place.box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(0, 0, 0), outline=_colour(place.id - 1))
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), str(place.id), fill=(255, 255, 255), font=font, anchor="mm")
    canvas = np.array(img)
    return canvas


def twin_overlay(rgb: np.ndarray, twin: DigitalTwin, highlight: set[int] | None = None) -> np.ndarray:
    """The image with the twin's objects outlined, filled and numbered (``highlight``: only those)."""
    return draw_objects(rgb, [(o.id, o.decode_mask()) for o in twin.objects], highlight=highlight)

"""The offline labeller: semantic text measured from pixels when no VLM is configured.

It has no object recognition: S_i names the mask's dominant colour, its shape, its size and where
it lies in the image, and says that it came from the offline labeller. A VLM (paper Eq. 4) is
what real use wants.
"""

from __future__ import annotations

import numpy as np

PREFIX = "offline labeller (no object recognition):"

# hue ranges in OpenCV units (0-180)
_HUES = [(8, "red"), (22, "orange"), (35, "yellow"), (85, "green"), (130, "blue"), (160, "purple"), (180, "red")]


def colour_name(rgb_pixels: np.ndarray) -> str:
    """A basic colour word for a set of RGB pixels (``N x 3`` uint8), from their median in HSV."""
    import cv2

    if rgb_pixels.size == 0:
        return "colourless"
    median = np.median(rgb_pixels.reshape(-1, 3), axis=0).astype(np.uint8).reshape(1, 1, 3)
    hue, sat, val = (int(v) for v in cv2.cvtColor(median, cv2.COLOR_RGB2HSV)[0, 0])
    if val < 50:
        return "black"
    if sat < 40:
        return "white" if val > 200 else "grey"
    for limit, name in _HUES:
        if hue < limit:
            if name == "orange" and val < 150:
                return "brown"
            return name
    return "red"


def shape_words(mask: np.ndarray) -> str:
    """Shape words from the mask: round / rectangular / elongated / irregular, with orientation."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return "empty"
    width = int(xs.max() - xs.min() + 1)
    height = int(ys.max() - ys.min() + 1)
    fill = xs.size / float(width * height)
    aspect = width / height
    words = []
    if aspect > 2.5:
        words.append("wide, elongated horizontally")
    elif aspect < 0.4:
        words.append("tall, elongated vertically")
    if fill > 0.92:
        words.append("rectangular")
    elif 0.7 < fill <= 0.92 and 0.7 < aspect < 1.4:
        words.append("round")
    elif fill < 0.45:
        words.append("irregular")
    return ", ".join(words) or "compact"


def _size_word(area_frac: float) -> str:
    if area_frac > 0.25:
        return "very large"
    if area_frac > 0.08:
        return "large"
    if area_frac > 0.02:
        return "medium-sized"
    return "small"


def _position_words(mask: np.ndarray) -> str:
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() / width, ys.mean() / height
    vertical = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else "middle"
    horizontal = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    if vertical == "middle" and horizontal == "centre":
        return "in the centre of the image"
    return f"in the {vertical} {horizontal} of the image"


def describe(rgb: np.ndarray, mask: np.ndarray) -> str:
    """S_i for one mask: colour, shape, size and position words, prefixed with the labeller's name."""
    mask = mask.astype(bool)
    if not mask.any():
        return f"{PREFIX} empty region"
    frac = mask.sum() / mask.size
    words = f"{_size_word(frac)} {colour_name(rgb[mask])} region, {shape_words(mask)}, {_position_words(mask)}"
    return f"{PREFIX} {words}"

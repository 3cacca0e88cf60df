"""The offline labeller: semantic text measured from pixels when no VLM is configured.

S_i names the mask's dominant colour, its shape, its size and where it lies in the image, and
says that it came from the offline labeller. When the local ImageNet classifier is fetched
(``dtwin models fetch efficientnet_lite0 imagenet1k_names``), :func:`describe_all` adds its top
labels with scores for each masked crop (:mod:`dtwin_agent.offline.classifier`); without it there is no
object recognition at all. A VLM (paper Eq. 4) is what real use wants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

PREFIX = "offline labeller (no object recognition):"
CLASSIFIER_PREFIX = "offline labeller (ImageNet classifier {name}, not a VLM):"

# hue ranges in OpenCV units (0-180)
_BATCH = 16  # masks classified per forward pass (and per progress report)

_HUES = [
    (8, "red"),
    (22, "orange"),
    (35, "yellow"),
    (85, "green"),
    (130, "blue"),
    (160, "purple"),
    (180, "red"),
]


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


def label_words(labels: Sequence[Any]) -> str:
    """``"coffee mug 0.62, cup 0.21"`` from classifier labels (objects with ``name`` and ``score``)."""
    return ", ".join(f"{label.name} {label.score:.2f}" for label in labels)


def describe(
    rgb: np.ndarray, mask: np.ndarray, labels: Sequence[Any] | None = None, classifier: str = ""
) -> str:
    """S_i for one mask: colour, shape, size and position words, prefixed with the labeller's name.

    Args:
        rgb: the image, H x W x 3 uint8.
        mask: the object's mask, H x W.
        labels: the classifier's top labels for this mask (``name`` / ``score``), if any.
        classifier: the classifier's name, said in the prefix when ``labels`` are given.

    """
    mask = mask.astype(bool)
    if not mask.any():
        return f"{PREFIX} empty region"
    frac = mask.sum() / mask.size
    words = (
        f"{_size_word(frac)} {colour_name(rgb[mask])} region, {shape_words(mask)}, {_position_words(mask)}"
    )
    if labels:
        prefix = CLASSIFIER_PREFIX.format(name=classifier or "local")
        return f"{prefix} top labels {label_words(labels)}; {words}"
    return f"{PREFIX} {words}"


def describe_all(
    rgb: np.ndarray,
    masks: Sequence[np.ndarray],
    *,
    classifier: str | None = "auto",
    settings: Any = None,
    top_k: int = 3,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """S_i for many masks, with the local classifier's labels when it is available.

    Args:
        rgb: the image, H x W x 3 uint8.
        masks: one H x W mask per object.
        classifier: ``"auto"`` (EfficientNet-Lite0 when fetched, else none), a classifier name
            (``efficientnet_lite0`` / ``efficientnet_lite2``: an error when not fetched), or
            ``None`` / ``"none"`` for colour, shape and position words only.
        settings: read for the model store folder.
        top_k: labels per mask.
        on_progress: called with ``(masks labelled, masks)`` after every batch of masks.

    Raises:
        ConfigError: a named classifier is not fetched or its package is missing.

    """
    name = None if classifier in (None, "none") else classifier
    model = None
    if name is not None:
        from dtwin_agent.offline import classifier as clf
        from dtwin_agent.weights import store

        if name == "auto":
            name = clf.DEFAULT if clf.available(clf.DEFAULT, settings) else None
        if name is not None:
            model = clf.cached(name, str(store.models_dir(settings)))
    texts: list[str] = []
    for start in range(0, len(masks), _BATCH):
        batch = [np.asarray(m, dtype=bool) for m in masks[start : start + _BATCH]]
        labels: list[Any] = [None] * len(batch)
        if model is not None:
            nonempty = [i for i, m in enumerate(batch) if m.any()]
            found = model.classify_masks(rgb, [batch[i] for i in nonempty], k=top_k)
            for i, top in zip(nonempty, found, strict=True):
                labels[i] = top
        texts += [describe(rgb, m, labels[i], name or "") for i, m in enumerate(batch)]
        if on_progress is not None:
            on_progress(len(texts), len(masks))
    return texts

"""The offline labeller: semantic text measured from pixels when no VLM is configured.

S_i names the mask's dominant colour and its shape (size and position are T_i's, paper 3.2, and
are not repeated here). When the local ImageNet classifier is fetched (``dtwin models fetch
efficientnet_lite0 imagenet1k_names``), :func:`describe_all` puts its top labels with scores first
(:mod:`dtwin_agent.offline.classifier`); without it there is no object recognition at all. Which
labeller wrote S_i is said once, in the twin's ``components`` (:func:`labeller_name`), not in every
S_i. A VLM (paper Eq. 4) is what real use wants.

Examples: ``golden retriever 0.71, Labrador retriever 0.12; brown, compact`` (with the
classifier), ``yellow, round`` (without).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MIN_SCORE = 0.1
"""Labels after the first are kept only from this classifier score on (noise costs tokens)."""


def labeller_name(classifier: str | None) -> str:
    """How the run's ``components`` name the offline labeller, and what its S_i hold.

    Args:
        classifier: the ImageNet classifier in use, or None / ``"none"`` without one.
    """
    if classifier in (None, "", "none"):
        return "offline labeller (no object recognition; S_i: colour, shape)"
    return (
        f"offline labeller (ImageNet classifier {classifier}, not a VLM; S_i: top labels with "
        "scores, colour, shape)"
    )


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
    """Shape words from the mask: round / rectangular / elongated / irregular, with orientation.

    Empty when none applies (a compact blob says nothing).
    """
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
    return ", ".join(words)


def label_words(labels: Sequence[Any]) -> str:
    """``"coffee mug 0.62, cup 0.21"`` from classifier labels (objects with ``name`` and ``score``).

    The first label is always kept; the others from :data:`MIN_SCORE` on.
    """
    kept = [label for k, label in enumerate(labels) if k == 0 or label.score >= MIN_SCORE]
    return ", ".join(f"{label.name} {label.score:.2f}" for label in kept)


def describe(rgb: np.ndarray, mask: np.ndarray, labels: Sequence[Any] | None = None) -> str:
    """S_i for one mask: the classifier's labels (when given), then colour and shape words.

    Args:
        rgb: the image, H x W x 3 uint8.
        mask: the object's mask, H x W.
        labels: the classifier's top labels for this mask (``name`` / ``score``), if any.

    """
    mask = mask.astype(bool)
    if not mask.any():
        return "empty region"
    words = ", ".join(w for w in (colour_name(rgb[mask]), shape_words(mask)) if w)
    return f"{label_words(labels)}; {words}" if labels else words


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
        texts += [describe(rgb, m, labels[i]) for i, m in enumerate(batch)]
        if on_progress is not None:
            on_progress(len(texts), len(masks))
    return texts

"""Mask helpers: COCO RLE through pycocotools, IoU, union, resizing, bbox and centroid.

Masks travel as COCO run-length encodings (:class:`dtwin_agent.twin.RLE`) and are decoded to
boolean ``H x W`` arrays only where pixels are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pycocotools import mask as mask_utils

if TYPE_CHECKING:
    from dtwin_agent.twin import RLE


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D H x W array, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def encode(mask: np.ndarray) -> RLE:
    """Encode a boolean ``H x W`` mask as a COCO RLE (counts as an ASCII string)."""
    from dtwin_agent.twin import RLE

    mask = _check_mask(mask)
    raw = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = raw["counts"]
    return RLE(size=(int(raw["size"][0]), int(raw["size"][1])), counts=counts.decode("ascii"))


def to_coco(rle: RLE) -> dict:
    """The pycocotools dict form of an RLE (``counts`` as bytes)."""
    return {"size": [rle.size[0], rle.size[1]], "counts": rle.counts.encode("ascii")}


def decode(rle: RLE) -> np.ndarray:
    """Decode an RLE into a boolean ``H x W`` array."""
    return mask_utils.decode(to_coco(rle)).astype(bool)


def area(rle: RLE) -> int:
    """Number of foreground pixels of an RLE, without decoding it."""
    return int(mask_utils.area(to_coco(rle)))


def iou_matrix(a: Sequence[RLE], b: Sequence[RLE]) -> np.ndarray:
    """Pairwise IoU ``|a_i ∩ b_j| / |a_i ∪ b_j|`` of two lists of RLEs (``len(a) x len(b)``)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(
        mask_utils.iou([to_coco(r) for r in a], [to_coco(r) for r in b], [0] * len(b)),
        dtype=float,
    ).reshape(len(a), len(b))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape; two empty masks give 0.0."""
    a, b = _check_mask(a), _check_mask(b)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def union(rles: Sequence[RLE], shape: tuple[int, int]) -> np.ndarray:
    """Boolean union of RLEs; an empty list gives an all-False mask of ``shape`` (H, W)."""
    out = np.zeros(shape, dtype=bool)
    for rle in rles:
        if tuple(rle.size) != tuple(shape):
            raise ValueError(f"RLE size {tuple(rle.size)} does not match image shape {tuple(shape)}")
        out |= decode(rle)
    return out


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask to ``shape`` (H, W) with nearest-neighbour sampling.

    Used to map masks computed on a downscaled copy back to the original image size.
    """
    import cv2

    mask = _check_mask(mask)
    height, width = shape
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight bounding box ``(x_min, y_min, x_max, y_max)`` in pixels, inclusive of both ends.

    Raises:
        ValueError: if the mask is empty.
    """
    mask = _check_mask(mask)
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        raise ValueError("empty mask has no bounding box")
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """Centroid ``c_i = (mean x, mean y)`` of the mask's pixels (paper Eq. 2).

    Raises:
        ValueError: if the mask is empty.
    """
    mask = _check_mask(mask)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("empty mask has no centroid")
    return float(xs.mean()), float(ys.mean())

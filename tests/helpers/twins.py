"""Small digital twins built from boolean masks, for tests that need a twin without a graph run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dtwin_agent import masks
from dtwin_agent.twin import DigitalTwin, ImageInfo, TwinObject


def box(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """A boolean ``h x w`` mask, True on ``[y0:y1, x0:x1]``."""
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def twin_from_masks(
    objects: Sequence[tuple[np.ndarray, str, str, float | None]], *, source: str = "toy", sha: str = "0"
) -> DigitalTwin:
    """A twin with one object per ``(mask, semantic, spatial text, predicted IoU)``, ids 1..N in order."""
    height, width = objects[0][0].shape
    built = [
        TwinObject(
            id=i,
            mask=masks.encode(m),
            bbox=masks.bbox(m),
            area_pct=100 * m.mean(),
            centroid=masks.centroid(m),
            predicted_iou=piou,
            semantic=semantic,
            spatial=spatial,
        )
        for i, (m, semantic, spatial, piou) in enumerate(objects, 1)
    ]
    return DigitalTwin(
        image=ImageInfo(width=width, height=height, sha256=sha * 64, source=source), objects=built
    )


def toy_twin() -> DigitalTwin:
    """Three objects: a white mug, a wooden table, a steel knife (spatial text given)."""
    return twin_from_masks(
        [
            (box(40, 60, 0, 0, 20, 20), "a white mug", "top left", None),
            (box(40, 60, 20, 0, 60, 20), "a wooden table", "top right", None),
            (box(40, 60, 0, 25, 30, 35), "a steel knife", "bottom left", None),
        ],
        sha="c",
    )

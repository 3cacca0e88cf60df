"""A tiny flat-colour scene and a proposer that finds its shapes exactly (shared by several tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.perception.base import Proposal

BACKGROUND = (235, 235, 225)
SHAPES = {  # colour -> (x0, y0, x1, y1)
    (220, 30, 30): (8, 40, 40, 88),  # red, left
    (30, 160, 40): (52, 40, 76, 88),  # green, centre
    (30, 60, 210): (88, 40, 120, 88),  # blue, right
}


def write_scene(path: Path, shapes: dict = SHAPES) -> Path:
    """A 128 x 128 PNG with flat rectangles (default: red left, green centre, blue right)."""
    rgb = np.full((128, 128, 3), BACKGROUND, dtype=np.uint8)
    for colour, (x0, y0, x1, y1) in shapes.items():
        rgb[y0:y1, x0:x1] = colour
    Image.fromarray(rgb).save(path)
    return path


def scene_settings(cache_dir: Path, **extra: Any) -> Settings:
    """Settings for runs over the 128 x 128 scene: no downscaling, object level, a private cache."""
    return resolve_settings(
        overrides={
            "perception.max_image_side": 128,
            "perception.granularity": "object",
            "cache.dir": str(cache_dir),
            **extra,
        }
    )


class ColourProposer:
    """One proposal per colour of SHAPES; records the granularity of every call."""

    name = "colour-test"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def propose(self, image: np.ndarray, granularity: str) -> list[Proposal]:
        self.calls.append(granularity)
        return [Proposal(mask=np.all(image == np.array(c, dtype=np.uint8), axis=-1)) for c in SHAPES]

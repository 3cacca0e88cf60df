"""What the VLM is shown (paper Eq. 4): the masked crop, the outlined whole image, image content blocks.

The masked crop is the mask's padded bounding box with the background dimmed; the outlined view is
the whole image with the mask's contour drawn, so the model sees the other objects as context.
Both reach the model as LangChain standard image content blocks (base64 JPEG, downscaled).
"""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
from PIL import Image

from dtwin_agent import masks as mask_ops
from dtwin_agent.images import downscale

__all__ = ["image_block", "masked_crop", "outlined"]


def masked_crop(rgb: np.ndarray, mask: np.ndarray, padding: float = 0.15, dim: float = 0.3) -> np.ndarray:
    """The mask's bounding box padded by ``padding`` of its size, pixels outside the mask dimmed."""
    x0, y0, x1, y1 = mask_ops.bbox(mask)
    pad_x = round((x1 - x0 + 1) * padding)
    pad_y = round((y1 - y0 + 1) * padding)
    height, width = mask.shape
    xa, ya = max(0, x0 - pad_x), max(0, y0 - pad_y)
    xb, yb = min(width, x1 + pad_x + 1), min(height, y1 + pad_y + 1)
    crop = rgb[ya:yb, xa:xb].astype(np.float32)
    inside = mask[ya:yb, xa:xb]
    crop[~inside] *= dim
    return crop.astype(np.uint8)


def outlined(rgb: np.ndarray, mask: np.ndarray, col: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    """The whole image with one mask outlined (the context view of paper Eq. 4)."""
    canvas = rgb.copy()
    thickness = max(2, round(max(rgb.shape[:2]) / 250))
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, list(contours), -1, col, thickness)
    return canvas


def image_block(rgb: np.ndarray, max_side: int = 768) -> dict[str, str]:
    """A LangChain standard image content block (base64 JPEG), downscaled to ``max_side``."""
    small, _ = downscale(rgb, max_side)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=90)
    return {
        "type": "image",
        "base64": base64.b64encode(buf.getvalue()).decode("ascii"),
        "mime_type": "image/jpeg",
    }

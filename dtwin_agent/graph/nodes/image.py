"""load_image: decode the image reference once and record what the twin will say about it."""

from __future__ import annotations

from typing import Any

from dtwin_agent.graph.nodes._common import image_of


def load_image(state: dict[str, Any]) -> dict[str, Any]:
    """Read ``state["image"]``: its pixel hash, size and source name (later nodes reuse the decode).

    Raises:
        ImageError: unreadable, truncated or not an image (an ``InputError``).
    """
    image = image_of(state)
    return {
        "image_sha256": image.sha256,
        "width": image.width,
        "height": image.height,
        "source": image.source,
    }

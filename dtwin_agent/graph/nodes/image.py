"""load_image: decode the image reference once and record what the twin will say about it.

``confine_image`` (only in graphs built for a server, with ``access`` settings) runs first and
refuses image paths outside the allowed folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dtwin_agent.config import AccessSettings
from dtwin_agent.graph.nodes._common import image_of
from dtwin_agent.images import confine


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


def confine_image(access: AccessSettings) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A node checking ``state["image"]`` (when given) against ``access.image_roots``.

    The roots are fixed when the graph is built (from the server's own settings), so no run's
    context can widen them. The state's image becomes the resolved path.

    Raises:
        ImageError: from :func:`dtwin_agent.images.confine` (no roots, outside them, missing...).
    """
    roots = [Path(root) for root in access.image_roots]
    max_bytes = int(access.max_file_mb * 2**20)

    def confine_image(state: dict[str, Any]) -> dict[str, Any]:
        image = state.get("image")
        if not image:
            return {}
        return {"image": str(confine(image, roots, max_bytes))}

    return confine_image

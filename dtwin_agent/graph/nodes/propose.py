"""propose_masks: SAM everything mode + the granularity policy (paper 3.1), or another proposer.

The image is downscaled to ``perception.max_image_side`` for the proposer; masks are mapped back
to the original size before they are encoded, so every RLE is at the original image size.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from dtwin_agent import masks as mask_ops
from dtwin_agent.cache import content_key
from dtwin_agent.config import Settings
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import context_of, image_of, is_offline, model_name
from dtwin_agent.graph.nodes.semantics import offline_labeller_name
from dtwin_agent.images import downscale
from dtwin_agent.llm.usage import Usage
from dtwin_agent.perception import get_proposer, resolve_settings_for_proposer
from dtwin_agent.perception.base import Proposal
from dtwin_agent.twin import DigitalTwin


def proposals_to_records(
    proposals: list[Proposal], shape: tuple[int, int], *, min_area_pct: float, max_objects: int
) -> list[dict[str, Any]]:
    """Upscale, filter and number proposals: ids 1..N' by decreasing area (ties: top-left first).

    Empty masks and masks below ``min_area_pct`` of the image are dropped; at most ``max_objects``
    largest are kept.
    """
    total = float(shape[0] * shape[1])
    kept = []
    for prop in proposals:
        mask = mask_ops.resize_mask(prop.mask, shape)
        pixels = int(mask.sum())
        if pixels == 0 or 100.0 * pixels / total < min_area_pct:
            continue
        x0, y0, _, _ = mask_ops.bbox(mask)
        kept.append((pixels, y0, x0, mask, prop))
    kept.sort(key=lambda k: (-k[0], k[1], k[2]))
    records = []
    for index, (_, _, _, mask, prop) in enumerate(kept[:max_objects], start=1):
        records.append(
            {
                "id": index,
                "mask": mask_ops.encode(mask).model_dump(),
                "predicted_iou": float(prop.predicted_iou),
                "stability": float(prop.stability),
            }
        )
    return records


def twin_cache_key(state: dict[str, Any], settings: Settings) -> str:
    """Key of a cached twin: image pixels, perception + spatial settings, granularity, labeller.

    The query is not part of the key: a follow-up query on the same image reuses the twin (its
    labels were written for the first query).
    """
    # "auto" proposer and store names resolved: fetching MobileSAM later must not reuse old twins
    perception = resolve_settings_for_proposer(settings).perception.model_dump(
        exclude={"granularity", "device"}
    )
    vlm = settings.models.vlm
    labeller = [
        offline_labeller_name(settings) if is_offline(vlm) else model_name(vlm),
        settings.semantics.strategy,
        settings.semantics.examples_file,
    ]
    return content_key(
        "twin",
        state["image_sha256"],
        perception,
        settings.spatial.model_dump(),
        state.get("granularity"),
        labeller,
    )


def propose_masks(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Run the configured proposer at the chosen granularity and store the masks as RLEs.

    With a cache in the context, a twin cached for the same image, settings and granularity is
    reused: proposal and labelling are skipped (``cached_twin`` is set for the later nodes).
    """
    context = context_of(runtime)
    settings = context.settings
    key = twin_cache_key(state, settings)
    if context.cache is not None:
        cached = context.cache.get("twin", key, validate=DigitalTwin.model_validate)
        if cached is not None:
            records = [
                {
                    "id": o.id,
                    "mask": o.mask.model_dump(),
                    "predicted_iou": o.predicted_iou,
                    "stability": o.stability,
                }
                for o in cached.objects
            ]
            return {
                "proposals": records,
                "semantics": {str(o.id): o.semantic for o in cached.objects},
                "cached_twin": cached.model_dump(mode="json"),
                "twin_key": key,
                "components": {k: v for k, v in cached.components.items() if k in ("proposer", "semantics")}
                | {"cache": "twin reused from the cache"},
            }
    started = time.perf_counter()
    proposer = context.proposer or get_proposer(settings)
    image = image_of(state)
    small, _ = downscale(image.rgb, settings.perception.max_image_side)
    proposals = proposer.propose(np.ascontiguousarray(small), state.get("granularity", "object"))
    records = proposals_to_records(
        proposals,
        (image.height, image.width),
        min_area_pct=settings.perception.min_area_pct,
        max_objects=settings.perception.max_objects,
    )
    usage = Usage().add("propose", calls=1, seconds=time.perf_counter() - started)
    update: dict[str, Any] = {
        "proposals": records,
        "twin_key": key,
        "cached_twin": None,
        "components": {"proposer": proposer.name},
        "usage": usage.model_dump(),
    }
    if not records:
        update["warnings"] = ["propose_masks: the proposer found no object"]
    return update

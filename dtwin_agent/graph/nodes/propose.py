"""propose_masks: SAM everything mode + the granularity policy (paper 3.1), or another proposer.

The image is downscaled to ``perception.max_image_side`` for the proposer; masks are mapped back
to the original size before they are encoded, so every RLE is at the original image size. Before
SAM loads, a local LLM server this process started (for the granularity choice without a VLM) is
stopped, so both are never resident at once; the refinement stage starts it again.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from dtwin_agent import masks as mask_ops
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import context_of, image_of
from dtwin_agent.graph.state import ProposedMask
from dtwin_agent.images import downscale
from dtwin_agent.llm.usage import Usage
from dtwin_agent.perception import get_proposer, resolve_proposer_name
from dtwin_agent.perception.base import Proposal
from dtwin_agent.progress import reporter


def proposals_to_records(
    proposals: list[Proposal], shape: tuple[int, int], *, min_area_pct: float, max_objects: int
) -> list[ProposedMask]:
    """Upscale, filter and number proposals: ids 1..N' by decreasing area (ties: top-left first).

    Empty masks and masks below ``min_area_pct`` of the image are dropped; at most ``max_objects``
    largest are kept. A proposal's ``parent`` (an index into ``proposals``, hierarchy twins)
    becomes its object's id; a part whose object was dropped has none.
    """
    total = float(shape[0] * shape[1])
    kept = []
    for position, prop in enumerate(proposals):
        mask = mask_ops.resize_mask(prop.mask, shape)
        pixels = int(mask.sum())
        if pixels == 0 or 100.0 * pixels / total < min_area_pct:
            continue
        x0, y0, _, _ = mask_ops.bbox(mask)
        kept.append((pixels, y0, x0, position, mask, prop))
    kept.sort(key=lambda k: (-k[0], k[1], k[2]))
    kept = kept[:max_objects]
    ids = {k[3]: index for index, k in enumerate(kept, start=1)}
    records = []
    for index, (_, _, _, _, mask, prop) in enumerate(kept, start=1):
        records.append(
            ProposedMask(
                id=index,
                mask=mask_ops.encode(mask),
                predicted_iou=float(prop.predicted_iou),
                stability=float(prop.stability),
                parent=ids.get(prop.parent) if prop.parent is not None else None,
            )
        )
    return records


def run_proposer(
    proposer: Any, image: np.ndarray, granularity: str, on_progress: Callable[[int, int | None], None]
) -> list[Proposal]:
    """``proposer.propose(image, granularity, on_progress=...)``; proposers without that keyword get none.

    ``on_progress(done, total)`` is the proposer protocol's optional progress callback (SAM: prompts
    decoded after each decoder batch); proposers written before it still work.
    """
    try:
        params = inspect.signature(proposer.propose).parameters.values()
    except (TypeError, ValueError):  # a builtin or C extension: no signature to read
        params = []
    if any(p.name == "on_progress" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return proposer.propose(image, granularity, on_progress=on_progress)
    return proposer.propose(image, granularity)


def propose_masks(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Run the configured proposer at the chosen granularity and store the masks as RLEs."""
    context = context_of(runtime)
    settings = context.settings
    started = time.perf_counter()
    if context.proposer is None and resolve_proposer_name(settings) == "sam":
        from dtwin_agent.offline import local_llm

        local_llm.release_all()  # SAM and the local LLM are never resident together; refine restarts it
    proposer = context.proposer or get_proposer(settings)
    image = image_of(state)
    small, _ = downscale(image.rgb, settings.perception.max_image_side)
    proposals = run_proposer(
        proposer,
        np.ascontiguousarray(small),
        state.get("granularity", "object"),
        reporter("propose_masks", "prompts"),
    )
    records = proposals_to_records(
        proposals,
        (image.height, image.width),
        min_area_pct=settings.perception.min_area_pct,
        max_objects=settings.perception.max_objects,
    )
    usage = Usage().add("propose", calls=1, seconds=time.perf_counter() - started)
    update: dict[str, Any] = {
        "proposals": records,
        "components": {"proposer": proposer.name},
        "usage": usage.model_dump(),
    }
    if not records:
        update["warnings"] = ["propose_masks: the proposer found no object"]
    return update

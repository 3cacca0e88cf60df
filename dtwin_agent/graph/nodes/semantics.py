"""assign_semantics: S_i = F_VLM(x_img, x_txt, m_i, {m_j}_{j != i}) (paper Eq. 4).

For each mask the VLM sees the masked crop (padded bounding box, background dimmed), the whole
image with the mask outlined and the query. ``semantics.batch_size`` > 1 puts several masks in one
call (each numbered). Calls run concurrently under ``semantics.concurrency``. Answers are cached
per (image hash, mask, prompt, model). Without a VLM the offline labeller measures colour
and shape from the pixels (with ImageNet labels when its classifier is fetched).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables.config import ContextThreadPoolExecutor
from langgraph.runtime import Runtime

from dtwin_agent import masks as mask_ops
from dtwin_agent.config import Settings, is_offline, model_name
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import context_of, image_of
from dtwin_agent.images import downscale
from dtwin_agent.llm.call import invoke_structured
from dtwin_agent.llm.models import chat_model
from dtwin_agent.llm.parsing import parse_semantics
from dtwin_agent.llm.prompts import load_prompt, render_prompt
from dtwin_agent.llm.schemas import SemanticBatch
from dtwin_agent.llm.usage import Usage
from dtwin_agent.llm.views import image_block, masked_crop, outlined
from dtwin_agent.offline import labeller
from dtwin_agent.progress import reporter
from dtwin_agent.twin import RLE


def offline_labeller_name(settings: Settings) -> str:
    """The offline labeller as the run's ``components`` name it (with the classifier it resolves to)."""
    from dtwin_agent.offline import classifier

    name = settings.semantics.classifier
    if name == "auto":
        name = classifier.DEFAULT if classifier.available(classifier.DEFAULT, settings) else "none"
    return labeller.labeller_name(name)


def system_prompt(settings: Settings) -> str:
    """The system prompt of the chosen strategy (brainstorm / direct / in_context)."""
    strategy = settings.semantics.strategy
    if strategy != "in_context":
        return load_prompt(f"semantics_{strategy}.system.md")
    if settings.semantics.examples_file:
        examples = json.loads(Path(settings.semantics.examples_file).read_text(encoding="utf-8"))
    else:
        examples = json.loads(load_prompt("examples/in_context.json"))
    lines = "\n".join(f"- region: {e['region']} -> semantic: {e['semantic']}" for e in examples)
    return render_prompt("semantics_in_context.system.md", examples=lines)


def _batch_messages(
    rgb: np.ndarray, batch: list[tuple[int, np.ndarray]], query: str, settings: Settings, system: str
) -> list[Any]:
    """Messages labelling ``batch`` (``(id, mask)`` pairs): per mask its crop and its outlined view."""
    side = settings.semantics.image_max_side
    ids = [object_id for object_id, _ in batch]
    note = "; each image is preceded by the region number it shows" if len(batch) > 1 else ""
    text = render_prompt(
        "semantics.user.md",
        query=query or "(no query: describe the region in general)",
        region_list=", ".join(f"#{i}" for i in ids),
        batch_note=note,
    )
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for object_id, mask in batch:
        content.append({"type": "text", "text": f"Region #{object_id}: crop"})
        content.append(image_block(masked_crop(rgb, mask, settings.semantics.crop_padding), side))
        content.append({"type": "text", "text": f"Region #{object_id}: whole photo, region outlined"})
        content.append(image_block(outlined(rgb, mask), side))
    return [SystemMessage(system), HumanMessage(content=content)]


def _label_key(sha: str, rle: RLE, system: str, query: str, model: str) -> str:
    from dtwin_agent.cache import content_key

    return content_key("label", sha, rle.counts, list(rle.size), system, query, model)


def assign_semantics(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Label every proposal; returns ``semantics`` (id -> S_i) and usage."""
    context = context_of(runtime)
    settings = context.settings
    records = state.get("proposals", [])
    if not records:
        return {"semantics": {}}
    image = image_of(state)
    decoded = [(r.id, mask_ops.decode(r.mask)) for r in records]
    spec = settings.models.vlm
    if is_offline(spec):
        started = time.perf_counter()
        # measured on the proposer-sized copy: the same words and labels, far less work on huge photos
        small, _ = downscale(image.rgb, settings.perception.max_image_side)
        shape = small.shape[:2]
        texts = labeller.describe_all(
            small,
            [mask_ops.resize_mask(m, shape) for _, m in decoded],
            classifier=settings.semantics.classifier,
            settings=settings,
            on_progress=reporter("assign_semantics", "masks labelled"),
        )
        semantics = {str(i): text for (i, _), text in zip(decoded, texts, strict=True)}
        usage = Usage().add("semantics", calls=len(decoded), seconds=time.perf_counter() - started)
        return {
            "semantics": semantics,
            "usage": usage.model_dump(),
            "components": {"semantics": offline_labeller_name(settings)},
        }

    query = state.get("query", "")
    system = system_prompt(settings)
    model = chat_model("vlm", settings)
    name = model_name(spec)
    cache = context.get_cache()
    semantics: dict[str, str] = {}
    keys = {r.id: _label_key(image.sha256, r.mask, system, query, name) for r in records}
    todo = []
    for object_id, mask in decoded:
        hit = cache.get("label", keys[object_id]) if cache is not None else None
        if isinstance(hit, str):
            semantics[str(object_id)] = hit
        else:
            todo.append((object_id, mask))
    size = settings.semantics.batch_size
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    usage = Usage()
    warnings: list[str] = []

    def run(batch: list[tuple[int, np.ndarray]]) -> tuple[list[int], Any]:
        ids = [i for i, _ in batch]
        messages = _batch_messages(image.rgb, batch, query, settings, system)
        result = invoke_structured(
            model,
            messages,
            SemanticBatch,
            parse=lambda text: parse_semantics(text, ids),
            settings=settings,
            usage=usage,
            stage="semantics",
        )
        return ids, result

    progress = reporter("assign_semantics", "masks labelled")
    progress(len(semantics), len(decoded))  # cache hits are done already
    # LangChain's pool copies the run's context into its threads (callbacks, the progress stream)
    with ContextThreadPoolExecutor(max_workers=settings.semantics.concurrency) as pool:
        for ids, result in pool.map(run, batches):
            labels = result.parsed.objects if result.parsed is not None else []
            got = {label.id: label.semantic for label in labels if label.semantic.strip()}
            for object_id in ids:
                if object_id in got:
                    semantics[str(object_id)] = got[object_id]
                    if cache is not None:
                        cache.put("label", keys[object_id], got[object_id])
                else:
                    semantics[str(object_id)] = "unlabelled region"
                    warnings.append(f"assign_semantics: no usable label for object {object_id}")
            progress(len(semantics), len(decoded))
    update = {"semantics": semantics, "usage": usage.model_dump(), "components": {"semantics": f"vlm {name}"}}
    if warnings:
        update["warnings"] = warnings
    return update

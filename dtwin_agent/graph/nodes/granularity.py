"""select_granularity: L = F_VLM(x_img, x_txt) (paper Eq. 1)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from dtwin_agent.config import is_offline, model_name
from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import image_of, settings_of
from dtwin_agent.llm.call import invoke_structured
from dtwin_agent.llm.models import chat_model
from dtwin_agent.llm.parsing import parse_granularity
from dtwin_agent.llm.schemas import GranularityChoice
from dtwin_agent.llm.usage import Usage
from dtwin_agent.llm.views import image_block
from dtwin_agent.reasoning import get_reasoner
from dtwin_agent.reasoning.llm import granularity_messages


def select_granularity(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Choose group / object / part for the query.

    The VLM sees the image and the query. Without a VLM the reasoner decides from the query text
    alone; a fixed ``perception.granularity`` skips the model.
    """
    settings = settings_of(runtime)
    fixed = settings.perception.granularity
    if fixed != "auto":
        return {"granularity": fixed, "granularity_reason": "set by perception.granularity"}
    query = state.get("query", "").strip()
    if not query:
        return {"granularity": "object", "granularity_reason": "no query: object level"}

    usage = Usage()
    if is_offline(settings.models.vlm):
        with usage.recording():  # a local LLM server started here is its own usage stage
            reasoner = get_reasoner(settings)
            reply = reasoner.granularity(query, usage)
        choice, notes, component = reply.value, reply.report.get("notes", []), f"llm {reasoner.name}"
    else:
        image = image_block(image_of(state).rgb, settings.semantics.image_max_side)
        result = invoke_structured(
            chat_model("vlm", settings),
            granularity_messages(query, image),
            GranularityChoice,
            parse=parse_granularity,
            settings=settings,
            usage=usage,
            stage="granularity",
        )
        choice, notes = result.parsed, result.report.notes
        component = f"vlm {model_name(settings.models.vlm, settings)}"
    update: dict[str, Any] = {"usage": usage.model_dump(), "components": {"granularity": component}}
    if choice is None:
        return update | {
            "granularity": "object",
            "granularity_reason": "model answer unusable; object level used",
            "warnings": [f"granularity: could not parse the model's answer ({notes})"],
        }
    return update | {"granularity": choice.granularity, "granularity_reason": choice.reason}

"""select_granularity: L = F_VLM(x_img, x_txt) (paper Eq. 1)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from dtwin_agent.graph.context import Context
from dtwin_agent.graph.nodes._common import image_of, is_offline, model_name, settings_of
from dtwin_agent.llm.call import invoke_structured
from dtwin_agent.llm.models import chat_model
from dtwin_agent.llm.parsing import parse_granularity
from dtwin_agent.llm.prompts import load_prompt, render_prompt
from dtwin_agent.llm.schemas import GranularityChoice
from dtwin_agent.llm.usage import Usage
from dtwin_agent.llm.views import image_block


def select_granularity(state: dict[str, Any], runtime: Runtime[Context]) -> dict[str, Any]:
    """Choose group / object / part for the query.

    The VLM sees the image and the query. Without a VLM the LLM decides from the query text
    alone; a fixed ``perception.granularity`` skips the model.
    """
    settings = settings_of(runtime)
    image = image_of(state)
    update: dict[str, Any] = {
        "image_sha256": image.sha256,
        "width": image.width,
        "height": image.height,
        "source": image.source,
    }
    fixed = settings.perception.granularity
    if fixed != "auto":
        return update | {"granularity": fixed, "granularity_reason": "set by perception.granularity"}
    if not state.get("query", "").strip():
        return update | {"granularity": "object", "granularity_reason": "no query: object level"}

    usage = Usage()
    if is_offline(settings.models.vlm):
        role, note = "llm", "You cannot see the photo; decide from the request alone."
        content: Any = render_prompt("granularity.user.md", query=state["query"], image_note=note)
    else:
        role, note = "vlm", "The photo follows."
        text = render_prompt("granularity.user.md", query=state["query"], image_note=note)
        content = [{"type": "text", "text": text}, image_block(image.rgb, settings.semantics.image_max_side)]
    spec = getattr(settings.models, role)
    messages = [SystemMessage(load_prompt("granularity.system.md")), HumanMessage(content=content)]
    result = invoke_structured(
        chat_model(role, settings),
        messages,
        GranularityChoice,
        parse=parse_granularity,
        settings=settings,
        usage=usage,
        stage="granularity",
    )
    update |= {
        "usage": usage.model_dump(),
        "components": {"granularity": f"{role} {model_name(spec, settings)}"},
    }
    if result.parsed is None:
        return update | {
            "granularity": "object",
            "granularity_reason": "model answer unusable; object level used",
            "warnings": [f"granularity: could not parse the model's answer ({result.report.notes})"],
        }
    return update | {"granularity": result.parsed.granularity, "granularity_reason": result.parsed.reason}

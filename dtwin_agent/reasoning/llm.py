"""The LLM reasoner: prompt files in, one structured call, the answer parsed into the central types.

:class:`LLMReasoner` renders ``llm/prompts/`` (granularity, refine, single-shot) with JSON(D) from
:meth:`~dtwin_agent.twin.DigitalTwin.to_prompt_json` and asks the chat model through
:func:`~dtwin_agent.llm.call.invoke_structured` (retries, one repair round-trip, parse report). Its
:meth:`~LLMReasoner.path` serves an SFTDT model exactly the messages Seg-DT records train it on
(:func:`~dtwin_agent.sft.records.render_messages`) and parses its ``{"path", "ids"}`` answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from dtwin_agent.config import Settings
from dtwin_agent.llm.call import StructuredResult, invoke_structured
from dtwin_agent.llm.parsing import parse_granularity, parse_refine_step, parse_single_shot
from dtwin_agent.llm.prompts import load_prompt, render_prompt
from dtwin_agent.llm.schemas import GranularityChoice, RefineStepOutput, SingleShotOutput
from dtwin_agent.llm.usage import Usage
from dtwin_agent.reasoning.base import Reply, step_from_kept
from dtwin_agent.twin import DigitalTwin, ReasoningStep

TEXT_ONLY_NOTE = "You cannot see the photo; decide from the request alone."
PHOTO_NOTE = "The photo follows."


def _dialogue_block(dialogue: str) -> str:
    return f"<dialogue>\n{dialogue}\n</dialogue>\n" if dialogue.strip() else ""


def granularity_messages(query: str, image: dict[str, Any] | None = None) -> list[BaseMessage]:
    """The messages of the granularity choice (paper Eq. 1): with an image content block for a VLM."""
    if image is None:
        content: Any = render_prompt("granularity.user.md", query=query, image_note=TEXT_ONLY_NOTE)
    else:
        text = render_prompt("granularity.user.md", query=query, image_note=PHOTO_NOTE)
        content = [{"type": "text", "text": text}, image]
    return [SystemMessage(load_prompt("granularity.system.md")), HumanMessage(content=content)]


def refine_messages(
    twin: DigitalTwin, query: str, previous: ReasoningStep, dialogue: str = ""
) -> list[BaseMessage]:
    """The messages of refinement step j: the system prompt, JSON(D^(j-1)) of ``previous``, the query."""
    user = render_prompt(
        "refine.user.md",
        query=query,
        step=previous.step + 1,
        previous_step=previous.step,
        twin_json=twin.to_prompt_json(previous),
        dialogue_block=_dialogue_block(dialogue),
    )
    return [SystemMessage(load_prompt("refine.system.md")), HumanMessage(user)]


def single_shot_messages(twin: DigitalTwin, query: str, dialogue: str = "") -> list[BaseMessage]:
    """The messages of the zero-shot Eq. 6 call."""
    user = render_prompt(
        "single_shot.user.md",
        query=query,
        twin_json=twin.to_prompt_json(),
        dialogue_block=_dialogue_block(dialogue),
    )
    return [SystemMessage(load_prompt("single_shot.system.md")), HumanMessage(user)]


def sftdt_messages(twin: DigitalTwin, query: str, dialogue: str = "") -> list[BaseMessage]:
    """The messages an SFTDT model is trained on (:func:`~dtwin_agent.sft.records.render_messages`).

    Seg-DT records have no dialogue: in a chat session the earlier turns are put before the
    request in the query: the dialogue text, a blank line, then ``Current request: <query>``.
    """
    from dtwin_agent.sft.records import SegDTInput, render_messages

    if dialogue.strip():
        query = f"{dialogue.strip()}\n\nCurrent request: {query}"
    kinds = {"system": SystemMessage, "user": HumanMessage}
    return [kinds[m["role"]](m["content"]) for m in render_messages(SegDTInput.from_twin(twin, query))]


def _step_reply(
    result: StructuredResult, twin: DigitalTwin, previous: ReasoningStep, kept: Callable[[Any], list[Any]]
) -> Reply[ReasoningStep]:
    """The step after ``previous`` from a parsed answer (``kept(parsed)``: id, semantic, reasoning)."""
    report = result.report.model_dump()
    if result.parsed is None:
        return Reply(None, report)
    return Reply(step_from_kept(twin, previous, kept(result.parsed), report), report)


class LLMReasoner:
    """A chat model reasoning over JSON(D) through the prompt files (any LangChain chat model).

    Args:
        model: the chat model (``models.llm``).
        settings: structured-output mode, retries, ``reasoning.max_refine_steps``.
        name: printable name for ``components``.
    """

    def __init__(self, model: BaseChatModel, settings: Settings, name: str):
        self.model = model
        self.settings = settings
        self.name = name

    def _prompt_mode(self) -> Settings:
        """These settings with ``models.structured_output = "prompt"`` (model instances kept as they are)."""
        models = self.settings.models.model_copy(update={"structured_output": "prompt"})
        return self.settings.model_copy(update={"models": models})

    def _ask(self, messages: list[BaseMessage], schema: type, parse: Any, usage: Usage, stage: str) -> Any:
        return invoke_structured(
            self.model, messages, schema, parse=parse, settings=self.settings, usage=usage, stage=stage
        )

    def granularity(self, query: str, usage: Usage) -> Reply[GranularityChoice]:
        """L from the request text (the prompt tells the model it cannot see the photo)."""
        result = self._ask(
            granularity_messages(query), GranularityChoice, parse_granularity, usage, "granularity"
        )
        return Reply(result.parsed, result.report.model_dump())

    def refine(
        self, twin: DigitalTwin, query: str, previous: ReasoningStep, dialogue: str, usage: Usage
    ) -> Reply[ReasoningStep]:
        """One refinement step; ids outside D^(j-1) are dropped and reported."""
        result = self._ask(
            refine_messages(twin, query, previous, dialogue),
            RefineStepOutput,
            lambda text: parse_refine_step(text, previous.ids),
            usage,
            "refine",
        )
        return _step_reply(
            result, twin, previous, lambda out: [(o.id, o.semantic, o.reasoning) for o in out.objects]
        )

    def single_shot(self, twin: DigitalTwin, query: str, dialogue: str, usage: Usage) -> Reply[ReasoningStep]:
        """The chosen ids with one reason for all (paper Eq. 6)."""
        result = self._ask(
            single_shot_messages(twin, query, dialogue),
            SingleShotOutput,
            lambda text: parse_single_shot(text, twin.ids),
            usage,
            "refine",
        )
        whole = ReasoningStep(step=0, ids=twin.ids)
        return _step_reply(result, twin, whole, lambda out: [(i, "", out.reason) for i in out.ids])

    def path(self, twin: DigitalTwin, query: str, dialogue: str, usage: Usage) -> Reply[list[ReasoningStep]]:
        """The SFTDT answer: exactly the trained messages, in prompt mode (no tools or format added)."""
        from dtwin_agent.sft.records import SFTDTAnswer, parse_answer

        result = invoke_structured(
            self.model,
            sftdt_messages(twin, query, dialogue),
            SFTDTAnswer,
            parse=lambda text: parse_answer(text, twin.ids),
            settings=self._prompt_mode(),
            usage=usage,
            stage="refine",
        )
        report = result.report.model_dump()
        if result.parsed is None:
            return Reply(None, report)
        steps = list(result.parsed)
        steps[-1] = steps[-1].model_copy(update={"report": report})
        return Reply(steps, report)

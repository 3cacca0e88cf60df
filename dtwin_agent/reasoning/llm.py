"""The LLM reasoner: prompt files in, structured calls, the answer parsed into the central types.

:class:`LLMReasoner` renders ``llm/prompts/`` (granularity, refine, single-shot) with JSON(D) from
:meth:`~dtwin_agent.twin.DigitalTwin.to_prompt_json` and asks the chat model through
:func:`~dtwin_agent.llm.call.invoke_structured` (retries, one repair round-trip, parse report). Its
:meth:`~LLMReasoner.path` serves an SFTDT model exactly the messages Seg-DT records train it on
(:func:`~dtwin_agent.sft.records.render_messages`) and parses its ``{"path", "ids"}`` answer.

Prompt layout: what does not change comes first, so that llama.cpp's prompt cache and providers'
prompt caching reuse it. The system prompt, then the whole twin JSON(D) (the same text at every
step and for every query on that twin), then what is specific to this call: the dialogue, the
query, the step (at step j >= 2, JSON(D^(j-1)) of the objects still in question) and the
pre-filter's hint. A second step or a follow-up query on a cached twin reads only that tail.

Three levers from ``reasoning`` settings: ``prefilter`` (the deterministic keyword/rank candidates
of :mod:`dtwin_agent.reasoning.prefilter`, shown as a hint the model may override), ``restate``
(when the request's own words give the pre-filter nothing at step 1, one short call restates it
in plain words, "the box as blue as the sea" -> "blue box", "the dog" -> "dog, golden retriever,
poodle"; the pre-filter matches those names, colours and shapes too, and the model reads them
beside the request; later steps reuse step 1's restatement from its report) and
``samples`` (self-consistency: k answers, the first greedy, the most frequent id set wins).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from dtwin_agent.config import Settings
from dtwin_agent.llm.call import invoke_structured
from dtwin_agent.llm.parsing import (
    parse_granularity,
    parse_refine_step,
    parse_restatement,
    parse_single_shot,
    unusable_answer,
)
from dtwin_agent.llm.prompts import load_prompt, render_prompt, system_prompt
from dtwin_agent.llm.schemas import GranularityChoice, RefineStepOutput, Restatement, SingleShotOutput
from dtwin_agent.llm.usage import Usage
from dtwin_agent.offline.lexical import terms
from dtwin_agent.reasoning.base import Reply, step_from_kept
from dtwin_agent.reasoning.prefilter import hint_text, suggest
from dtwin_agent.twin import DigitalTwin, ReasoningStep

TEXT_ONLY_NOTE = "You cannot see the photo; decide from the request alone."
PHOTO_NOTE = "The photo follows."


def _dialogue_block(dialogue: str) -> str:
    return f"<dialogue>\n{dialogue}\n</dialogue>\n" if dialogue.strip() else ""


def _twin_values(twin: DigitalTwin) -> dict[str, Any]:
    """The twin part of a prompt: N', the labeller named once, JSON(D)."""
    labeller = twin.components.get("semantics") or "not named"
    return {
        "n_objects": len(twin.objects),
        "labeller": labeller.replace('"', "'"),
        "twin_json": twin.to_prompt_json(),
    }


def granularity_messages(query: str, image: dict[str, Any] | None = None) -> list[BaseMessage]:
    """The messages of the granularity choice (paper Eq. 1): with an image content block for a VLM."""
    if image is None:
        content: Any = render_prompt("granularity.user.md", query=query, image_note=TEXT_ONLY_NOTE)
    else:
        text = render_prompt("granularity.user.md", query=query, image_note=PHOTO_NOTE)
        content = [{"type": "text", "text": text}, image]
    return [SystemMessage(system_prompt("granularity.system.md")), HumanMessage(content=content)]


def refine_messages(
    twin: DigitalTwin, query: str, previous: ReasoningStep, dialogue: str = "", hint: str = ""
) -> list[BaseMessage]:
    """The messages of refinement step j = ``previous.step + 1`` (paper Eqs. 7-8).

    The whole twin JSON(D) comes first (the cached prefix); the step block names the objects
    still in question: every object at step 1, JSON(D^(j-1)) with its semantics and reasoning
    notes at step j >= 2.
    """
    if previous.step == 0:
        step_block = render_prompt("refine.step1.md", hint=hint)
    else:
        step_block = render_prompt(
            "refine.step.md",
            step=previous.step + 1,
            previous_step=previous.step,
            kept_json=twin.to_prompt_json(previous),
            hint=hint,
        )
    user = render_prompt(
        "refine.user.md",
        **_twin_values(twin),
        dialogue_block=_dialogue_block(dialogue),
        query=query,
        step_block=step_block,
    )
    return [SystemMessage(system_prompt("refine.system.md")), HumanMessage(user.rstrip("\n"))]


def single_shot_messages(
    twin: DigitalTwin, query: str, dialogue: str = "", hint: str = ""
) -> list[BaseMessage]:
    """The messages of the zero-shot Eq. 6 call (the twin first, as in :func:`refine_messages`)."""
    user = render_prompt(
        "single_shot.user.md",
        **_twin_values(twin),
        dialogue_block=_dialogue_block(dialogue),
        query=query,
        hint=hint,
    )
    return [SystemMessage(system_prompt("single_shot.system.md")), HumanMessage(user.rstrip("\n"))]


def restate_messages(query: str, dialogue: str = "") -> list[BaseMessage]:
    """The messages asking for the request in plain words (no twin: a short, cheap call).

    The system prompt, then the worked examples of ``prompts/examples/restate.json`` as earlier
    turns (a small model follows examples better than rules), then the request.
    """
    messages: list[BaseMessage] = [SystemMessage(render_prompt("restate.system.md"))]
    for example in json.loads(load_prompt("examples/restate.json")):
        asked = render_prompt("restate.user.md", dialogue_block="", query=example["query"])
        messages.append(HumanMessage(asked.rstrip("\n")))
        answer = {"thought": example["thought"], "plain": example["plain"]}
        messages.append(AIMessage(json.dumps(answer)))
    user = render_prompt("restate.user.md", dialogue_block=_dialogue_block(dialogue), query=query)
    return [*messages, HumanMessage(user.rstrip("\n"))]


def restated_hint(plain: str) -> str:
    """The line the LLM reads about the restatement (empty for none)."""
    if not plain:
        return ""
    return f'\nThe request in plain words (a rewrite; the request itself decides): "{plain}".'


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


def _cached_prefix(messages: list[BaseMessage]) -> str:
    """The part of a reasoning prompt that stays the same across steps and queries: system + twin."""
    user = messages[-1].content if isinstance(messages[-1].content, str) else ""
    end = user.find("</digital_twin>")
    return f"{messages[0].content}\n{user[: end + len('</digital_twin>')]}" if end >= 0 else ""


def _slot_files(model: Any) -> Any:
    """:class:`~dtwin_agent.offline.local_llm.SlotFiles` of ``model``'s local server (with a slot folder)."""
    from dtwin_agent.offline import local_llm

    server = local_llm.server_for(str(getattr(model, "openai_api_base", "") or ""))
    return local_llm.SlotFiles(server) if server is not None and server.slot_dir is not None else None


class LLMReasoner:
    """A chat model reasoning over JSON(D) through the prompt files (any LangChain chat model).

    Args:
        model: the chat model (``models.llm``).
        settings: structured-output mode, retries, ``reasoning.prefilter`` / ``samples``.
        name: printable name for ``components`` and failure messages.
    """

    def __init__(self, model: BaseChatModel, settings: Settings, name: str):
        self.model = model
        self.settings = settings
        self.name = name
        self._slots = _slot_files(model)
        self._restated: dict[tuple[str, str], str] = {}  # (query, dialogue) -> plain words

    def _prompt_mode(self) -> Settings:
        """These settings with ``models.structured_output = "prompt"`` (model instances kept as they are)."""
        models = self.settings.models.model_copy(update={"structured_output": "prompt"})
        return self.settings.model_copy(update={"models": models})

    def _sampler(self, index: int) -> Any:
        """The model for self-consistency sample ``index`` (0: as configured; later: sampled)."""
        fields = getattr(type(self.model), "model_fields", {})
        if index == 0 or "temperature" not in fields:
            return self.model
        update: dict[str, Any] = {"temperature": self.settings.reasoning.sample_temperature}
        if "seed" in fields:
            update["seed"] = index
        return self.model.model_copy(update=update)

    def _ask(
        self,
        messages: list[BaseMessage],
        schema: type,
        parse: Callable[[str], Any],
        key: Callable[[Any], Any],
        usage: Usage,
        stage: str,
    ) -> tuple[Any, dict[str, Any], str]:
        """``(parsed or None, report, problem)``: one answer, or the vote of ``reasoning.samples``.

        ``key`` maps a parsed answer to what is voted on (the id set). Unusable samples do not
        vote; the answer is the first sample whose key won (ties: the earliest, so the greedy one).
        """
        k = self.settings.reasoning.samples if stage == "refine" else 1
        prefix = _cached_prefix(messages) if self._slots is not None else ""
        if prefix:
            self._slots.before(prefix)
        results = []
        for index in range(k):
            results.append(
                invoke_structured(
                    self._sampler(index),
                    messages,
                    schema,
                    parse=parse,
                    settings=self.settings,
                    usage=usage,
                    stage=stage,
                )
            )
            if prefix and index == 0:
                self._slots.after(prefix)
        usable = [r for r in results if r.parsed is not None]
        if not usable:
            first = results[0]
            return None, first.report.model_dump(), unusable_answer(first.raw, first.report)
        votes = Counter(key(r.parsed) for r in usable)
        top = max(votes.values())
        chosen = next(r for r in usable if votes[key(r.parsed)] == top)
        report = chosen.report.model_dump()
        if k > 1:
            report["notes"].append(
                f"self-consistency: {top} of {k} answers chose this id set ({len(usable)} usable)"
            )
        return chosen.parsed, report, ""

    def granularity(self, query: str, usage: Usage) -> Reply[GranularityChoice]:
        """L from the request text (the prompt tells the model it cannot see the photo)."""
        parsed, report, problem = self._ask(
            granularity_messages(query), GranularityChoice, parse_granularity, str, usage, "granularity"
        )
        return Reply(parsed, report, problem)

    def restated(self, query: str, dialogue: str, usage: Usage) -> str:
        """``query`` in plain words (:class:`~dtwin_agent.llm.schemas.Restatement`); "" when it adds nothing.

        One call (counted in ``usage`` under ``refine``), remembered by this reasoner (one graph
        step: a second opinion in that step reuses it). An unusable answer (after the one repair)
        is no restatement, not a failure; so is one whose words the request already has ("the
        flowerpot" -> "flowerpot").
        """
        key = (query, dialogue)
        if key not in self._restated:
            result = invoke_structured(
                self.model,
                restate_messages(query, dialogue),
                Restatement,
                parse=parse_restatement,
                settings=self.settings,
                usage=usage,
                stage="refine",
            )
            plain = result.parsed.plain if result.parsed is not None else ""
            self._restated[key] = "" if terms(plain) <= terms(query) else plain
        return self._restated[key]

    def _hint(
        self, twin: DigitalTwin, query: str, previous: ReasoningStep, dialogue: str, usage: Usage
    ) -> tuple[str, str]:
        """``(hint, plain)``: the lines the LLM reads after the twin, and the restatement ("" for none).

        The restatement is asked only on D^(0) (step 1, or the single-shot pick), when the
        pre-filter finds nothing to match in the request's own words; a later step reuses the one
        in D^(j-1)'s report.
        """
        reasoning = self.settings.reasoning
        if not (reasoning.prefilter or reasoning.restate):
            return "", ""
        semantics = {i: p.semantic for i, p in twin.prompt_twin(previous).root.items()}
        found = suggest(twin, query, previous.ids, semantics)
        plain = ""
        if reasoning.restate and previous.step > 0:
            plain = (previous.report or {}).get("restated", "")
            if plain:
                self._restated.setdefault((query, dialogue), plain)
        elif reasoning.restate and found is None:
            plain = self.restated(query, dialogue, usage)
        if not reasoning.prefilter:
            return restated_hint(plain), plain
        suggestion = found
        if plain and found is None:
            suggestion = suggest(twin, query, previous.ids, semantics, plain)
        return restated_hint(plain) + hint_text(suggestion), plain

    def refine(
        self, twin: DigitalTwin, query: str, previous: ReasoningStep, dialogue: str, usage: Usage
    ) -> Reply[ReasoningStep]:
        """One refinement step; ids outside D^(j-1) are dropped and reported."""
        hint, plain = self._hint(twin, query, previous, dialogue, usage)
        messages = refine_messages(twin, query, previous, dialogue, hint)
        parsed, report, problem = self._ask(
            messages,
            RefineStepOutput,
            lambda text: parse_refine_step(text, previous.ids),
            lambda out: frozenset(o.id for o in out.objects),
            usage,
            "refine",
        )
        if plain:
            report["restated"] = plain
        if parsed is None:
            return Reply(None, report, problem)
        kept = [(o.id, o.semantic, o.reasoning) for o in parsed.objects]
        return Reply(step_from_kept(twin, previous, kept, report), report)

    def single_shot(self, twin: DigitalTwin, query: str, dialogue: str, usage: Usage) -> Reply[ReasoningStep]:
        """The chosen ids with one reason for all (paper Eq. 6)."""
        start = ReasoningStep(step=0, ids=twin.ids)
        hint, plain = self._hint(twin, query, start, dialogue, usage)
        messages = single_shot_messages(twin, query, dialogue, hint)
        parsed, report, problem = self._ask(
            messages,
            SingleShotOutput,
            lambda text: parse_single_shot(text, twin.ids),
            lambda out: frozenset(out.ids),
            usage,
            "refine",
        )
        if plain:
            report["restated"] = plain
        if parsed is None:
            return Reply(None, report, problem)
        kept = [(i, "", parsed.reason) for i in parsed.ids]
        return Reply(step_from_kept(twin, start, kept, report), report)

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
            return Reply(None, report, unusable_answer(result.raw, result.report))
        steps = list(result.parsed)
        steps[-1] = steps[-1].model_copy(update={"report": report})
        return Reply(steps, report)

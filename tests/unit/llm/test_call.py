"""Structured output, the repair round-trip, the parse report and usage, with scripted fake chat models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers.fakes import StatusError
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from dtwin_agent.config import Settings
from dtwin_agent.errors import ConfigError, ProviderCallError
from dtwin_agent.llm.call import invoke_structured, repair_message
from dtwin_agent.llm.parsing import ParseError, parse_granularity, parse_refine_step, parse_semantics
from dtwin_agent.llm.schemas import GranularityChoice, RefineStepOutput, SemanticBatch
from dtwin_agent.llm.usage import StageUsage, Usage, merge_usage

MESSAGES = [SystemMessage("Choose a granularity."), HumanMessage("<query>the mug's handle</query>")]


class Scripted(BaseChatModel):
    """Answers from a script (text, AIMessage, or an exception to raise) and records every call."""

    script: list[Any] = Field(default_factory=list)
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    tools: bool = False

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.calls.append(list(messages))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        message = item if isinstance(item, AIMessage) else AIMessage(content=item)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        if self.tools:
            return self
        raise NotImplementedError


class ToolFake(GenericFakeChatModel):
    """ENVIRONMENT.md's recipe: bind_tools returns self, fed AIMessage(tool_calls=...)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def settings(**models: Any) -> Settings:
    return Settings(models={"max_retries": 4, "backoff_s": 0.0, **models})


def tool_answer(name: str, args: dict[str, Any], **usage: int) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": "call-1"}],
        usage_metadata={**usage, "total_tokens": sum(usage.values())} if usage else None,
    )


# -- parsing and the repair round-trip --------------------------------------------------------------


def test_repair_round_trip_sends_the_bad_answer_and_the_error():
    model = Scripted(script=["I think it depends.", '{"granularity": "group", "reason": "all cups"}'])
    result = invoke_structured(
        model,
        MESSAGES,
        GranularityChoice,
        parse=parse_granularity,
        settings=settings(structured_output="prompt"),
        stage="granularity",
    )
    assert result.parsed.granularity == "group"
    assert result.attempts == 2
    with pytest.raises(ParseError) as err:
        parse_granularity("I think it depends.")
    second = model.calls[1]
    assert second[: len(MESSAGES)] == MESSAGES
    assert isinstance(second[-2], AIMessage) and second[-2].content == "I think it depends."
    assert isinstance(second[-1], HumanMessage)
    assert second[-1].content == repair_message(str(err.value))
    assert second[-1].content == (
        "Your previous answer could not be used: no granularity found; answer with an object with "
        '"granularity" (group, object or part) and "reason". '
        "Reply again with valid JSON only, in the requested format: no prose, no Markdown fences."
    )


def test_both_answers_garbage_gives_none_and_a_report_without_raising():
    model = Scripted(script=["no idea", "still no idea"])
    result = invoke_structured(
        model,
        MESSAGES,
        SemanticBatch,
        parse=lambda t: parse_semantics(t, [1]),
        settings=settings(structured_output="prompt"),
        stage="semantics",
    )
    assert result.parsed is None
    assert result.raw == "still no idea"
    assert result.attempts == 2
    assert any("repair" in n for n in result.report.notes)


def test_parser_bug_is_contained():
    def broken(text: str) -> Any:
        raise KeyError("oops")

    model = Scripted(script=["{}", "{}"])
    result = invoke_structured(
        model, MESSAGES, GranularityChoice, parse=broken, settings=settings(structured_output="prompt")
    )
    assert result.parsed is None


def test_answer_cut_off_by_the_provider_gets_the_repair_round_trip():
    openai = pytest.importorskip("openai")
    from openai.types.chat import ChatCompletion

    cut = ChatCompletion.model_construct(id="c", choices=[], created=0, model="m", object="chat.completion")
    model = Scripted(script=[openai.LengthFinishReasonError(completion=cut), '{"granularity": "object"}'])
    result = invoke_structured(
        model,
        MESSAGES,
        GranularityChoice,
        parse=parse_granularity,
        settings=settings(structured_output="prompt"),
    )
    assert result.parsed.granularity == "object"
    assert result.attempts == 2


def test_unknown_ids_reach_the_report():
    model = Scripted(script=['{"objects": [{"id": 3, "reasoning": "mug"}, {"id": 99}]}'])
    result = invoke_structured(
        model,
        MESSAGES,
        RefineStepOutput,
        parse=lambda t: parse_refine_step(t, [3]),
        settings=settings(structured_output="prompt"),
        stage="refine",
    )
    assert [o.id for o in result.parsed.objects] == [3]
    assert result.report.unknown_ids == [99]


# -- structured output modes ------------------------------------------------------------------------


def test_native_structured_output_with_tool_calls_and_id_checks():
    model = ToolFake(
        messages=iter(
            [
                tool_answer(
                    "RefineStepOutput", {"objects": [{"id": 3}, {"id": 99}]}, input_tokens=40, output_tokens=6
                )
            ]
        )
    )
    usage = Usage()
    result = invoke_structured(
        model,
        MESSAGES,
        RefineStepOutput,
        parse=lambda t: parse_refine_step(t, [3]),
        settings=settings(structured_output="native"),
        usage=usage,
        stage="refine",
    )
    assert result.mode == "native"
    assert [o.id for o in result.parsed.objects] == [3]
    assert result.report.unknown_ids == [99]
    assert (usage.stages["refine"].input_tokens, usage.stages["refine"].output_tokens) == (40, 6)


def test_native_answer_failing_the_schema_is_parsed_from_the_raw_tool_call():
    model = ToolFake(messages=iter([tool_answer("GranularityChoice", {"granularity": "object parts"})]))
    result = invoke_structured(
        model,
        MESSAGES,
        GranularityChoice,
        parse=parse_granularity,
        settings=settings(structured_output="auto"),
    )
    assert result.mode == "native"
    assert result.parsed.granularity == "part"
    assert json.loads(result.raw) == {"granularity": "object parts"}


def test_auto_falls_back_to_prompt_for_models_without_structured_output():
    model = GenericFakeChatModel(messages=iter([AIMessage('```json\n{"granularity": "part"}\n```')]))
    result = invoke_structured(
        model,
        MESSAGES,
        GranularityChoice,
        parse=parse_granularity,
        settings=settings(structured_output="auto"),
    )
    assert result.mode == "prompt"
    assert result.parsed.granularity == "part"


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_the_structured_output_method_reaches_langchain(method, monkeypatch: pytest.MonkeyPatch):
    model = ToolFake(messages=iter([tool_answer("GranularityChoice", {"granularity": "part"})]))
    seen: dict[str, Any] = {}
    original = ToolFake.with_structured_output

    def spy(self: Any, schema: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return original(self, schema, include_raw=True)

    monkeypatch.setattr(ToolFake, "with_structured_output", spy)
    result = invoke_structured(
        model,
        MESSAGES,
        GranularityChoice,
        parse=parse_granularity,
        settings=settings(structured_output=method),
    )
    assert seen == {"include_raw": True, "method": method}
    assert (result.mode, result.parsed.granularity) == ("native", "part")


def test_native_without_support_is_a_config_error():
    model = GenericFakeChatModel(messages=iter([AIMessage("{}")]))
    with pytest.raises(ConfigError, match="structured_output"):
        invoke_structured(
            model,
            MESSAGES,
            GranularityChoice,
            parse=parse_granularity,
            settings=settings(structured_output="native"),
        )


def test_auto_falls_back_to_prompt_when_the_provider_refuses_native():
    model = Scripted(
        tools=True,
        script=[StatusError(400, "response_format json_schema unsupported"), '{"granularity": "object"}'],
    )
    run = dict(parse=parse_granularity, settings=settings(structured_output="auto"))
    result = invoke_structured(model, MESSAGES, GranularityChoice, **run)
    assert (result.mode, result.parsed.granularity, result.attempts) == ("prompt", "object", 1)
    assert any("prompt mode used" in n and "HTTP 400" in n for n in result.report.notes)
    assert len(model.calls) == 2  # the refused request is not retried


def test_native_mode_bad_request_raises():
    model = Scripted(tools=True, script=[StatusError(400, "unsupported")])
    with pytest.raises(ProviderCallError):
        invoke_structured(
            model,
            MESSAGES,
            GranularityChoice,
            parse=parse_granularity,
            settings=settings(structured_output="native"),
        )
    assert len(model.calls) == 1


# -- usage ------------------------------------------------------------------------------------------


def test_usage_sums_tokens_and_counts_missing_metadata_as_zero():
    model = Scripted(
        script=[
            AIMessage(
                '{"granularity": "part"}',
                usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
            ),
            AIMessage('{"granularity": "part"}'),  # no usage_metadata
            AIMessage(
                '{"granularity": "part"}',
                usage_metadata={"input_tokens": 7, "output_tokens": 2, "total_tokens": 9},
            ),
        ]
    )
    usage = Usage()
    for _ in range(3):
        invoke_structured(
            model,
            MESSAGES,
            GranularityChoice,
            parse=parse_granularity,
            settings=settings(structured_output="prompt"),
            usage=usage,
            stage="granularity",
        )
    row = usage.stages["granularity"]
    assert (row.calls, row.input_tokens, row.output_tokens) == (3, 17, 5)
    assert row.seconds >= 0


def test_usage_merge_total_reducer_and_table():
    a = Usage().add("granularity", input_tokens=10, output_tokens=2, seconds=1.0)
    b = Usage().add("semantics", calls=4, input_tokens=100, output_tokens=40, seconds=2.5)
    b.add("granularity", input_tokens=5, output_tokens=1, seconds=0.5)
    merged = a.merge(b)
    assert merged.stages["granularity"] == StageUsage(calls=2, input_tokens=15, output_tokens=3, seconds=1.5)
    assert merged.total().calls == 6 and merged.total().total_tokens == 158
    assert a.stages["granularity"].calls == 1  # merge makes a new Usage
    reduced = merge_usage(merge_usage(None, a.model_dump()), b)
    assert reduced == merged.model_dump()
    assert merge_usage({}, None) == {"stages": {}}
    table = merged.table()
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "calls", "input", "tokens", "output", "tokens", "seconds"]
    assert lines[2].split() == ["granularity", "2", "15", "3", "1.50"]
    assert lines[-1].split() == ["total", "6", "115", "43", "4.00"]

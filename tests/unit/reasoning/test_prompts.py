"""Prompt layout for prompt caches, and no copyable placeholders (issue 12 item 3, issue 15 item 4)."""

from __future__ import annotations

import re

import pytest
from helpers.twins import toy_twin

from dtwin_agent.llm.prompts import is_template_text, prompt_dir, template_texts
from dtwin_agent.reasoning.llm import _cached_prefix, refine_messages, single_shot_messages
from dtwin_agent.twin import ObjectDecision, ReasoningStep


def rendered(messages) -> str:
    return messages[0].content + "\n" + messages[1].content


def test_every_step_and_query_on_a_twin_starts_with_the_same_text() -> None:
    """The system prompt and JSON(D) come first, so llama.cpp / provider caches reuse them."""
    twin = toy_twin()
    step0 = ReasoningStep(step=0, ids=twin.ids)
    step1 = ReasoningStep(
        step=1, objects={1: ObjectDecision(), 3: ObjectDecision(), 2: ObjectDecision(decision="rejected")}
    )
    first = refine_messages(twin, "something to cut with", step0)
    second = refine_messages(twin, "something to cut with", step1, hint="\nKeyword pre-filter: #3.")
    other = refine_messages(twin, "the mug", step0, dialogue="user: the knife\nassistant: #3")
    prefix = _cached_prefix(first)
    assert prefix.endswith(twin.to_prompt_json() + "</digital_twin>")
    for messages in (second, other):
        assert _cached_prefix(messages) == prefix and rendered(messages).startswith(prefix)
    # what differs comes after the twin: the query, the dialogue, the step and its objects, the hint
    tail = rendered(second)[len(prefix) :]
    assert "<query>something to cut with</query>" in tail and "Refinement step 2" in tail
    assert "<still_in_question>" in tail and "Keyword pre-filter" in tail
    assert "<dialogue>" in rendered(other)[len(prefix) :]
    assert _cached_prefix(single_shot_messages(twin, "the mug")).endswith("</digital_twin>")


def test_the_twin_tag_names_the_labeller_once() -> None:
    twin = toy_twin().model_copy(
        update={"components": {"semantics": "offline labeller (no object recognition)"}}
    )
    user = refine_messages(twin, "q", ReasoningStep(step=0, ids=twin.ids))[1].content
    assert user.startswith('<digital_twin objects="3" semantics="offline labeller (no object recognition)">')
    assert user.count("offline labeller") == 1


def test_prompt_files_hold_no_example_values_to_copy() -> None:
    """Answer formats are described in words: no '...', no '<the label>', no example answers."""
    for path in sorted(prompt_dir().glob("*.md")):
        text = path.read_text()
        assert '"..."' not in text and "updated description" not in text, path.name
        assert not re.search(r'":\s*"<[^>]*>"', text), path.name  # "key": "<placeholder>"
        assert not re.search(r'\{"\w+":\s*"[^"]+"', text), path.name  # a JSON example with a value


@pytest.mark.parametrize(
    ("value", "copied"),
    [
        ("updated description", True),
        ("...", True),
        ("<the label>", True),
        ("  One sentence of your own  ", True),  # a key description from a prompt file
        ("semantic", True),  # the field's own name
        (
            "kitchen knife with a serrated steel blade, lying on the cutting board; used for cutting bread",
            True,
        ),
        ("a red mug with a chipped handle", False),
        ("label on the bottle", False),
    ],
)
def test_template_text_is_recognised(value: str, copied: bool) -> None:
    assert is_template_text(value, "semantic") is copied
    assert "updated description" in template_texts()

"""The reasoner protocol (paper Eqs. 1, 6-9 over JSON(D)) and the step every reasoner builds.

A reasoner reads structured input only (the :class:`~dtwin_agent.twin.DigitalTwin`, the query, the
previous :class:`~dtwin_agent.twin.ReasoningStep`, the dialogue of a chat session) and answers in
the central types. How it decides is its own business: the LLM reasoner renders the prompt files
and makes a structured call (:mod:`dtwin_agent.reasoning.llm`), the keyword reasoner matches
words (:mod:`dtwin_agent.offline.lexical`). Nothing it is told comes as rendered prompt text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from dtwin_agent.llm.schemas import GranularityChoice
from dtwin_agent.llm.usage import Usage
from dtwin_agent.twin import DigitalTwin, ObjectDecision, ReasoningStep

T = TypeVar("T")


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A reasoner's answer.

    Attributes:
        value: the answer, or None when the model's answer could not be used (after the one
            repair round-trip); the graph reports that, it never raises.
        report: what parsing repaired or dropped (``ParseReport`` as a dict).
        problem: when ``value`` is None, what was wrong with the answer, in a few words
            (:func:`~dtwin_agent.llm.parsing.unusable_answer`: ``prose instead of JSON``...).
    """

    value: T | None
    report: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


@runtime_checkable
class Reasoner(Protocol):
    """Anything that decides granularity from a request and reasons over JSON(D)."""

    name: str
    """Printable name for the run's ``components`` (says when it is not an LLM)."""

    def granularity(self, query: str, usage: Usage) -> Reply[GranularityChoice]:
        """L from the request text alone (paper Eq. 1 without the photo, when no VLM is set)."""
        ...

    def refine(
        self, twin: DigitalTwin, query: str, previous: ReasoningStep, dialogue: str, usage: Usage
    ) -> Reply[ReasoningStep]:
        """One step D^(j) = F_refine(D^(j-1), x_txt) (paper Eqs. 7-8); ``previous`` is D^(j-1)."""
        ...

    def single_shot(self, twin: DigitalTwin, query: str, dialogue: str, usage: Usage) -> Reply[ReasoningStep]:
        """I = F_LLM(JSON(D), x_txt) in one answer (paper Eq. 6), as step 1."""
        ...

    def path(self, twin: DigitalTwin, query: str, dialogue: str, usage: Usage) -> Reply[list[ReasoningStep]]:
        """The whole path D^(1..K) and I in one answer, as SFTDT models give it (paper Eq. 9)."""
        ...


def step_from_kept(
    twin: DigitalTwin,
    previous: ReasoningStep,
    kept: Sequence[tuple[int, str, str]],
    report: dict[str, Any] | None = None,
) -> ReasoningStep:
    """D^(j) from what a reasoner kept of D^(j-1).

    Args:
        twin: the twin D.
        previous: D^(j-1).
        kept: ``(id, semantic S_i^(j), reasoning R_i^(j))`` in the reasoner's order; ids of
            ``previous`` only. An empty semantic keeps S_i^(j-1).
        report: the parse report of the answer.

    Returns:
        Step j: the kept objects decided ``kept``, every other object of D^(j-1) ``rejected``.
    """
    decisions: dict[int, ObjectDecision] = {}
    for object_id, semantic, reasoning in kept:
        before = previous.objects.get(object_id)
        fallback = before.semantic if before is not None and before.semantic else twin.get(object_id).semantic
        decisions[object_id] = ObjectDecision(
            decision="kept", semantic=semantic or fallback, reasoning=reasoning or ""
        )
    for object_id in previous.ids:
        decisions.setdefault(object_id, ObjectDecision(decision="rejected"))
    return ReasoningStep(
        step=previous.step + 1, ids=[i for i, _, _ in kept], objects=decisions, report=report
    )

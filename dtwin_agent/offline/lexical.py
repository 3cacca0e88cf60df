"""The embedded keyword reasoner ``offline:lexical``: matches words, not an LLM.

:class:`LexicalReasoner` implements the :class:`~dtwin_agent.reasoning.base.Reasoner` interface on
structured input (the twin, the query, the previous step), so every node of the graph runs with no
key, no network and no fetched model. It decides by keyword overlap between the query and each
object's semantic text and says so in every reasoning note and in its name. It reads only the
request, never the dialogue of a chat session. Real use wants a real LLM (``models.llm``).
"""

from __future__ import annotations

import re
import time

from dtwin_agent.config import LEXICAL, Settings
from dtwin_agent.llm.schemas import GranularityChoice
from dtwin_agent.llm.usage import Usage
from dtwin_agent.reasoning.base import Reply, step_from_kept
from dtwin_agent.twin import DigitalTwin, ReasoningStep

NAME = LEXICAL

_STOP = set(
    """a an the of to in on at for with and or is are be it its this that these those which what where who
    whom how why would could should can will you your me my i we our they them their there here from by as
    into onto out up down over under about than then so if do does did use used using make makes get one
    ones thing things something image picture photo object objects region please show find segment""".split()
)
_PART_WORDS = set(
    """part parts handle handles wheel wheels lens lenses door doors leg legs ear ears eye eyes nose mouth
    button buttons screen lid tip blade horn horns tail head face hand hands arm arms roof window windows
    cap knob strap sole seat pedal dial display speedometer gauge""".split()
)
_GROUP_WORDS = {"all", "every", "group", "groups", "both", "pair", "set", "together", "everything"}


def stem(word: str) -> str:
    """A crude English stem: ``-ing``, ``-es``, ``-ed``, ``-s`` cut when 3 letters remain."""
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> set[str]:
    """The stemmed content words of ``text`` (stop words and single letters left out)."""
    return {stem(w) for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 1}


def _keyword_granularity(query: str) -> GranularityChoice:
    """Part words -> ``part``, group words -> ``group``, else ``object``."""
    words = set(re.findall(r"[a-z]+", query.lower()))
    if words & _PART_WORDS:
        hit = sorted(words & _PART_WORDS)[0]
        return GranularityChoice(granularity="part", reason=f"offline keyword rule: '{hit}' names a part")
    if words & _GROUP_WORDS:
        hit = sorted(words & _GROUP_WORDS)[0]
        return GranularityChoice(
            granularity="group", reason=f"offline keyword rule: '{hit}' suggests several objects"
        )
    return GranularityChoice(granularity="object", reason="offline keyword rule: no part or group words")


def keyword_scores(query: str, semantics: dict[int, str]) -> dict[int, list[str]]:
    """For each id, the query's terms its semantic shares (stemmed, stop words left out)."""
    wanted = terms(query)
    return {object_id: sorted(wanted & terms(text)) for object_id, text in semantics.items()}


class LexicalReasoner:
    """Keyword overlap standing in for an LLM (the ``offline:lexical`` reasoner).

    Refinement step 1 keeps every object whose semantic shares a word with the query, later steps
    only the best matches; single-shot keeps the best matches; the SFTDT path runs the refinement
    rules until they converge. Usage counts one call per answer, no tokens.

    Args:
        settings: ``reasoning.max_refine_steps`` bounds :meth:`path`.
    """

    name = f"{NAME} (keyword matcher, not an LLM)"

    def __init__(self, settings: Settings | None = None):
        self.max_steps = settings.reasoning.max_refine_steps if settings is not None else 4

    def granularity(self, query: str, usage: Usage) -> Reply[GranularityChoice]:
        """Keyword rules on the request."""
        started = time.perf_counter()
        choice = _keyword_granularity(query)
        usage.add("granularity", seconds=time.perf_counter() - started)
        return Reply(choice)

    def _keep(
        self, twin: DigitalTwin, query: str, previous: ReasoningStep, *, best_only: bool
    ) -> ReasoningStep:
        shown = twin.prompt_twin(previous)
        scores = keyword_scores(query, {i: entry.semantic for i, entry in shown.root.items()})
        best = max((len(hits) for hits in scores.values()), default=0)
        keep = [i for i, hits in scores.items() if hits and (len(hits) == best or not best_only)]
        kept = [
            (
                i,
                "",
                f"{NAME}: shares {', '.join(scores[i])} with the query ({len(scores[i])} of the best {best})",
            )
            for i in keep
        ]
        return step_from_kept(twin, previous, kept)

    def refine(
        self, twin: DigitalTwin, query: str, previous: ReasoningStep, dialogue: str, usage: Usage
    ) -> Reply[ReasoningStep]:
        """Step 1 keeps every match, later steps the best matches (the dialogue is not read)."""
        started = time.perf_counter()
        step = self._keep(twin, query, previous, best_only=previous.step >= 1)
        usage.add("refine", seconds=time.perf_counter() - started)
        return Reply(step)

    def single_shot(self, twin: DigitalTwin, query: str, dialogue: str, usage: Usage) -> Reply[ReasoningStep]:
        """The best matches in one step."""
        started = time.perf_counter()
        step = self._keep(twin, query, ReasoningStep(step=0, ids=twin.ids), best_only=True)
        usage.add("refine", seconds=time.perf_counter() - started)
        return Reply(step)

    def path(self, twin: DigitalTwin, query: str, dialogue: str, usage: Usage) -> Reply[list[ReasoningStep]]:
        """The refinement rules run to convergence, as one answer."""
        started = time.perf_counter()
        steps = [ReasoningStep(step=0, ids=twin.ids)]
        while steps[-1].ids and len(steps) <= self.max_steps:
            step = self._keep(twin, query, steps[-1], best_only=len(steps) > 1)
            steps.append(step)
            if set(step.ids) == set(steps[-2].ids):
                break
        usage.add("refine", seconds=time.perf_counter() - started)
        return Reply(steps[1:])

"""The embedded no-network reasoner: a LangChain chat model that matches words, not an LLM.

:class:`OfflineLLM` lets every node of the graph run with no key and no network. It reads the
same prompts a hosted LLM gets and answers in the same JSON, but it decides by keyword overlap
between the query and each object's semantic text. Its answers say so. Real use wants a real
LLM (``models.llm``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

NAME = "offline:lexical"

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


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 1}


def _tag(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>\s*(.*?)\s*</{name}>", text, flags=re.S)
    return match.group(1) if match else None


def _granularity(query: str) -> dict[str, str]:
    words = set(re.findall(r"[a-z]+", query.lower()))
    if words & _PART_WORDS:
        hit = sorted(words & _PART_WORDS)[0]
        return {"granularity": "part", "reason": f"offline keyword rule: '{hit}' names a part"}
    if words & _GROUP_WORDS:
        hit = sorted(words & _GROUP_WORDS)[0]
        return {"granularity": "group", "reason": f"offline keyword rule: '{hit}' suggests several objects"}
    return {"granularity": "object", "reason": "offline keyword rule: no part or group words"}


def _scores(query: str, twin: dict[str, dict[str, str]]) -> dict[int, tuple[int, list[str]]]:
    wanted = _terms(query)
    out = {}
    for key, entry in twin.items():
        hits = sorted(wanted & _terms(entry.get("semantic", "")))
        out[int(key)] = (len(hits), hits)
    return out


def _refine(query: str, twin: dict[str, dict[str, str]], single_shot: bool) -> dict[str, Any]:
    scores = _scores(query, twin)
    best = max((s for s, _ in scores.values()), default=0)
    if best == 0:
        keep: list[int] = []
    elif single_shot or any("reasoning" in e for e in twin.values()):
        keep = [i for i, (s, _) in scores.items() if s == best]  # later steps keep the best matches
    else:
        keep = [i for i, (s, _) in scores.items() if s > 0]  # step 1 keeps every match
    if single_shot:
        return {"ids": keep, "reason": f"{NAME}: keyword overlap with the query (best {best})"}
    objects = [
        {
            "id": i,
            "semantic": twin[str(i)].get("semantic", ""),
            "reasoning": f"{NAME}: shares {', '.join(scores[i][1])} with the query "
            f"({scores[i][0]} of the best {best})",
        }
        for i in keep
    ]
    return {"objects": objects}


class OfflineLLM(BaseChatModel):
    """Keyword-matching stand-in for an LLM, reached through the chat-model interface.

    It answers the granularity prompt (keyword rules), the refinement prompt (keeps objects whose
    semantic shares words with the query, then only the best matches) and the single-shot prompt.
    """

    @property
    def _llm_type(self) -> str:
        return NAME

    def _answer(self, text: str) -> dict[str, Any]:
        query = _tag(text, "query") or ""
        twin_text = _tag(text, "digital_twin")
        if twin_text is None:
            return _granularity(query)
        try:
            twin = json.loads(twin_text)
        except json.JSONDecodeError:
            twin = {}
        single = '"ids"' in (_tag(text, "answer_format") or "")
        return _refine(query, twin, single_shot=single)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "\n".join(m.text for m in messages if m.type in ("human", "system"))
        content = json.dumps(self._answer(text), ensure_ascii=False)
        message = AIMessage(
            content=content,
            usage_metadata={
                "input_tokens": len(text) // 4,
                "output_tokens": len(content) // 4,
                "total_tokens": (len(text) + len(content)) // 4,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

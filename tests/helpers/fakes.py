"""Scripted chat models and a static proposer for graph tests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from dtwin_agent.perception.base import Proposal


class ScriptedChatModel(BaseChatModel):
    """Answers with ``respond(messages)`` (a string, or an exception to raise) and records every call."""

    respond: Callable[[list[BaseMessage]], Any]
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.calls.append(list(messages))
        answer = self.respond(list(messages))
        if isinstance(answer, BaseException):
            raise answer
        msg = AIMessage(
            content=answer, usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


class StatusError(Exception):
    """A provider error carrying an HTTP status, as the providers' SDK exceptions do."""

    def __init__(self, status_code: int, message: str = "error") -> None:
        super().__init__(message)
        self.status_code = status_code


def human_text(messages: list[BaseMessage]) -> str:
    return "\n".join(m.text for m in messages if m.type == "human")


def twin_of(messages: list[BaseMessage]) -> dict[str, Any]:
    """JSON(D) as the reasoner's prompt shows it (the whole twin, the cached prefix)."""
    match = re.search(r"<digital_twin[^>]*>(.*?)</digital_twin>", human_text(messages), re.S)
    return json.loads(match.group(1))


def in_question(messages: list[BaseMessage]) -> dict[str, Any] | None:
    """JSON(D^(j-1)) of a refinement step j >= 2 (the objects still in question), else None."""
    match = re.search(r"<still_in_question>(.*?)</still_in_question>", human_text(messages), re.S)
    return json.loads(match.group(1)) if match else None


def region_ids(messages: list[BaseMessage]) -> list[int]:
    head = human_text(messages).split("Label these regions:")[1].split(".")[0]
    return [int(x) for x in re.findall(r"#(\d+)", head)]


class StaticProposer:
    """Returns fixed masks (scaled to the image it is given) and counts its calls."""

    name = "static"

    def __init__(self, masks: list[np.ndarray]):
        self.masks = masks
        self.calls = 0
        self.granularities: list[str] = []

    def propose(self, image: np.ndarray, granularity: str) -> list[Proposal]:
        from dtwin_agent.masks import resize_mask

        self.calls += 1
        self.granularities.append(granularity)
        shape = image.shape[:2]
        return [Proposal(mask=resize_mask(m, shape), predicted_iou=0.95, stability=0.97) for m in self.masks]


def three_box_scene(size: int = 96) -> tuple[np.ndarray, list[np.ndarray]]:
    """A grey image with a red box (left), a green box (right) and a blue box (bottom)."""
    img = np.full((size, size, 3), 200, np.uint8)
    boxes = [
        ((5, 5), (40, 40), (220, 30, 30)),
        ((55, 5), (90, 40), (30, 160, 40)),
        ((20, 55), (75, 90), (30, 60, 210)),
    ]
    masks = []
    for (x0, y0), (x1, y1), col in boxes:
        img[y0:y1, x0:x1] = col
        m = np.zeros((size, size), bool)
        m[y0:y1, x0:x1] = True
        masks.append(m)
    return img, masks

"""Counted proof of the twin cache: query 2 on the same image makes no proposal and no labelling call."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.scenes import ColourProposer, write_scene
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from dtwin_agent.api import segment
from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.offline import labeller


@pytest.fixture
def label_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the offline labeller (one per mask labelled)."""
    calls: list[int] = []
    real = labeller.describe

    def counting(rgb: np.ndarray, mask: np.ndarray, *args: object, **kwargs: object) -> str:
        calls.append(int(mask.sum()))
        return real(rgb, mask, *args, **kwargs)

    monkeypatch.setattr(labeller, "describe", counting)
    return calls


class CountingVLM(BaseChatModel):
    """A scripted VLM: answers the granularity and labelling prompts, counting each kind (in ``CALLS``)."""

    labels: dict[int, str] = {1: "red apple", 2: "blue cup", 3: "green leaf"}

    @property
    def _llm_type(self) -> str:
        return "counting-vlm"

    def _generate(
        self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        text = "\n".join(m.text for m in messages)
        ids = [int(i) for i in re.findall(r"Region #(\d+): crop", text)]
        if ids:
            CALLS.append("label")
            answer = {"objects": [{"id": i, "observation": "flat", "semantic": self.labels[i]} for i in ids]}
        else:
            CALLS.append("granularity")
            answer = {"granularity": "object", "reason": "one thing is asked for"}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=json.dumps(answer)))])


CALLS: list[str] = []


def settings(tmp_path: Path, **extra: object) -> Settings:
    return resolve_settings(
        overrides={
            "perception.max_image_side": 128,
            "perception.granularity": "auto",  # the VLM's choice is one of the calls counted
            "cache.dir": str(tmp_path / "cache"),
            **extra,
        }
    )


def refine_calls(result: object) -> int:
    return result.usage.get("stages", {}).get("refine", {}).get("calls", 0)


def test_second_query_makes_no_proposal_and_no_labelling_call(tmp_path: Path, label_calls: list[int]) -> None:
    image = write_scene(tmp_path / "scene.png")
    proposer = ColourProposer()
    config = settings(tmp_path)

    first = segment(image, "the red shape", settings=config, proposer=proposer)
    assert (len(proposer.calls), len(label_calls)) == (1, 3)
    assert "cache" not in first.components

    second = segment(image, "the blue shape", settings=config, proposer=proposer)
    assert (len(proposer.calls), len(label_calls)) == (1, 3)  # 0 proposal and 0 labelling calls
    assert second.components["cache"] == "twin reused from the cache"
    assert refine_calls(second) >= 1  # the reasoning ran
    assert second.twin.model_dump() == first.twin.model_dump()
    assert second.ids != first.ids and second.mask[60, 100] and not second.mask[60, 20]


def test_counting_fake_vlm_second_query_makes_no_labelling_call(tmp_path: Path) -> None:
    image = write_scene(tmp_path / "scene.png")
    proposer = ColourProposer()
    config = settings(tmp_path, **{"models.vlm": CountingVLM()})
    CALLS.clear()
    first = segment(image, "the red apple", settings=config, proposer=proposer)
    assert (len(proposer.calls), CALLS.count("granularity"), CALLS.count("label")) == (1, 1, 3)
    assert "semantics" in first.usage["stages"]
    CALLS.clear()
    second = segment(image, "the blue cup", settings=config, proposer=proposer)
    assert (len(proposer.calls), CALLS.count("granularity"), CALLS.count("label")) == (1, 1, 0)
    assert "semantics" not in second.usage["stages"] and refine_calls(second) >= 1
    assert [second.twin.get(i).semantic for i in second.ids] == ["blue cup"]
    assert [first.twin.get(i).semantic for i in first.ids] == ["red apple"]


def test_other_granularity_builds_another_twin(tmp_path: Path, label_calls: list[int]) -> None:
    image = write_scene(tmp_path / "scene.png")
    proposer = ColourProposer()
    segment(
        image,
        "the red shape",
        settings=settings(tmp_path, **{"perception.granularity": "object"}),
        proposer=proposer,
    )
    segment(
        image,
        "the red shape",
        settings=settings(tmp_path, **{"perception.granularity": "part"}),
        proposer=proposer,
    )
    assert proposer.calls == ["object", "part"]
    segment(
        image,
        "the green shape",
        settings=settings(tmp_path, **{"perception.granularity": "part"}),
        proposer=proposer,
    )
    assert proposer.calls == ["object", "part"]


def test_other_perception_settings_miss_the_cache(tmp_path: Path, label_calls: list[int]) -> None:
    image = write_scene(tmp_path / "scene.png")
    proposer = ColourProposer()
    segment(image, "the red shape", settings=settings(tmp_path), proposer=proposer)
    segment(
        image,
        "the red shape",
        settings=settings(tmp_path, **{"perception.min_area_pct": 0.5}),
        proposer=proposer,
    )
    assert len(proposer.calls) == 2


@pytest.mark.parametrize(
    ("name", "sql"),
    [
        ("corrupt_json", "UPDATE entries SET value = '{\"image\": ' WHERE namespace = 'twin'"),
        ("invalid_twin", "UPDATE entries SET value = '{\"objects\": 3}' WHERE namespace = 'twin'"),
        ("old_version", "UPDATE entries SET version = 0 WHERE namespace = 'twin'"),
    ],
)
def test_bad_cached_twin_is_rebuilt(name: str, sql: str, tmp_path: Path, label_calls: list[int]) -> None:
    image = write_scene(tmp_path / "scene.png")
    proposer = ColourProposer()
    config = settings(tmp_path)
    first = segment(image, "the red shape", settings=config, proposer=proposer)
    with sqlite3.connect(tmp_path / "cache" / "cache.sqlite") as conn:
        assert conn.execute(sql).rowcount == 1
    second = segment(image, "the red shape", settings=config, proposer=proposer)
    assert len(proposer.calls) == 2 and len(label_calls) == 6  # rebuilt, never trusted
    assert second.ids == first.ids
    third = segment(image, "the red shape", settings=config, proposer=proposer)
    assert len(proposer.calls) == 2 and third.components["cache"] == "twin reused from the cache"


def test_cache_disabled_always_rebuilds(tmp_path: Path, label_calls: list[int]) -> None:
    image = write_scene(tmp_path / "scene.png")
    proposer = ColourProposer()
    config = settings(tmp_path, **{"cache.enabled": False})
    segment(image, "the red shape", settings=config, proposer=proposer)
    segment(image, "the blue shape", settings=config, proposer=proposer)
    assert len(proposer.calls) == 2 and len(label_calls) == 6


@pytest.mark.integration
def test_wall_time_query_1_vs_2_offline_profile(tmp_path: Path, shared_image, label_calls: list[int]) -> None:
    """The offline profile on a photo: the second query skips proposal and labelling (times printed)."""
    photo = shared_image("groceries.jpg")
    config = resolve_settings(
        overrides={
            "cache.dir": str(tmp_path / "cache"),
            "perception.proposer": "offline",
            "perception.max_image_side": 512,
        }
    )
    start = time.perf_counter()
    first = segment(photo, "the orange fruit", settings=config)
    t1 = time.perf_counter() - start
    labels_after_first = len(label_calls)
    start = time.perf_counter()
    second = segment(photo, "something green", settings=config)
    t2 = time.perf_counter() - start
    print(
        f"\noffline profile, {photo.name}: {len(first.twin.objects)} objects; "
        f"query 1 {t1:.2f} s ({labels_after_first} labelling calls), "
        f"query 2 {t2:.2f} s ({len(label_calls) - labels_after_first} labelling calls)"
    )
    assert len(label_calls) == labels_after_first
    assert second.components.get("cache") == "twin reused from the cache"


@pytest.mark.parametrize(("device", "resolved"), [("cpu", "objects"), ("cuda", "grid"), ("cuda:1", "grid")])
def test_the_key_says_which_prompts_auto_resolves_to(device: str, resolved: str) -> None:
    """A CPU twin (object-aware prompts) is never reused as a CUDA twin (the grid), nor back."""
    from dtwin_agent.graph.nodes.twin_cache import twin_cache_key

    state = {"image_sha256": "0" * 64, "granularity": "hierarchy"}

    def key(**perception: object) -> str:
        return twin_cache_key(
            state, Settings.model_validate({"perception": {"proposer": "sam", **perception}})
        )

    assert key(device=device) == key(device=device, prompts=resolved)
    assert key(device="cpu") != key(device="cuda")
    # sam_only is segment-anything's own output: its grid on every device
    assert key(device="cpu", policy="sam_only") == key(device="cpu", policy="sam_only", prompts="grid")

"""The local LLM server's lifecycle without llama.cpp: threads, slot files, released before SAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dtwin_agent.errors import ProviderError
from dtwin_agent.offline import local_llm


class FakeServer:
    """Stands in for a running :class:`~dtwin_agent.offline.local_llm.LocalServer`."""

    def __init__(self, slot_dir: Path | None, model: str = "tiny.gguf"):
        self.slot_dir = slot_dir
        self.model_path = Path(model)
        self.base_url = "http://127.0.0.1:9"
        self.openai_base_url = self.base_url + "/v1"
        self.actions: list[tuple[str, str]] = []
        self.stopped = False

    def alive(self) -> bool:
        return not self.stopped

    def stop(self) -> None:
        self.stopped = True

    def slot_action(self, action: str, filename: str) -> dict[str, Any]:
        self.actions.append((action, filename))
        if action == "save":
            (self.slot_dir / filename).write_bytes(b"kv")
        return {}


@pytest.mark.parametrize(("threads", "gen"), [(1, 1), (2, 1), (4, 2), (8, 4)])
def test_generation_uses_half_the_prompt_threads(monkeypatch, threads: int, gen: int) -> None:
    monkeypatch.delenv("DTWIN_LLM_THREADS", raising=False)
    assert local_llm.generation_threads(threads) == gen
    monkeypatch.setenv("DTWIN_LLM_THREADS", "3")
    assert local_llm.generation_threads(threads) == 3 and local_llm.default_threads() == 3


def test_a_prefix_read_once_is_saved_once_and_restored_by_the_next_process(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(local_llm, "_RESTORED", {})
    monkeypatch.setattr(local_llm, "_SAVED", {})
    first = FakeServer(tmp_path)
    slots = local_llm.SlotFiles(first)
    prefix = "system\n<digital_twin>{...}</digital_twin>"
    assert slots.before(prefix) is False  # nothing saved yet: the prompt is read
    slots.after(prefix)
    slots.after(prefix)  # step 2 of the same run: saved already
    name = slots.name(prefix)
    assert first.actions == [("save", name)] and (tmp_path / name).is_file()
    second = FakeServer(tmp_path)  # the next process: a new server
    again = local_llm.SlotFiles(second)
    assert again.before(prefix) is True and again.before(prefix) is False  # restored once
    assert second.actions == [("restore", name)]
    assert again.name("another twin") != name


def test_slot_files_keep_the_most_recent_and_drop_a_bad_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(local_llm, "_RESTORED", {})
    monkeypatch.setattr(local_llm, "_SAVED", {})
    server = FakeServer(tmp_path)
    slots = local_llm.SlotFiles(server, keep=2)
    for k in range(4):
        slots.after(f"prefix {k}")
    assert len(list(tmp_path.glob("prefix-*.bin"))) == 2

    def refuse(action: str, filename: str) -> dict[str, Any]:
        raise ProviderError("slot restore failed")

    other = FakeServer(tmp_path)
    other.slot_action = refuse  # type: ignore[method-assign]
    kept = sorted(tmp_path.glob("prefix-*.bin"))[0]
    prefix = next(f"prefix {k}" for k in range(4) if slots.name(f"prefix {k}") == kept.name)
    assert local_llm.SlotFiles(other).before(prefix) is False and not kept.exists()


def test_release_all_stops_every_server_and_server_for_finds_by_url(monkeypatch) -> None:
    a, b = FakeServer(None), FakeServer(None)
    monkeypatch.setattr(local_llm, "_SERVERS", {("a", 1, 1): a, ("b", 1, 1): b})
    assert local_llm.server_for("http://127.0.0.1:9/v1") is a
    assert local_llm.release_all() == 2 and a.stopped and b.stopped
    assert local_llm.server_for("http://127.0.0.1:9/v1") is None


def test_proposal_with_sam_releases_the_local_llm_first(monkeypatch) -> None:
    """Issue 12: SAM and the local LLM are never resident together (the LLM restarts for refine)."""
    import numpy as np

    from dtwin_agent.config import Settings
    from dtwin_agent.graph.nodes import propose

    calls: list[str] = []
    monkeypatch.setattr(local_llm, "release_all", lambda: calls.append("release") or 0)

    class Proposer:
        name = "sam-test"

        def propose(self, image: np.ndarray, granularity: str) -> list:
            calls.append("propose")
            return []

    def run(proposer_name: str) -> None:
        calls.clear()
        monkeypatch.setattr(propose, "resolve_proposer_name", lambda settings: proposer_name)
        monkeypatch.setattr(propose, "get_proposer", lambda settings: Proposer())
        monkeypatch.setattr(propose, "image_of", lambda state: _Image())
        runtime = type("R", (), {"context": type("C", (), {"settings": Settings(), "proposer": None})()})()
        monkeypatch.setattr(propose, "context_of", lambda rt: rt.context)
        propose.propose_masks({}, runtime)

    class _Image:
        rgb = np.zeros((8, 8, 3), np.uint8)
        height = width = 8

    run("sam")
    assert calls == ["release", "propose"]
    run("offline")
    assert calls == ["propose"]  # a light proposer: the server stays warm

"""Races on one chat session: many threads calling the tool, two ``dtwin chat`` processes.

Every turn must be saved, numbered once, and its files must match its record. Each race runs
``DTWIN_RACE_REPEATS`` times (default 1; the verification runs it 20 times or more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.scenes import ColourProposer, scene_settings, write_scene
from PIL import Image

from dtwin_agent import masks as mask_ops
from dtwin_agent.config import Settings
from dtwin_agent.integrations.chat import ChatSession
from dtwin_agent.integrations.session_store import turn_dir
from dtwin_agent.integrations.tool import DTwinSegmentTool
from dtwin_agent.twin import RLE

REPEATS = range(int(os.environ.get("DTWIN_RACE_REPEATS", "1")))
COLOURS = ("red", "green", "blue")


def check_turns(config: Settings, session_id: str, image: Path, expected: int) -> list[dict[str, Any]]:
    """The session's turns are 1..expected, each folder's files matching its record."""
    with ChatSession(image, session_id=session_id, settings=config) as chat:
        turns = chat.turns
        assert not chat.interrupted
    assert [t["turn"] for t in turns] == list(range(1, expected + 1))
    for turn in turns:
        folder = turn_dir(config, session_id, turn["turn"])
        assert {Path(p).parent for p in turn["files"].values()} == {folder}
        written = json.loads((folder / "result.json").read_text())
        assert written["ids"] == turn["ids"] and written["steps"] == turn["steps"], turn["turn"]
        mask = np.array(Image.open(folder / "mask.png")) > 0
        assert np.array_equal(mask, mask_ops.decode(RLE.model_validate(turn["mask"]))), turn["turn"]
        colour = turn["query"].split()[1]
        assert colour in turn["answer"], (turn["query"], turn["answer"])  # the answer is about its query
    return turns


@pytest.mark.slow
@pytest.mark.parametrize("repeat", REPEATS)
def test_many_threads_calling_the_tool_on_one_session(tmp_path: Path, repeat: int) -> None:
    root = tmp_path / "images"
    root.mkdir()
    scene = write_scene(root / "scene.png")
    config = scene_settings(tmp_path / "cache")
    tool = DTwinSegmentTool(settings=config, allowed_roots=[root], proposer=ColourProposer())
    queries = [f"the {COLOURS[i % 3]} shape, call {i}" for i in range(8)]
    replies: dict[str, Any] = {}
    barrier = threading.Barrier(len(queries))

    def call(query: str) -> None:
        barrier.wait(30)
        replies[query] = tool.invoke(
            {
                "type": "tool_call",
                "id": query,
                "name": tool.name,
                "args": {"image_path": "scene.png", "query": query, "session_id": "race"},
            }
        )

    threads = [threading.Thread(target=call, args=(q,)) for q in queries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert all(r.status == "success" for r in replies.values()), [r.content for r in replies.values()]
    told = sorted(r.artifact["turn"] for r in replies.values())
    assert told == list(range(1, len(queries) + 1))  # every caller told a different turn
    turns = check_turns(config, "race", scene, len(queries))
    by_turn = {t["turn"]: t for t in turns}
    for query, reply in replies.items():
        record = by_turn[reply.artifact["turn"]]
        assert record["query"] == query and record["ids"] == reply.artifact["ids"]
        assert reply.artifact["files"] == record["files"]


CHAT = [sys.executable, "-c", "from dtwin_agent.cli import app; app()", "chat"]


@pytest.mark.slow
@pytest.mark.parametrize("repeat", REPEATS)
def test_two_chat_processes_on_one_session(tmp_path: Path, repeat: int) -> None:
    scene = write_scene(tmp_path / "scene.png")
    env = {
        **os.environ,
        "DTWIN_CACHE_DIR": str(tmp_path / "cache"),
        "DTWIN_PERCEPTION__MAX_IMAGE_SIDE": "128",
        "DTWIN_PERCEPTION__PROPOSER": "offline",
        "DTWIN_PERCEPTION__GRANULARITY": "object",
        "DTWIN_LLM": "offline:lexical",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[3]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    requests = {
        "a": [f"the red shape, request a{i}" for i in range(4)],
        "b": [f"the blue shape, request b{i}" for i in range(4)],
    }
    procs = {
        name: subprocess.Popen(
            [*CHAT, str(scene), "--session", "shared"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in requests
    }
    outputs = {}
    for name, proc in procs.items():
        proc.stdin.write("".join(f"{q}\n" for q in requests[name]))
        proc.stdin.close()
    for name, proc in procs.items():
        outputs[name] = (proc.stdout.read(), proc.stderr.read())
        assert proc.wait(300) == 0, outputs[name]
    config = scene_settings(tmp_path / "cache")
    turns = check_turns(config, "shared", scene, 8)
    by_mask = {t["files"]["mask"]: t for t in turns}
    for name, (stdout, _) in outputs.items():
        shown = [line.split("mask: ")[1].split()[0] for line in stdout.splitlines() if "mask: " in line]
        answers = [line for line in stdout.splitlines() if line.startswith("dtwin> ")]
        assert len(shown) == len(answers) == 4, stdout
        assert sorted(by_mask[path]["query"] for path in shown) == sorted(requests[name])

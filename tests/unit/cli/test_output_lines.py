"""What a person reads: the last lines say what was chosen and why; logs never cut a path in two."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dtwin_agent.cli import app

runner = CliRunner()


@pytest.fixture
def deep(tmp_path):
    """A folder whose path is far longer than 80 columns, holding a small scene."""
    folder = tmp_path / ("a-rather-long-folder-name-" * 4) / ("and-another-one-" * 3)
    folder.mkdir(parents=True)
    img = np.full((96, 128, 3), 230, np.uint8)
    img[10:50, 10:60] = (220, 30, 30)
    img[55:90, 70:120] = (30, 60, 210)
    Image.fromarray(img).save(folder / "scene.png")
    return folder


def test_segment_ends_with_what_and_why_and_keeps_paths_whole(deep, monkeypatch):
    monkeypatch.setenv("DTWIN_LLM", "offline:lexical")
    out = deep / "out"
    result = runner.invoke(app, ["segment", str(deep / "scene.png"), "the red region", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"mask: {out / 'mask.png'}" in lines  # one line, whole, at 80 columns
    assert lines[-2].startswith("chose #") and "red" in lines[-2]
    assert lines[-1].startswith("why: ") and len(lines[-1]) <= 80
    assert "segment: started" in result.stderr or "propose_masks: done" in result.stderr  # progress lines


def test_chat_resume_hint_keeps_the_path_whole(deep, monkeypatch, tmp_path):
    monkeypatch.setenv("DTWIN_PERCEPTION__PROPOSER", "offline")
    monkeypatch.setenv("DTWIN_LLM", "offline:lexical")
    image = deep / "scene.png"
    result = runner.invoke(app, ["chat", str(image), "--session", "hint"], input="the red region\n/quit\n")
    assert result.exit_code == 0, result.output
    assert f"resume with: dtwin chat {image} --session hint" in result.stderr
    said = result.stdout.splitlines()
    turn = said.index("you> the red region")
    assert said[turn + 2].startswith("dtwin> chose #")  # the turn's last lines: what was chosen and why
    assert "propose_masks: done" in result.stderr  # the turn's progress, as plain lines

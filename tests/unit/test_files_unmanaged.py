"""Files nobody manages: in-memory images leave nothing behind, outputs get the umask's mode."""

from __future__ import annotations

import json
import os
import stat
import tempfile

import pytest
from helpers.fakes import StaticProposer, three_box_scene
from PIL import Image

from dtwin_agent.api import build_twin, segment
from dtwin_agent.config import resolve_settings
from dtwin_agent.integrations.chat import ChatSession
from dtwin_agent.outputs import files


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Python's temporary folder, made observable."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _settings(tmp_path, **extra):
    return resolve_settings(
        overrides={
            "cache.dir": str(tmp_path / "cache"),
            "models.vlm": "offline",
            "models.llm": "offline:lexical",
        }
        | extra
    )


@pytest.mark.parametrize("kind", ["array", "pil"])
@pytest.mark.parametrize("cache_enabled", [True, False], ids=["cache-on", "cache-off"])
def test_in_memory_images_leave_no_file_behind(tmp_path, private_tmp, kind, cache_enabled):
    img, masks = three_box_scene()
    image = img if kind == "array" else Image.fromarray(img)
    settings = _settings(tmp_path, **{"cache.enabled": cache_enabled})
    during = []

    def look(event):
        if event.stage == "load_image" and event.kind == "end":
            during.extend(private_tmp.rglob("*.png"))

    result = segment(
        image, "the red box", settings=settings, proposer=StaticProposer(masks), on_progress=look
    )
    build_twin(image, settings=settings, proposer=StaticProposer(masks))
    assert result.ids and len(during) == 1  # the run's own temporary PNG, while it runs
    assert list(private_tmp.iterdir()) == []  # ... removed when it ends
    cache_dir = tmp_path / "cache"
    leftovers = [p.relative_to(cache_dir) for p in cache_dir.rglob("*")] if cache_dir.exists() else []
    assert not [p for p in leftovers if p.suffix == ".png"], leftovers  # nothing under the cache folder


def test_a_chat_session_on_an_array_keeps_its_image_until_closed(tmp_path, private_tmp):
    img, masks = three_box_scene()
    with ChatSession(
        img, session_id="mem", settings=_settings(tmp_path), proposer=StaticProposer(masks)
    ) as chat:
        chat.ask("the red box")
        assert chat.show(1).is_file()  # the image is still readable between turns
        assert len(list(private_tmp.rglob("*.png"))) == 1
    assert list(private_tmp.iterdir()) == []
    assert not list((tmp_path / "cache").rglob("images"))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_output_files_get_the_umasks_mode(tmp_path, umask):
    img, masks = three_box_scene()
    result = segment(img, "the red box", settings=_settings(tmp_path), proposer=StaticProposer(masks))
    old = os.umask(umask)
    try:
        written = list(files.write_segment_outputs(tmp_path / "out", result, img).values())
        written.append(files.write_json(tmp_path / "one.json", {"a": 1}))
        written.append(files.write_text(tmp_path / "notes.md", "x"))
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))
    assert json.loads((tmp_path / "one.json").read_text()) == {"a": 1}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary left


def test_evaluation_summaries_and_segdt_records_use_the_same_writer(tmp_path):
    from dtwin_agent.evaluation import runner, shards
    from dtwin_agent.sft import records, train

    for module in (runner, shards, train):
        assert module.write_text is files.write_text
    old = os.umask(0o022)
    try:
        records.write_records(tmp_path / "r.jsonl", [])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.jsonl").stat().st_mode) == 0o644

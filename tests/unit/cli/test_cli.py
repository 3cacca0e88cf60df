"""The dtwin CLI: files written, exit codes, one-line errors, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dtwin_agent.cli import app
from dtwin_agent.outputs import files as outputs

runner = CliRunner()


@pytest.fixture
def scene(tmp_path):
    img = np.full((96, 128, 3), 230, np.uint8)
    img[10:50, 10:60] = (220, 30, 30)
    img[55:90, 70:120] = (30, 60, 210)
    path = tmp_path / "scene.png"
    Image.fromarray(img).save(path)
    return path


def test_twin_writes_json_and_overlay(scene, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["twin", str(scene), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "twin.json").read_text())
    assert data["image"]["width"] == 128 and len(data["objects"]) >= 3
    overlay = Image.open(out / "overlay.png")
    assert overlay.size == (128, 96) and overlay.mode == "RGB"


def test_segment_writes_mask_overlay_result(scene, tmp_path):
    out = tmp_path / "seg"
    result = runner.invoke(app, ["segment", str(scene), "the red region", "--out", str(out)])
    assert result.exit_code == 0, result.output
    mask = Image.open(out / "mask.png")
    assert mask.mode == "L" and mask.size == (128, 96)
    values = set(np.unique(np.asarray(mask)).tolist())
    assert values <= {0, 255} and 255 in values
    data = json.loads((out / "result.json").read_text())
    assert data["ids"] and data["steps"][0]["step"] == 0 and "refine" in data["usage"]["stages"]
    assert "offline" in data["components"]["reasoning"]
    assert np.asarray(mask)[20, 20] == 255  # inside the red box


@pytest.mark.parametrize(
    "args, needle",
    [
        (["segment", "missing.png", "q"], "image not found"),
        (["segment", "{scene}", "   "], "query is empty"),
        (["segment", "{scene}", "x" * 10_000], "max_query_chars"),
        (["twin", "{scene}", "--granularity", "pixel"], "perception.granularity"),
        (["segment", "{scene}", "q", "--config", "nope.toml"], "config file not found"),
        (["segment", "{text}", "q"], "not an image"),
    ],
    ids=["missing-image", "empty-query", "10k-query", "bad-setting", "missing-config", "non-image"],
)
def test_bad_input_exits_2_with_one_line(scene, tmp_path, args, needle):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    args = [a.format(scene=scene, text=text) for a in args]
    result = runner.invoke(app, args + ["--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_unexpected_error_exits_1(scene, tmp_path, monkeypatch):
    import dtwin_agent.api as api

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(api, "segment", boom)
    result = runner.invoke(app, ["segment", str(scene), "q", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "disk on fire" in result.stderr


def test_atomic_write_leaves_no_half_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    outputs.write_json(target, {"old": True})

    def fail(*a, **k):
        raise OSError("no space left")

    monkeypatch.setattr(outputs.os, "fsync", fail)
    with pytest.raises(OSError):
        outputs.write_json(target, {"new": True})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_cache_info_and_clear(scene, tmp_path):
    runner.invoke(app, ["twin", str(scene), "--out", str(tmp_path / "o")])
    info = runner.invoke(app, ["cache", "info"])
    assert info.exit_code == 0 and "twin: 1 entries" in info.output
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed" in cleared.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["segment"], "dtwin segment: Missing argument 'IMAGE'."),
        (["segment", "a.png"], "Missing argument 'QUERY'."),
        (["segment", "a.png", "q", "--nope"], "No such option: --nope"),
        (["segment", "a.png", "q", "--points-per-side", "abc"], "Invalid value for '--points-per-side'"),
        (["twin"], "dtwin twin: Missing argument 'IMAGE'."),
        (["chat"], "dtwin chat: Missing argument 'IMAGE'."),
        (["eval"], "dtwin eval: Missing option '--dataset'."),
        (["mcp", "--port", "99999"], "--port': Input should be less than or equal to 65535"),
        (["mcp", "--port", "0"], "--port': Input should be greater than or equal to 1"),
        (["models", "fetch", "--bogus"], "dtwin models fetch: No such option: --bogus"),
        (["cache", "nope"], "dtwin cache: No such command 'nope'."),
        (["twins", "build"], "dtwin twins build: Missing argument 'dataset'."),
        (["nosuch"], "dtwin: No such command 'nosuch'."),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, needle):
    result = runner.invoke(app, args, prog_name="dtwin")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert lines[0].endswith("--help')") and "╭" not in result.output and "Traceback" not in result.output


def test_help_still_works():
    result = runner.invoke(app, ["segment", "--help"], prog_name="dtwin")
    assert result.exit_code == 0 and "Usage: dtwin segment" in result.output
    bare = runner.invoke(app, [], prog_name="dtwin")
    assert "Usage: dtwin" in bare.output and bare.exit_code == 2


def test_a_damaged_cache_file_is_rebuilt_with_one_warning(scene, tmp_path, monkeypatch):
    import gc
    import os

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DTWIN_CACHE_DIR", str(cache_dir))
    assert runner.invoke(app, ["twin", str(scene), "--out", str(tmp_path / "o1")]).exit_code == 0
    db = cache_dir / "cache.sqlite"
    gc.collect()  # the first run's connection, closed: its WAL checkpoint must not rewrite the garbage
    for suffix in ("-wal", "-shm"):
        (cache_dir / f"cache.sqlite{suffix}").unlink(missing_ok=True)
    db.write_bytes(os.urandom(4096))
    result = runner.invoke(app, ["twin", str(scene), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: the twin cache")]
    assert len(warnings) == 1, result.stderr
    assert str(db) in warnings[0] and "cache.sqlite.corrupt" in warnings[0]
    info = runner.invoke(app, ["cache", "info"])
    assert info.exit_code == 0 and "twin: 1 entries" in info.output and "damaged copy" in info.output


def test_cache_clear_works_on_a_damaged_file(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    monkeypatch.setenv("DTWIN_CACHE_DIR", str(cache_dir))
    (cache_dir / "cache.sqlite").write_bytes(b"\x00garbage" * 512)
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 0 entries" in cleared.output
    assert sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith((".lock", "-wal", "-shm"))) == [
        "cache.sqlite"
    ]
    assert runner.invoke(app, ["cache", "clear"]).exit_code == 0


@pytest.fixture
def no_pipeline(monkeypatch):
    """Fails the test if the pipeline starts (output folders must be checked before any work)."""
    import dtwin_agent.api as api

    def started(*args, **kwargs):
        raise AssertionError("the pipeline ran before --out was checked")

    monkeypatch.setattr(api, "segment", started)
    monkeypatch.setattr(api, "build_twin", started)


@pytest.mark.parametrize(
    ("command", "target", "needle"),
    [
        ("segment", "{file}", "is a file, not a folder"),
        ("twin", "{file}", "is a file, not a folder"),
        ("segment", "{file}/sub", "cannot be created: {file} is a file"),
        ("segment", "/proc/dtwin-out-check", "cannot be created in /proc"),
        ("segment", "o\x00ut", "holds a NUL byte"),
        ("eval", "{file}", "is a file, not a folder"),
        ("twins", "{file}", "is a file, not a folder"),
        ("segment", "", "--out is empty: name an output folder"),
        ("twin", " ", "--out is empty: name an output folder"),
        ("eval", "", "--out is empty: name an output folder"),
        ("twins", "", "--out is empty: name an output folder"),
    ],
    ids=[
        "segment-file",
        "twin-file",
        "under-a-file",
        "proc",
        "nul",
        "eval-file",
        "twins-file",
        "segment-empty",
        "twin-empty",
        "eval-empty",
        "twins-empty",
    ],
)
def test_out_is_checked_before_any_work(scene, tmp_path, no_pipeline, command, target, needle):
    import sys

    if "/proc" in target and not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux's")
    existing = tmp_path / "existing_file"
    existing.write_text("keep me")
    out = target.format(file=existing)
    args = {
        "segment": ["segment", str(scene), "q", "--out", out],
        "twin": ["twin", str(scene), "--out", out],
        "eval": ["eval", "--dataset", "reasonseg", "--root", str(tmp_path), "--out", out],
        "twins": ["twins", "build", "reasonseg", "--root", str(tmp_path), "--out", out],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle.format(file=existing) in lines[0], lines
    assert existing.read_text() == "keep me"


def test_an_unwritable_out_folder_is_refused_before_any_work(scene, tmp_path, no_pipeline):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes anywhere (the /proc case covers this check as root)")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = runner.invoke(app, ["segment", str(scene), "q", "--out", str(locked)])
    assert result.exit_code == 2 and "is not writable" in result.stderr


def test_a_run_failing_while_writing_leaves_the_old_set_whole(scene, tmp_path, monkeypatch):
    out = tmp_path / "seg"
    assert runner.invoke(app, ["segment", str(scene), "the red region", "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = outputs._stage
    staged = []

    def full_disk(path, data):
        staged.append(path.name)
        if path.name == "overlay.png":
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(outputs, "_stage", full_disk)
    result = runner.invoke(app, ["segment", str(scene), "the blue region", "--out", str(out)])
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert staged == ["mask.png", "overlay.png"]  # the new mask was staged, then the overlay failed
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp file, no new mask


def test_a_failed_rename_never_leaves_a_new_mask_beside_an_old_result(tmp_path, monkeypatch):
    out = tmp_path / "set"
    outputs.write_file_set(
        out, {"mask.png": b"old mask", "overlay.png": b"old overlay", "result.json": b"old"}
    )
    real = outputs.os.replace

    def flaky(src, dst):
        if Path(dst).name == "overlay.png":
            raise OSError("device went away")
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", flaky)
    with pytest.raises(OSError):
        outputs.write_file_set(out, {"mask.png": b"new mask", "overlay.png": b"new", "result.json": b"new"})
    left = {p.name: p.read_bytes() for p in out.iterdir()}
    assert left == {"mask.png": b"new mask"}  # no old overlay/result beside it, no result.json, no temp


def test_a_second_run_replaces_the_whole_set(tmp_path):
    out = tmp_path / "set"
    outputs.write_file_set(out, {"a.png": b"1", "result.json": b"1"})
    paths = outputs.write_file_set(out, {"a.png": b"2", "result.json": b"2"})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"a.png": b"2", "result.json": b"2"}
    assert paths == {"a.png": out / "a.png", "result.json": out / "result.json"}

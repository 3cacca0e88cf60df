"""``dtwin ui``: options into one call of the page's serve(); bad input and a missing extra exit 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.scenes import write_scene
from typer.testing import CliRunner

from dtwin_agent.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _gradio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED"):  # the command sets them: restored after
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    pytest.importorskip("gradio", reason="the ui extra (gradio) is not installed")
    import dtwin_agent.integrations.ui.app as page_app

    calls: dict[str, Any] = {}

    def fake_serve(settings: Any, roots: Any, **kwargs: Any) -> None:
        calls.update(settings=settings, roots=roots, **kwargs)
        kwargs["on_ready"]("http://127.0.0.1:7861/")

    monkeypatch.setattr(page_app, "serve", fake_serve)
    return calls


def test_options_become_one_serve_call(served: dict[str, Any], tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "scene.png")
    result = runner.invoke(
        app, ["ui", str(scene), "--port", "7861", "--root", str(tmp_path), "--llm", "offline:lexical"]
    )
    assert result.exit_code == 0, result.output
    assert "dtwin ui: http://127.0.0.1:7861/" in result.stdout
    assert served["host"] == "127.0.0.1" and served["port"] == 7861 and served["image"] == scene
    assert served["roots"] == [tmp_path] and served["settings"].models.llm == "offline:lexical"
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert os.environ["GRADIO_TEMP_DIR"].startswith(served["settings"].cache.dir)


def test_defaults_and_a_warning_for_other_hosts(
    served: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert served["port"] is None and served["image"] is None and served["roots"] == []
    assert "warning: listening on 0.0.0.0" in result.stderr
    assert "warning: no --root (nor access.image_roots)" in result.stderr


def test_roots_default_to_the_access_setting(
    served: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DTWIN_ACCESS__IMAGE_ROOTS", str(tmp_path))
    result = runner.invoke(app, ["ui"])
    assert result.exit_code == 0, result.output
    assert served["roots"] == [tmp_path] and "warning" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--root", "/no/such/folder"],
            "error: allowed image folder /no/such/folder does not exist (--root / access.image_roots)",
        ),
        (["missing.png"], "error: image not found: missing.png"),
        (["--port", "0"], "error: dtwin ui: Invalid value for '--port'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["ui", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    result = runner.invoke(app, ["ui"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: dtwin ui needs the 'ui' extra (Gradio): pip install 'dtwin-agent[ui]'"
    )

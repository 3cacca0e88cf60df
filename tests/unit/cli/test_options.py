"""One shared set of pipeline options: every pipeline command has them, and they reach the settings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dtwin_agent.cli import app
from dtwin_agent.cli.options import PIPELINE_OPTIONS

runner = CliRunner()

EVAL = ["eval", "--dataset", "reasonseg", "--root", "{dir}"]
TWINS = ["twins", "build", "images", "--root", "{dir}", "--out", "{dir}/shards"]
COMMANDS = {
    "twin": ("dtwin_agent.api", "build_twin", ["twin", "{image}"]),
    "segment": ("dtwin_agent.api", "segment", ["segment", "{image}", "the red box"]),
    "chat": ("dtwin_agent.integrations.chat", "ChatSession", ["chat", "{image}"]),
    "mcp": ("dtwin_agent.integrations.mcp_server", "serve", ["mcp"]),
    "eval": ("dtwin_agent.evaluation.runner", "run_eval", EVAL),
    "twins build": ("dtwin_agent.evaluation.twins", "build_twins", TWINS),
}

FLAGS = [
    "--points-per-side", "8", "--prompts", "grid", "--device", "cpu", "--sam-checkpoint", "mobile_sam",
    "--sam-model-type", "vit_t", "--mode", "single_shot", "--base-url", "http://127.0.0.1:9/v1",
    "--llm", "openai:my-model", "--vlm", "offline", "--proposer", "offline", "--granularity", "part",
    "--strategy", "direct", "--max-steps", "2", "--vlm-base-url", "http://127.0.0.1:8/v1",
]  # fmt: skip


class Captured(Exception):
    pass


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_pipeline_command_lists_the_shared_options(command):
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in PIPELINE_OPTIONS:
        flag = "--" + option.name.replace("_", "-")
        assert f"  {flag} " in result.output, (command, flag)
    assert "<bool>" not in result.output  # no type noise on flags


@pytest.mark.parametrize("command", list(COMMANDS))
def test_shared_options_reach_the_settings(command, image, tmp_path, monkeypatch):
    import importlib

    module, name, args = COMMANDS[command]
    seen = {}

    def capture(*args, **kwargs):
        seen["settings"] = kwargs["settings"]
        raise Captured

    monkeypatch.setattr(importlib.import_module(module), name, capture)
    argv = [a.format(image=image, dir=tmp_path) for a in args]
    result = runner.invoke(app, [*argv, *FLAGS])
    assert result.exit_code == 1 and "Captured" in result.stderr, result.output
    settings = seen["settings"]
    assert settings.perception.points_per_side == 8 and settings.perception.device == "cpu"
    assert settings.perception.prompts == "grid"
    assert (
        settings.perception.sam_checkpoint == "mobile_sam" and settings.perception.sam_model_type == "vit_t"
    )
    assert settings.perception.proposer == "offline" and settings.perception.granularity == "part"
    assert settings.reasoning.mode == "single_shot" and settings.reasoning.max_refine_steps == 2
    assert (
        settings.models.llm == "openai:my-model" and settings.models.llm_base_url == "http://127.0.0.1:9/v1"
    )
    assert settings.models.vlm_base_url == "http://127.0.0.1:8/v1" and settings.semantics.strategy == "direct"


def test_bad_shared_option_value_is_one_line_exit_2(image):
    result = runner.invoke(app, ["chat", str(image), "--granularity", "pixel"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "perception.granularity" in lines[0]


def test_version_and_plain_help():
    from dtwin_agent import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"dtwin-agent {__version__}"
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert "--version" in top.output and "<bool>" not in top.output and "╭" not in top.output

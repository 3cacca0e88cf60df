from pathlib import Path

import pytest

from dtwin_agent.config import Settings, resolve_settings
from dtwin_agent.errors import ConfigError

TOML = """
[models]
llm = "openai:gpt-4o-mini"
vlm = "openai:gpt-4o"
[perception]
points_per_side = 16
[reasoning]
max_refine_steps = 3
"""


def test_defaults_are_the_papers():
    s = Settings()
    p = s.perception
    assert (p.points_per_side, p.pred_iou_thresh, p.stability_score_thresh, p.box_nms_thresh) == (
        32,
        0.88,
        0.95,
        0.7,
    )
    assert (p.part_iou_thresh, p.containment_thresh) == (0.85, 0.8)
    assert s.reasoning.max_refine_steps == 4 and s.semantics.strategy == "brainstorm"


def test_precedence_override_cli_env_file_default(tmp_path):
    cfg = tmp_path / "dtwin.toml"
    cfg.write_text(TOML)
    env = {"DTWIN_PERCEPTION__POINTS_PER_SIDE": "20", "DTWIN_LLM": "ollama:qwen2.5"}
    s = resolve_settings(config_file=cfg, environ={})
    assert (s.perception.points_per_side, s.models.llm) == (16, "openai:gpt-4o-mini")
    s = resolve_settings(config_file=cfg, environ=env)
    assert (s.perception.points_per_side, s.models.llm) == (20, "ollama:qwen2.5")
    s = resolve_settings(
        config_file=cfg, environ=env, cli={"perception.points_per_side": 24, "models.llm": None}
    )
    assert (s.perception.points_per_side, s.models.llm) == (24, "ollama:qwen2.5")
    s = resolve_settings(
        config_file=cfg,
        environ=env,
        cli={"perception.points_per_side": 24},
        overrides={"perception": {"points_per_side": 8}},
    )
    assert s.perception.points_per_side == 8
    assert s.reasoning.max_refine_steps == 3 and s.models.vlm == "openai:gpt-4o"


def test_dtwin_config_env_and_cwd_file(tmp_path, monkeypatch):
    cfg = tmp_path / "other.toml"
    cfg.write_text(TOML)
    assert resolve_settings(environ={"DTWIN_CONFIG": str(cfg)}).perception.points_per_side == 16
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dtwin.toml").write_text("[perception]\npoints_per_side = 12\n")
    assert resolve_settings(environ={}).perception.points_per_side == 12


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"environ": {"DTWIN_PERCEPTION__POINTS_PER_SIDE": "many"}},
            "perception.points_per_side.*environment",
        ),
        ({"overrides": {"perception.pred_iou_thresh": 2}}, "perception.pred_iou_thresh.*override"),
        ({"overrides": {"perception.no_such": 1}}, "perception.no_such"),
        ({"cli": {"reasoning.mode": "guess"}}, "reasoning.mode.*command line"),
    ],
    ids=["env-not-int", "override-range", "unknown-field", "cli-bad-literal"],
)
def test_bad_values_name_setting_and_origin(kwargs, match):
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError, match=match):
        resolve_settings(**kwargs)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[models\nllm=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_settings(config_file=bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        resolve_settings(config_file=tmp_path / "nope.toml", environ={})


def test_model_instance_accepted_in_code():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    fake = GenericFakeChatModel(messages=iter([]))
    s = Settings().merged({"models.llm": fake})
    assert s.models.llm is fake


def _readme_toml() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```toml\n") + len("```toml\n")
    return readme[start : readme.index("```", start)]


def test_readme_toml_says_the_defaults_except_the_models_and_sam():
    """README: "these are the defaults except the models and SAM" (timeouts, retries, stall, ...)."""
    import tomllib

    example = tomllib.loads(_readme_toml())
    defaults = Settings().model_dump()
    chosen = {("models", "vlm"), ("models", "llm"), ("perception", "proposer")}
    compared = 0
    for section, values in example.items():
        for key, value in values.items():
            if (section, key) in chosen or key.startswith("sam_"):
                continue
            assert defaults[section][key] == value, f"[{section}] {key}"
            compared += 1
    assert compared >= 20 and example["models"]["timeout_s"] == defaults["models"]["timeout_s"]


def test_readme_toml_example_loads(tmp_path):
    example = _readme_toml()
    cfg = tmp_path / "dtwin.toml"
    cfg.write_text(example)
    s = resolve_settings(config_file=cfg, environ={})
    assert s.models.llm != "offline" and s.perception.proposer == "sam"


@pytest.mark.parametrize("device", ["gpu", "cuda1", "cuda:x", ""])
def test_an_unknown_device_is_a_config_error_before_any_work(device):
    with pytest.raises(ConfigError, match="is not a device: auto | cpu | cuda | cuda:N"):
        resolve_settings(overrides={"perception.device": device}, environ={})
    for good in ("auto", "cpu", "cuda", "cuda:1"):
        assert resolve_settings(overrides={"perception.device": good}, environ={}).perception.device == good

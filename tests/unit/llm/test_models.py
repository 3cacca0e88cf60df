"""Model settings -> chat models: passthrough, offline, init_chat_model and its clear errors."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

from dtwin_agent.config import Settings
from dtwin_agent.errors import ConfigError
from dtwin_agent.llm.models import NO_KEY, chat_model, clear_model_cache, split_spec


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch):
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    clear_model_cache()
    yield
    clear_model_cache()


def settings(**models) -> Settings:
    return Settings(models=models)


def test_instance_is_returned_as_is():
    fake = GenericFakeChatModel(messages=iter([]))
    assert chat_model("llm", settings(llm=fake)) is fake
    assert chat_model("vlm", settings(vlm=fake)) is fake


@pytest.mark.parametrize("role", ["vlm", "llm"])
@pytest.mark.parametrize("spec", ["offline", "OFFLINE", "", "offline:lexical"])
def test_offline_without_the_local_llm_is_no_chat_model(role, spec):
    # the embedded offline components are a labeller and a keyword reasoner (tests/unit/reasoning)
    with pytest.raises(ConfigError, match=rf"models\.{role} = .* stands for .*not a chat model"):
        chat_model(role, settings(**{role: spec}))


@pytest.mark.parametrize(
    "spec",
    ["gpt-4o", "openai:", ":gpt-4o", "open ai:gpt-4o"],
    ids=["no_provider", "no_model", "empty_provider", "space_in_provider"],
)
def test_malformed_spec_is_a_config_error(spec):
    with pytest.raises(ConfigError, match=r"models\.llm .*provider:model"):
        chat_model("llm", settings(llm=spec))


def test_unknown_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown provider 'nosuch'"):
        chat_model("vlm", settings(vlm="nosuch:model"))


def test_non_string_spec_is_a_config_error():
    with pytest.raises(ConfigError, match="models.llm must be"):
        chat_model("llm", settings(llm=42))


def test_split_spec_keeps_colons_in_the_model_name():
    assert split_spec("Ollama:qwen2.5vl:7b") == ("ollama", "qwen2.5vl:7b")


def test_missing_integration_package_names_setting_and_package(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "langchain_anthropic", None)  # import fails as if not installed
    from langchain.chat_models import base

    cached = getattr(base, "_get_chat_model_creator", None)  # langchain caches the imported class
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()
    with pytest.raises(ConfigError) as info:
        chat_model("llm", settings(llm="anthropic:claude-sonnet-4-5"))
    message = str(info.value)
    assert "models.llm" in message and "pip install langchain-anthropic" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "package"),
    [
        ("google_genai:gemini-2.5-flash", "langchain-google-genai"),
        ("mistralai:mistral-large-latest", "langchain-mistralai"),
    ],
)
def test_uninstalled_providers_name_their_package(spec, package):
    if importlib.util.find_spec(package.replace("-", "_")) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(ConfigError, match=f"models.vlm .*pip install {package}"):
        chat_model("vlm", settings(vlm=spec))


def test_missing_openai_key_names_the_variable_and_the_setting():
    pytest.importorskip("langchain_openai")
    with pytest.raises(ConfigError) as info:
        chat_model("llm", settings(llm="openai:gpt-4o"))
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and "models.llm_api_key" in message
    assert "\n" not in message


def test_openai_compatible_server_with_base_url_and_key():
    langchain_openai = pytest.importorskip("langchain_openai")
    model = chat_model(
        "llm",
        Settings(
            models={
                "llm": "openai:qwen2.5-coder-1.5b",
                "llm_base_url": "http://127.0.0.1:8080/v1",
                "llm_api_key": "sk-local",
                "timeout_s": 30,
                "temperature": 0.2,
            }
        ),
    )
    assert isinstance(model, langchain_openai.ChatOpenAI)
    assert model.model_name == "qwen2.5-coder-1.5b"
    assert model.openai_api_base == "http://127.0.0.1:8080/v1"
    assert model.openai_api_key.get_secret_value() == "sk-local"
    assert model.max_retries == 0  # we retry ourselves
    assert model.request_timeout == 30
    assert model.temperature == 0.2


def test_base_url_without_any_key_gets_a_placeholder():
    pytest.importorskip("langchain_openai")
    model = chat_model("vlm", settings(vlm="openai:local", vlm_base_url="http://127.0.0.1:9/v1"))
    assert model.openai_api_key.get_secret_value() == NO_KEY


def test_environment_key_is_used(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("langchain_openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    model = chat_model("llm", settings(llm="openai:gpt-4o"))
    assert model.openai_api_key.get_secret_value() == "sk-env"


def test_models_are_cached_per_role_spec_url_and_key():
    pytest.importorskip("langchain_openai")
    base = {
        "llm": "openai:m",
        "vlm": "openai:m",
        "llm_base_url": "http://127.0.0.1:9/v1",
        "vlm_base_url": "http://127.0.0.1:9/v1",
        "llm_api_key": "a",
        "vlm_api_key": "a",
    }
    first = chat_model("llm", Settings(models=base))
    assert chat_model("llm", Settings(models=base)) is first
    assert chat_model("vlm", Settings(models=base)) is not first
    assert chat_model("llm", Settings(models={**base, "llm_api_key": "b"})) is not first
    assert chat_model("llm", Settings(models={**base, "llm_base_url": "http://127.0.0.1:10/v1"})) is not first

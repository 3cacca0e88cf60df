"""The whole graph on the real local models (issue: real local models). Skips when they are not fetched.

``dtwin models fetch --offline-profile`` fetches them; ``DTWIN_TEST_LLM`` picks another local GGUF
model (e.g. the 0.5B one for a faster smoke run).
"""

from __future__ import annotations

import importlib.util
import os
import re

import pytest
from helpers.scenes import write_scene

from dtwin_agent.api import segment
from dtwin_agent.config import resolve_settings
from dtwin_agent.offline.profile import LOCAL_LLM
from dtwin_agent.weights import store

pytestmark = pytest.mark.integration

MODELS_DIR = store.models_dir()  # the real store, read before the autouse fixture isolates the env
LLM = os.environ.get("DTWIN_TEST_LLM", LOCAL_LLM)


def need(*names: str) -> None:
    missing = [n for n in names if not store.is_fetched(store.MODELS[n], MODELS_DIR)]
    if missing:
        pytest.skip(f"not fetched: {', '.join(missing)} (dtwin models fetch {' '.join(missing)})")
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed (pip install 'dtwin-agent[local]')")


def test_whole_graph_runs_on_the_local_llm(tmp_path):
    need(LLM)
    image = write_scene(tmp_path / "scene.png")
    settings = resolve_settings(
        overrides={
            "models.models_dir": str(MODELS_DIR),
            "models.llm": f"local:{LLM}",
            "perception.proposer": "offline",
            "perception.max_image_side": 128,
            "perception.granularity": "auto",  # the local LLM's granularity choice is under test too
            "semantics.classifier": "none",
            "cache.dir": str(tmp_path / "cache"),
        }
    )
    result = segment(image, "the red rectangle on the left", settings=settings)
    stages = result.usage["stages"]
    assert stages["granularity"]["calls"] >= 1 and stages["refine"]["calls"] >= 1
    assert stages["refine"]["output_tokens"] > 0
    assert LLM in result.components["reasoning"] and LLM in result.components["granularity"]
    ids = [set(step.ids) for step in result.steps]
    assert all(b <= a for a, b in zip(ids, ids[1:], strict=False))  # D^(j) keeps a subset
    assert set(result.ids) <= set(result.twin.ids)
    assert result.stop_reason in {"converged", "empty", "max_steps"}


def test_offline_profile_on_a_photo_uses_every_local_model(tmp_path, shared_image):
    need("mobile_sam", "efficientnet_lite0", "imagenet1k_names", LLM)
    if importlib.util.find_spec("mobile_sam") is None:
        pytest.skip("mobile_sam is not installed (pip install 'dtwin-agent[local]')")
    settings = resolve_settings(
        overrides={
            "models.models_dir": str(MODELS_DIR),
            "models.llm": "offline" if LLM == LOCAL_LLM else f"local:{LLM}",
            "cache.dir": str(tmp_path / "cache"),
        }
    )
    result = segment(shared_image("dog.jpg"), "what the dog is waiting for", settings=settings)
    assert result.components["proposer"] == "sam (MobileSAM vit_t, object-aware prompts)"  # CPU default
    assert "ImageNet classifier" in result.components["semantics"]
    # S_i hold the classifier's labels with scores before the colour and shape words
    assert any(re.match(r"[^;]+ 0\.\d\d.*; ", o.semantic) for o in result.twin.objects)
    assert result.mask.shape == (534, 800)

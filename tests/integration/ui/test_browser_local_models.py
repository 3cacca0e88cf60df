"""``dtwin ui`` on the local models (MobileSAM, the ImageNet labeller, the local LLM) and a shared photo.

Skips when the models are not fetched (``dtwin models fetch --offline-profile``) or the photo is
absent. Minutes on a CPU: the twin (everything mode at 8 x 8 points, a label per mask) and each
answer of the 1.5B local LLM.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.browser import LOCAL_TIMEOUT_S, Server, clean_env, start_ui, stop_ui

from dtwin_agent.offline.profile import LOCAL_LLM
from dtwin_agent.weights import store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELS_DIR = store.models_dir()  # the real store, read before the autouse fixture isolates the env
PHOTOS = Path(__file__).resolve().parents[4] / "shared" / "images"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    missing = [n for n in ("mobile_sam", "efficientnet_lite0", "imagenet1k_names", LOCAL_LLM)
               if not store.is_fetched(store.MODELS[n], MODELS_DIR)]  # fmt: skip
    if missing:
        pytest.skip(f"not fetched: {', '.join(missing)} (dtwin models fetch --offline-profile)")
    for module in ("mobile_sam", "xllamacpp"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'dtwin-agent[local]')")
    if not (PHOTOS / "dog.jpg").is_file():
        pytest.skip(f"{PHOTOS / 'dog.jpg'} not present")
    env = clean_env(tmp_path, DTWIN_MODELS_DIR=str(MODELS_DIR))
    del env["DTWIN_LLM"]  # the offline profile's own local LLM
    running = start_ui(env, "--root", str(PHOTOS), "--prompts", "grid", "--points-per-side", "8")
    yield running
    stop_ui(running)
    assert "Traceback" not in running.log(), running.log()


def test_a_shared_photo_on_the_local_models(browser: object, server: Server, steps) -> None:
    wait_s = LOCAL_TIMEOUT_S
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    try:
        page.goto(server.url)
        page.wait_for_selector("#header")
        with steps.step(page, "pick a photo under the root"):
            page.fill("#pick input", "dog.jpg")
            page.keyboard.press("Enter")
            page.click("#pick-button")
            page.wait_for_function(
                "() => document.querySelector('#status').innerText.includes('the twin has')",
                timeout=wait_s * 1000,
            )
            components = page.inner_text("#components")
            assert "sam" in components and "ImageNet classifier" in components
        with steps.step(page, "ask the photo's question"):
            page.fill("#query textarea", "what the dog is waiting for")
            page.click("#ask-button")
            page.wait_for_function(
                "() => /turn 1 done|error:/.test(document.querySelector('#status').innerText)",
                timeout=wait_s * 1000,
            )
            status = page.inner_text("#status")
            assert status.startswith("turn 1 done"), status
            assert LOCAL_LLM in page.inner_text("#components")
            assert "refine" in page.inner_text("#usage")
            answer = page.inner_text("#answer")
            assert answer.startswith(("chose #", "nothing chosen:")), answer
            if answer.startswith("chose #"):
                assert page.locator("#answer-image img").count() == 1
    finally:
        context.close()

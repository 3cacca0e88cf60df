"""Fixtures of the browser tests of ``dtwin ui`` (helpers in tests/helpers/browser.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from helpers.browser import CHROMIUM, CHROMIUM_ARGS, FAILURES, STEP_TIMEOUT_S, Steps


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pytest.importorskip("gradio", reason="the ui extra (gradio) is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    with playwright_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def steps(request: pytest.FixtureRequest) -> Steps:
    if FAILURES.is_dir():
        shutil.rmtree(FAILURES / Steps(request.node.name).name, ignore_errors=True)
    return Steps(request.node.name)


@pytest.fixture
def wait_s() -> float:
    """How long one step may take (the keyword reasoner: seconds; a loaded shared machine: more)."""
    return STEP_TIMEOUT_S

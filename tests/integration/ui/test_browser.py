"""``dtwin ui`` in a real browser: upload, the numbered overlay, ask, answer, follow-up, undo, reload, reopen.

The offline profile on a small flat-colour fixture with the keyword reasoner
(``models.llm = "offline:lexical"``), so each test takes seconds; see conftest.py for the browser,
the server and the screenshots.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import Server, clean_env, start_ui, stop_ui
from helpers.scenes import write_scene
from PIL import Image

from dtwin_agent.config import resolve_settings
from dtwin_agent.integrations.chat import ChatSession, list_sessions

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    write_scene(folder / "scene.png")
    (folder / "not-an-image.png").write_bytes(b"this is text, not a PNG")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Iterator[Server]:
    """One server for the module's tests (each test has its own sessions)."""
    running = start_ui(clean_env(tmp_path_factory.mktemp("ui")), "--root", str(photos))
    yield running
    stop_ui(running)
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture
def page(browser: object, server: Server) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    opened.goto(server.url)
    opened.wait_for_selector("#header")
    yield opened
    context.close()


def text_of(page: object, selector: str) -> str:
    return page.inner_text(selector)


def wait_text(page: object, selector: str, text: str, timeout_s: float) -> None:
    """Wait until the element's visible text contains ``text``."""
    page.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel); return e && e.innerText.includes(text); }",
        arg=[selector, text],
        timeout=timeout_s * 1000,
    )


def ask(page: object, query: str, turn: int, timeout_s: float) -> None:
    page.fill("#query textarea", query)
    page.click("#ask-button")
    wait_text(page, "#status", f"turn {turn} done:", timeout_s)


def choose(page: object, elem_id: str, option: str) -> None:
    """Pick the option containing ``option`` from a Gradio dropdown."""
    page.click(f"#{elem_id} input")
    page.locator("ul[role=listbox] li", has_text=option).first.click()


def chat_session(server: Server, image: Path, session_id: str) -> ChatSession:
    """The same session the page sees, opened as ``dtwin chat`` opens it (same cache, same reasoner)."""
    settings = resolve_settings(overrides={"cache.dir": str(server.cache), "models.llm": "offline:lexical"})
    return ChatSession(image, session_id=session_id, settings=settings)


def test_upload_ask_followup_undo_reload_reopen(
    page: object, server: Server, photos: Path, steps, wait_s
) -> None:
    with steps.step(page, "empty page"):
        assert "no session" in text_of(page, "#header")
    with steps.step(page, "upload: the twin's objects numbered"):
        page.locator("#upload input[type=file]").set_input_files(str(photos / "scene.png"))
        wait_text(page, "#status", "objects", wait_s)
        assert "the twin has 4 objects" in text_of(page, "#status")
        assert page.locator("#objects-image img").count() == 1
        progress = page.input_value("#progress textarea")
        assert "propose_masks: done" in progress and "build_spatial: done" in progress
    session_id = re.search(r"session (\S+)", text_of(page, "#header")).group(1)
    (session,) = list_sessions(
        resolve_settings(overrides={"cache.dir": str(server.cache)}), session_id=session_id
    )
    stored = Path(session.image)
    assert stored.parent.parent == server.cache / "sessions" and stored.name == "upload-scene.png"
    with steps.step(page, "ask: answer overlay and chosen objects"):
        ask(page, "the red shape", 1, wait_s)
        assert page.locator("#answer-image img").count() == 1
        assert "red" in text_of(page, "#chosen") and "shares red" in text_of(page, "#chosen")
        assert "chose #2" in text_of(page, "#answer")
        assert "turn 1:" in text_of(page, "#chat")
        assert "refine" in text_of(page, "#usage") and "reasoning" in text_of(page, "#components")
    with steps.step(page, "follow-up reuses the twin"):
        ask(page, "now the blue one", 2, wait_s)
        progress = page.input_value("#progress textarea")
        assert "refine: done" in progress and "propose_masks" not in progress  # only reasoning ran
        assert "blue" in text_of(page, "#chosen") and "turn 2:" in text_of(page, "#chat")
    with steps.step(page, "empty answer says so"):
        ask(page, "the purple elephant", 3, wait_s)
        assert "nothing chosen" in text_of(page, "#answer")
    with steps.step(page, "undo"):
        page.click("#undo-button")
        wait_text(page, "#status", "undid turn 3", wait_s)
        assert "turn 3:" not in text_of(page, "#chat") and "turn 2:" in text_of(page, "#chat")
    with steps.step(page, "click an object"):
        box = page.locator("#objects-image img").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 24 / 128, box["y"] + box["height"] * 64 / 128)
        wait_text(page, "#object-info", "object #2", wait_s)
        info = text_of(page, "#object-info")
        assert "semantic: red" in info and "left of #" in info and "relations" in info
        assert page.locator("#object-image img").count() == 1
    with steps.step(page, "download the turn's mask and result"):
        with page.expect_download() as download:
            page.click("#download-mask")
        mask = np.array(Image.open(download.value.path()))
        assert mask.shape == (128, 128) and mask[60, 100] == 255 and mask[60, 20] == 0  # turn 2: blue
        with page.expect_download() as download:
            page.click("#download-result")
        result = json.loads(Path(download.value.path()).read_text())
        assert result["ids"] == [3] and result["usage"]["stages"]["refine"]["calls"] >= 1
    with steps.step(page, "reload: no session in the tab"):
        page.reload()
        page.wait_for_selector("#header")
        wait_text(page, "#header", "no session", wait_s)
    with steps.step(page, "reopen the session from the list"):
        choose(page, "sessions", session.session_id)
        page.click("#reopen")
        wait_text(page, "#status", "reopened session", wait_s)
        chat = text_of(page, "#chat")
        assert "turn 1:" in chat and "turn 2:" in chat and "turn 3:" not in chat
        assert page.locator("#objects-image img").count() == 1


def test_terminal_session_continues_on_the_page_and_back(
    page: object, server: Server, photos: Path, steps, wait_s
) -> None:
    with chat_session(server, photos / "scene.png", "from-terminal") as chat:
        chat.ask("the green shape")
    with steps.step(page, "reopen a terminal session"):
        page.click("#refresh")
        choose(page, "sessions", "from-terminal")
        page.click("#reopen")
        wait_text(page, "#status", "reopened session from-terminal (1 turn(s))", wait_s)
    with steps.step(page, "continue it on the page"):
        ask(page, "the red one", 2, wait_s)
        assert "turn 2:" in text_of(page, "#chat")
    with chat_session(server, photos / "scene.png", "from-terminal") as chat:
        assert [t["query"] for t in chat.turns] == ["the green shape", "the red one"]
        chat.ask("the blue one")
    with steps.step(page, "and back: the terminal's turn shows on the page"):
        page.click("#reopen")
        wait_text(page, "#chat", "turn 3:", wait_s)


def test_errors_are_one_line_on_the_page(page: object, server: Server, photos: Path, steps, wait_s) -> None:
    with steps.step(page, "ask before opening an image"):
        page.fill("#query textarea", "the red shape")
        page.click("#ask-button")
        wait_text(page, "#status", "error: open an image first", wait_s)
    with steps.step(page, "upload a file that is not an image"):
        page.locator("#upload input[type=file]").set_input_files(str(photos / "not-an-image.png"))
        wait_text(page, "#status", "not an image file", wait_s)
        assert text_of(page, "#status").startswith("error: ")
    with steps.step(page, "pick a file outside the allowed folders"):
        page.fill("#pick input", "/etc/hostname")
        page.keyboard.press("Enter")
        page.click("#pick-button")
        wait_text(page, "#status", "outside the allowed folders", wait_s)
    with steps.step(page, "pick through a relative path escaping the root"):
        page.fill("#pick input", "../../../../etc/hostname")
        page.keyboard.press("Enter")
        page.click("#pick-button")
        wait_text(page, "#status", "outside the allowed folders", wait_s)
    body = text_of(page, "body")
    assert "Traceback" not in body and 'File "' not in body
    assert not list((server.cache / "sessions").glob("*/upload-not*"))  # refused uploads are not kept


def test_two_tabs_on_one_session_take_turns(
    browser: object, server: Server, photos: Path, steps, wait_s
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    first, second = context.new_page(), context.new_page()
    try:
        with chat_session(server, photos / "scene.png", "shared") as chat:
            chat.prepare()
        for tab in (first, second):
            tab.goto(server.url)
            tab.wait_for_selector("#header")
            choose(tab, "sessions", "shared")
            tab.click("#reopen")
            wait_text(tab, "#status", "reopened session shared", wait_s)
        with steps.step(first, "both tabs ask at once"):
            first.fill("#query textarea", "the red shape")
            second.fill("#query textarea", "the blue shape")
            first.click("#ask-button")
            second.click("#ask-button")
            wait_text(first, "#status", " done:", wait_s)
            wait_text(second, "#status", " done:", wait_s)
        with chat_session(server, photos / "scene.png", "shared") as chat:
            turns = chat.turns
        assert [t["turn"] for t in turns] == [1, 2]
        assert sorted(t["query"] for t in turns) == ["the blue shape", "the red shape"]
        for turn in turns:  # each turn's files are its own
            saved = json.loads(Path(turn["files"]["result"]).read_text())
            assert (
                saved["ids"] == turn["ids"]
                and Path(turn["files"]["result"]).parent.name == f"turn-{turn['turn']:03d}"
            )
    finally:
        context.close()

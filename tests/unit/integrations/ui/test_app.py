"""The page's handlers without a browser: what each event puts on the page, errors as one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.scenes import write_scene

gr = pytest.importorskip("gradio", reason="the ui extra (gradio) is not installed")

from dtwin_agent.integrations.ui.app import Page, stream_work  # noqa: E402


@pytest.fixture
def page(pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Page:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # where Gradio copies served files
    built = Page(pool)
    built.blocks()  # lays the components out: handlers return values keyed by them
    return built


def last(events: Any) -> dict[Any, Any]:
    """The page after a handler's last update (streamed updates merged in order)."""
    merged: dict[Any, Any] = {}
    for update in events:
        merged.update(update)
    return merged


def value(update: dict[Any, Any], page: Page, name: str) -> Any:
    item = update[page.c[name]]
    return getattr(item, "value", item) if isinstance(item, gr.components.Component) else item


def test_upload_then_ask_then_undo(page: Page, tmp_path: Path) -> None:
    received = write_scene(tmp_path / "received.png")
    opened = last(page.on_upload(str(received), None))
    session_id = value(opened, page, "session")
    assert value(opened, page, "status") == "the twin has 3 objects (object level); ask about them"
    objects_png = Path(value(opened, page, "objects_image"))
    assert objects_png.is_file() and objects_png.parent.name == session_id
    assert "propose_masks: done" in value(opened, page, "progress")
    assert [c[1] for c in opened[page.c["object"]].choices] == [1, 2, 3]

    answered = last(page.on_ask("the blue shape", session_id))
    assert value(answered, page, "status") == "turn 1 done: chose 1 object(s)"
    assert value(answered, page, "query") == ""
    assert "chose #" in value(answered, page, "answer") and "blue" in value(answered, page, "answer")
    rows = value(answered, page, "chosen")
    assert len(rows) == 1 and "blue" in rows[0][1]
    assert Path(value(answered, page, "download_mask")["path"]).name == "mask.png"
    assert Path(value(answered, page, "download_result")["path"]).name == "result.json"
    assert value(answered, page, "usage")[0][0] == "refine"
    assert "refine: done" in value(answered, page, "progress")

    nothing = last(page.on_ask("a purple giraffe", session_id))
    assert value(nothing, page, "status") == "turn 2 done: nothing chosen"
    assert value(nothing, page, "answer").startswith("nothing chosen:")

    undone = page.on_undo(session_id)
    assert value(undone, page, "status") == "undid turn 2 ('a purple giraffe')"
    assert len(value(undone, page, "chat")) == 2

    reopened = page.on_reopen(session_id, session_id)
    assert value(reopened, page, "status") == f"reopened session {session_id} (1 turn(s))"
    assert value(reopened, page, "progress") == ""  # no earlier run's lines beside a reopened session

    earlier = page.on_turn(1, session_id)
    assert "blue" in value(earlier, page, "answer")
    clicked = page.on_click(session_id, gr.SelectData(None, {"index": [100, 60], "value": None}))
    assert "object #" in value(clicked, page, "object_info") and "blue" in value(clicked, page, "object_info")
    assert (
        page.on_click(session_id, gr.SelectData(None, {"index": [2, 2], "value": None}))[page.c["status"]]
        == "no object at (2, 2)"
    )


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (lambda p, sid: last(p.on_ask("the red shape", None)), "error: open an image first"),
        (lambda p, sid: last(p.on_ask("   ", sid)), "error: query is empty"),
        (lambda p, sid: last(p.on_ask("x" * 20_000, sid)), "error: query is 20000 characters long"),
        (lambda p, sid: last(p.on_pick("/etc/hostname", sid)), "outside the allowed folders"),
        (lambda p, sid: p.on_reopen("no-such-session", sid), "error: no session 'no-such-session'"),
        (lambda p, sid: p.on_reopen(None, sid), "error: pick a session from the list first"),
        (lambda p, sid: p.on_undo(None), "error: no session to undo in"),
        (lambda p, sid: last(p.on_new(None)), "error: open an image first"),
    ],
)
def test_bad_requests_are_one_error_line(page: Page, handler: Any, message: str) -> None:
    session_id = value(last(page.on_pick("scene.png", None)), page, "session")
    status = value(handler(page, session_id), page, "status")
    assert status.startswith("error: ") and message in status and "\n" not in status


def test_a_bug_is_an_error_line_not_a_trace(page: Page, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    session_id = value(last(page.on_pick("scene.png", None)), page, "session")
    chat = page.pool.get(session_id)

    def broken(query: str, on_progress: Any = None) -> None:
        raise RuntimeError("boom\nin two lines")

    monkeypatch.setattr(chat, "ask", broken)
    failed = last(page.on_ask("the red shape", session_id))
    assert value(failed, page, "status") == (
        "error: internal error (RuntimeError: boom in two lines); the session is kept"
    )
    assert value(failed, page, "query") == "the red shape"  # the request is kept to try again
    assert value(failed, page, "session") == session_id and "Traceback" not in str(failed)
    assert any(r.exc_info for r in caplog.records)  # the cause is in the server's log


def test_stream_work_streams_lines_then_the_result_or_the_error() -> None:
    from dtwin_agent.progress import ProgressEvent

    def work(show: Any) -> int:
        show(ProgressEvent("propose_masks", "end", message="3 masks", seconds=0.5))
        return 7

    items = list(stream_work(work, interval_s=0.01))
    assert items[-1][1] == 7 and "propose_masks: done in 0.5 s (3 masks)" in items[-1][0]

    def failing(show: Any) -> int:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        list(stream_work(failing, interval_s=0.01))

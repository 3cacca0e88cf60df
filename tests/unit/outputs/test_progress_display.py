"""The progress display: plain lines in logs, a live display on terminals."""

from __future__ import annotations

import io
import re

from rich.console import Console

from dtwin_agent.outputs.progress import ProgressDisplay
from dtwin_agent.progress import ProgressEvent


def _plain(**kwargs):
    buf = io.StringIO()
    return buf, ProgressDisplay(Console(file=buf, width=40), **kwargs)


def _lines(buf):
    return [re.sub(r"^\[\s*[\d.]+ s\] ", "", line) for line in buf.getvalue().splitlines()]


def test_plain_lines_when_not_a_terminal():
    buf, show = _plain(interval_s=60.0)
    assert show.live is False
    with show:
        show(ProgressEvent("load_image", "start"))
        show(ProgressEvent("load_image", "end", message="96x96 px", seconds=0.01))
        show(ProgressEvent("propose_masks", "start"))
        for done in range(16, 257, 16):
            show(ProgressEvent("propose_masks", done=done, total=256, unit="prompts"))
        show(ProgressEvent("propose_masks", "end", message="12 masks", seconds=31.0))
    assert _lines(buf) == [
        "load_image: done in 0.0 s (96x96 px)",  # ended within a second: one line, no start line
        "propose_masks: 16/256 prompts",  # the first counter; the rest within the interval are dropped
        "propose_masks: 256/256 prompts",  # ... except the last
        "propose_masks: done in 31.0 s (12 masks)",
    ]
    assert all(line.startswith("[") for line in buf.getvalue().splitlines())


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_plain_start_line_after_a_second_and_still_running_lines():
    clock = FakeClock()
    buf = io.StringIO()
    show = ProgressDisplay(Console(file=buf, width=40), live=False, interval_s=5.0, clock=clock)
    show(ProgressEvent("refine", "start"))
    clock.now = 0.5
    show.tick()
    assert buf.getvalue() == ""  # not a second yet
    clock.now = 1.0
    show.tick()
    show(ProgressEvent("refine", done=120, total=2332, unit="tokens read"))
    clock.now = 12.0
    show.tick()
    clock.now = 13.0
    show.tick()  # nothing new within 2 x interval
    show(ProgressEvent("refine", "error", message="provider down", seconds=13.0))
    assert _lines(buf) == [
        "refine: started",
        "refine: 120/2332 tokens read",
        "refine: still running, 12 s (120/2332 tokens read)",
        "refine: failed in 13.0 s: provider down",
    ]


def test_long_paths_are_not_wrapped_in_logs():
    buf, show = _plain()
    path = "/very/long/" + "folder/" * 20 + "mask.png"
    with show:
        show(ProgressEvent("record_turn", "end", message=path, seconds=0.1))
    assert path in buf.getvalue()


def test_live_display_on_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80)
    with ProgressDisplay(console) as show:
        assert show.live is True
        show(ProgressEvent("propose_masks", "start"))
        show(ProgressEvent("propose_masks", done=64, total=256, unit="prompts"))
        show(ProgressEvent("propose_masks", "end", message="12 masks", seconds=3.0))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert "done propose_masks (3.0 s): 12 masks" in text


def test_eval_and_twins_build_progress_is_plain_lines_in_a_log(capsys):
    from dtwin_agent.evaluation.progress import Progress

    with Progress("eval", 3, 1, True) as bar:  # one sample done by an earlier run
        bar.advance({})
        bar.advance({})
    lines = _lines(io.StringIO(capsys.readouterr().err))
    assert lines[0] == "eval: 1/3 samples" and lines[-2] == "eval: 3/3 samples"
    assert lines[-1].startswith("eval: done in ") and lines[-1].endswith("(3/3 samples, 2 new)")


def test_plain_lines_stay_in_time_order_with_nested_stages():
    clock = FakeClock()
    buf = io.StringIO()
    show = ProgressDisplay(Console(file=buf, width=80), live=False, clock=clock)
    show(ProgressEvent("build_twin", "start"))  # a chat turn's subgraph, around its nodes
    show(ProgressEvent("load_image", "start"))
    clock.now = 0.1
    show(ProgressEvent("load_image", "end", message="800x534 px", seconds=0.1))
    assert _lines(buf) == ["build_twin: started", "load_image: done in 0.1 s (800x534 px)"]


def test_only_the_innermost_running_stage_says_it_is_still_running():
    clock = FakeClock()
    buf = io.StringIO()
    show = ProgressDisplay(Console(file=buf, width=80), live=False, interval_s=5.0, clock=clock)
    show(ProgressEvent("reason", "start"))
    show(ProgressEvent("refine", "start"))
    for now in (1.0, 11.0, 21.0):
        clock.now = now
        show.tick()
    lines = _lines(buf)
    assert [line for line in lines if "still running" in line] == [
        "refine: still running, 11 s",
        "refine: still running, 21 s",
    ]

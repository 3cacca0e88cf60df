"""Resumable evaluation on a tiny ReasonSeg-format fixture with a fake segment function."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from dtwin_agent.cli.eval import eval_command
from dtwin_agent.errors import InputError
from dtwin_agent.evaluation import runner as ev
from dtwin_agent.evaluation.runner import read_results, run_eval, sum_usage

TOOLS = Path(__file__).resolve().parents[3] / "tools"


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def write_reasonseg(root: Path) -> Path:
    """val: 3 images; test: 2 short + 2 long queries. Targets are rectangles (x0..x1 inclusive)."""
    specs = {
        "val": [("v1", False, rect(2, 2, 5, 5)), ("v2", True, rect(0, 0, 3, 3)), ("v3", False, None)],
        "test": [
            ("t1", False, rect(1, 1, 4, 4)),
            ("t2", False, rect(2, 2, 7, 5)),
            ("t3", True, rect(0, 0, 9, 7)),
            ("t4", True, rect(5, 5, 6, 6)),
        ],
    }
    for split, items in specs.items():
        (root / split).mkdir(parents=True)
        for name, is_sentence, poly in items:
            Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(root / split / f"{name}.jpg")
            shapes = [{"label": "target", "points": poly}] if poly else []
            anno = {"text": [f"query {name}"], "is_sentence": is_sentence, "shapes": shapes}
            (root / split / f"{name}.json").write_text(json.dumps(anno))
    return root


class FakeSegment:
    """Predicts a fixed 4 x 4 square at (0, 0) except for images listed in ``empty``; counts calls."""

    def __init__(self, stop_after=None, fail_on=(), empty=("v3",)):
        self.calls: list[str] = []
        self.stop_after = stop_after
        self.fail_on = set(fail_on)
        self.empty = set(empty)
        self.lock = threading.Lock()

    def __call__(self, image_path, query, **kwargs):
        name = Path(image_path).stem
        with self.lock:
            if self.stop_after is not None and len(self.calls) >= self.stop_after:
                raise KeyboardInterrupt
            self.calls.append(name)
        if name in self.fail_on:
            raise RuntimeError("provider exploded")
        w, h = Image.open(image_path).size
        mask = np.zeros((h, w), bool)
        if name not in self.empty:
            mask[0:4, 0:4] = True
        usage = {"stages": {"refine": {"calls": 1, "input_tokens": 100, "output_tokens": 10, "seconds": 0.5}}}
        return SimpleNamespace(mask=mask, ids=[1], usage=usage)


@pytest.fixture
def rs(tmp_path):
    return write_reasonseg(tmp_path / "ReasonSeg")


def expected_columns():
    # prediction: the 4 x 4 square (0..3, 0..3) = 16 px; targets are inclusive rectangles
    def iu(x0, y0, x1, y1):
        gt = np.zeros((8, 10), bool)
        gt[y0 : y1 + 1, x0 : x1 + 1] = True
        pred = np.zeros((8, 10), bool)
        pred[0:4, 0:4] = True
        return int((gt & pred).sum()), int((gt | pred).sum())

    v = [iu(2, 2, 5, 5), iu(0, 0, 3, 3), (0, 0)]  # v3: empty truth, empty prediction -> 1.0 (LISA)
    t_short = [iu(1, 1, 4, 4), iu(2, 2, 7, 5)]
    t_long = [iu(0, 0, 9, 7), iu(5, 5, 6, 6)]

    def scores(items):
        ious = [i / u if u else 1.0 for i, u in items]
        return sum(ious) / len(ious), sum(i for i, _ in items) / sum(u for _, u in items)

    return {
        "val": scores(v),
        "test short": scores(t_short),
        "test long": scores(t_long),
        "test overall": scores(t_short + t_long),
    }


def test_full_run_table_matches_hand_computation(rs, tmp_path):
    report = run_eval(
        "reasonseg", rs, "val,test", out_dir=tmp_path / "out", segment_fn=FakeSegment(), progress=False
    )
    assert list(report.columns) == ["val", "test short", "test long", "test overall"]
    for name, (giou, ciou) in expected_columns().items():
        assert report.columns[name].giou == pytest.approx(giou)
        assert report.columns[name].ciou == pytest.approx(ciou)
    assert report.columns["test overall"].n == 4 and report.n_samples == 7
    assert report.usage_totals == {"calls": 7, "input_tokens": 700, "output_tokens": 70, "seconds": 3.5}
    assert report.usage_by_path["stages.refine.calls"] == 7
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| Method | val gIoU | val cIoU | test short gIoU |" in md
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["columns"]["val"]["n"] == 3


def test_interrupted_run_resumes_without_paying_twice(rs, tmp_path):
    out = tmp_path / "out"
    first = FakeSegment(stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        run_eval("reasonseg", rs, "val,test", out_dir=out, segment_fn=first, progress=False)
    done = read_results(out / "results.jsonl")
    assert len(done) == 4 and sorted(first.calls) == sorted(Path(r["image"]).stem for r in done.values())

    second = FakeSegment()
    report = run_eval("reasonseg", rs, "val,test", out_dir=out, segment_fn=second, progress=False)
    assert sorted(second.calls) == ["t2", "t3", "t4"]  # only the samples not yet in the file
    assert report.n_new == 3 and report.n_samples == 7
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 7 and len({json.loads(line)["sample_id"] for line in lines}) == 7

    full = run_eval(
        "reasonseg", rs, "val,test", out_dir=tmp_path / "full", segment_fn=FakeSegment(), progress=False
    )
    assert report.columns == full.columns

    third = FakeSegment()
    again = run_eval("reasonseg", rs, "val,test", out_dir=out, segment_fn=third, progress=False)
    assert third.calls == [] and again.n_new == 0 and again.columns == full.columns


def test_concurrent_interrupt_records_in_flight_samples_once(rs, tmp_path):
    out = tmp_path / "out"
    first = FakeSegment(stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_eval("reasonseg", rs, "val,test", out_dir=out, segment_fn=first, workers=3, progress=False)
    recorded = read_results(out / "results.jsonl")
    assert set(first.calls) == {Path(r["image"]).stem for r in recorded.values()}  # every paid call recorded
    second = FakeSegment()
    report = run_eval("reasonseg", rs, "val,test", out_dir=out, segment_fn=second, workers=3, progress=False)
    assert len(first.calls) + len(second.calls) == 7 and not set(first.calls) & set(second.calls)
    assert report.n_samples == 7


def test_half_written_line_is_cut_and_redone(rs, tmp_path):
    out = tmp_path / "out"
    run_eval("reasonseg", rs, "val", out_dir=out, segment_fn=FakeSegment(), progress=False)
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:25])  # killed mid-write
    seg = FakeSegment()
    report = run_eval("reasonseg", rs, "val", out_dir=out, segment_fn=seg, progress=False)
    assert len(seg.calls) == 1 and report.n_samples == 3
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_failed_samples_score_empty_and_retry_on_request(rs, tmp_path):
    out = tmp_path / "out"
    report = run_eval(
        "reasonseg", rs, "val", out_dir=out, segment_fn=FakeSegment(fail_on={"v1"}), progress=False
    )
    assert report.n_errors == 1 and report.columns["val"].errors == 1
    rec = next(r for r in read_results(out / "results.jsonl").values() if r["error"])
    assert rec["error"].startswith("RuntimeError") and rec["intersection"] == 0 and rec["union"] > 0
    seg = FakeSegment()
    run_eval("reasonseg", rs, "val", out_dir=out, segment_fn=seg, progress=False)
    assert seg.calls == []  # errors are not retried by default: no sample is paid for twice
    report = run_eval("reasonseg", rs, "val", out_dir=out, segment_fn=seg, retry_errors=True, progress=False)
    assert seg.calls == ["v1"] and report.n_errors == 0


def test_strict_rule_limit_and_progress_callback(rs, tmp_path):
    seen = []
    report = run_eval(
        "reasonseg",
        rs,
        "val",
        out_dir=tmp_path / "o",
        segment_fn=FakeSegment(),
        empty_rule="strict",
        progress=lambda done, total, rec: seen.append((done, total)),
    )
    lisa = expected_columns()["val"][0]
    assert report.columns["val"].giou == pytest.approx(lisa - 1 / 3)  # v3 (both empty) scores 0 instead of 1
    assert seen[-1] == (3, 3)
    limited = run_eval(
        "reasonseg", rs, "test", out_dir=tmp_path / "l", segment_fn=FakeSegment(), limit=2, progress=False
    )
    assert limited.n_samples == 2


def test_bad_inputs(rs, tmp_path):
    seg = FakeSegment()
    with pytest.raises(InputError, match="dataset root not found"):
        run_eval("reasonseg", tmp_path / "missing", "val", out_dir=tmp_path / "o", segment_fn=seg)
    with pytest.raises(InputError, match="split folder"):
        run_eval("reasonseg", rs, "train", out_dir=tmp_path / "o", segment_fn=seg)
    with pytest.raises(InputError, match="workers"):
        run_eval("reasonseg", rs, "val", out_dir=tmp_path / "o", segment_fn=seg, workers=0)
    run_eval("reasonseg", rs, "val", out_dir=tmp_path / "o", segment_fn=seg, progress=False)
    (tmp_path / "ref").mkdir()
    with pytest.raises(InputError, match="holds results of dataset"):
        ev._check_manifest(tmp_path / "o", {"dataset": "refcoco", "splits": ["val"]})
    assert seg.calls == ["v1", "v2", "v3"]


def test_sum_usage_accepts_models_and_dicts():
    class U:
        def model_dump(self):
            return {"calls": 2, "input_tokens": 5, "flag": True, "name": "x"}

    by_name, by_path = sum_usage([U(), {"calls": 1}, None, {"stages": {"a": {"calls": 3}}}])
    assert by_name == {"calls": 6, "input_tokens": 5} and by_path["stages.a.calls"] == 3


# ----------------------------------------------------------------------------------- CLI / tool


def _app():
    app = typer.Typer()
    app.command("eval")(eval_command)

    @app.command("noop")
    def noop() -> None:  # a second command keeps "eval" as a sub-command
        pass

    return app


def test_cli_missing_root_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(_app(), ["eval", "--dataset", "reasonseg", "--root", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "dataset root not found" in result.stderr


def test_cli_runs_with_injected_segment(rs, tmp_path, monkeypatch):
    fake = FakeSegment()
    monkeypatch.setattr(ev, "default_segment_fn", lambda: fake)
    args = [
        "eval",
        "--dataset",
        "reasonseg",
        "--root",
        str(rs),
        "--split",
        "val",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert (
        "3 samples (3 new, 0 errors, 0 bad, 0 unfinished)" in result.stdout
        and (tmp_path / "o" / "summary.md").is_file()
    )
    bad = CliRunner().invoke(_app(), [*args, "--empty-rule", "loose"])
    assert bad.exit_code == 2 and "empty_rule" in bad.stderr


def test_tools_eval_script_with_segment_fn_file(rs, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tools_eval", TOOLS / "eval.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    fake_file = tmp_path / "fake_seg.py"
    fake_file.write_text(
        "import numpy as np\nfrom PIL import Image\nfrom types import SimpleNamespace\n"
        "def segment(path, query, **kw):\n"
        "    w, h = Image.open(path).size\n"
        "    return SimpleNamespace(mask=np.zeros((h, w), bool), ids=[], usage={'calls': 1})\n"
    )
    code = tool.main(
        [
            "--dataset",
            "reasonseg",
            "--root",
            str(rs),
            "--split",
            "all",
            "--out",
            str(tmp_path / "o"),
            "--segment-fn",
            f"{fake_file}:segment",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "test overall gIoU" in out and "| calls | 7 |" in out
    assert (
        tool.main(
            ["--dataset", "reasonseg", "--root", str(tmp_path / "x"), "--segment-fn", f"{fake_file}:segment"]
        )
        == 2
    )

"""Issue 11 items 8-9: a bad annotation is that sample's error; configuration and provider failures are
found first and never stored as finished results; LabelMe shapes are drawn as what they are."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.datasets import write_benchmark
from PIL import Image
from typer.testing import CliRunner

from dtwin_agent.cli import app
from dtwin_agent.errors import ConfigError, InputError, ProviderCallError, ProviderError
from dtwin_agent.evaluation.datasets import load_dataset, reasonseg_label_map
from dtwin_agent.evaluation.runner import read_results, run_eval


@pytest.fixture
def bench(tmp_path):
    return write_benchmark(tmp_path / "data")


def square(image_path, query, **kwargs):
    w, h = Image.open(image_path).size
    mask = np.zeros((h, w), bool)
    mask[:40, :40] = True
    return SimpleNamespace(mask=mask, ids=[1], usage={})


def test_reasonseg_shape_with_empty_points_is_that_samples_error_and_the_run_goes_on(bench, tmp_path):
    anno_path = bench["reasonseg"] / "val" / "s2.json"
    anno = json.loads(anno_path.read_text())
    anno["shapes"].append({"label": "target", "points": [], "shape_type": "polygon"})
    anno_path.write_text(json.dumps(anno))
    report = run_eval(
        "reasonseg", bench["reasonseg"], "val", out_dir=tmp_path / "o", segment_fn=square, progress=False
    )
    assert report.n_samples == 2 and report.n_bad == 1 and report.columns["val"].n == 1
    rec = read_results(tmp_path / "o" / "results.jsonl")["val/s2"]
    assert rec["error_kind"] == "data" and rec["iou"] is None
    assert rec["error"] == f"InputError: {anno_path}: shape 1 (target): polygon has no points"
    assert str(anno_path) in report.first_problem and "bad samples" in report.markdown


def test_llmseg_rle_counts_as_bytes_literal_text_is_that_samples_error(bench, tmp_path):
    path = bench["llmseg40k"] / "val.json"
    data = json.loads(path.read_text())
    rle = data["s1.jpg"]["qa_pairs"][0]["rle_seg"]
    rle["counts"] = repr(rle["counts"].encode("ascii"))  # "b'...'"
    path.write_text(json.dumps(data))
    report = run_eval(
        "llmseg40k", bench["llmseg40k"], "val", out_dir=tmp_path / "o", segment_fn=square, progress=False
    )
    assert report.n_bad == 1 and report.columns["val"].n == 3
    rec = read_results(tmp_path / "o" / "results.jsonl")["val/s1.jpg#0"]
    assert rec["error"].startswith(
        f"InputError: {path}: s1.jpg qa_pairs[0]: RLE 'counts' is the text of a Python bytes"
    )


def test_refcoco_reference_to_a_missing_annotation_is_that_samples_error(tmp_path):
    import pickle

    root = tmp_path / "refer_seg"
    (root / "refcoco").mkdir(parents=True)
    (root / "train2014").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train2014" / "a.jpg")
    instances = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}],
        "annotations": [{"id": 5, "image_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]]}],
    }
    (root / "refcoco" / "instances.json").write_text(json.dumps(instances))
    refs = [
        {
            "ref_id": 1,
            "ann_id": 5,
            "image_id": 1,
            "split": "val",
            "sentences": [{"sent_id": 1, "sent": "ok"}],
        },
        {
            "ref_id": 2,
            "ann_id": 99,
            "image_id": 1,
            "split": "val",
            "sentences": [{"sent_id": 2, "sent": "bad"}],
        },
    ]
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs))
    good, bad = load_dataset("refcoco", root, "val")
    assert good.load_masks()[0].any()
    with pytest.raises(InputError, match=r"refcoco \(unc\) ref 2: annotation 99 not in instances.json"):
        bad.load_masks()


@pytest.mark.parametrize(
    ("shape", "pixels"),
    [
        (
            {"shape_type": "rectangle", "points": [[2, 3], [11, 8]]},
            10 * 6,
        ),  # the filled box, corners inclusive
        ({"shape_type": "polygon", "points": [[2, 3], [11, 3], [11, 8], [2, 8]]}, 10 * 6),  # LISA's drawing
        ({"shape_type": "circle", "points": [[10, 10], [10, 14]]}, None),  # a disc of radius 4
        ({"shape_type": "point", "points": [[10, 10]]}, None),  # a disc of radius 5
        ({"shape_type": "line", "points": [[0, 10], [19, 10]]}, None),  # a 10 px stroke
    ],
)
def test_labelme_shapes_are_drawn_as_what_they_are(shape, pixels):
    label = reasonseg_label_map({"shapes": [{"label": "target", **shape}]}, 20, 20)
    area = int((label == 1).sum())
    kind = shape["shape_type"]
    if pixels is not None:
        assert area == pixels
    elif kind == "circle":
        assert abs(area - np.pi * 4**2) < 12 and label[10, 10] == 1 and label[10, 15] == 0
    elif kind == "point":
        assert abs(area - np.pi * 5**2) < 14 and label[10, 10] == 1
    else:
        assert 8 * 20 <= area <= 12 * 20 and label[6, 10] == 1 and label[0, 10] == 0


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"shape_type": "rectangle", "points": [[1, 1]]}, "a rectangle needs 2 point"),
        ({"shape_type": "polygon", "points": []}, "polygon has no points"),
        ({"shape_type": "mask", "points": [[1, 1]]}, "unsupported shape_type 'mask'"),
        ({"points": [["a", 2]]}, "points are not"),
    ],
)
def test_bad_labelme_shapes_name_the_file_and_shape(shape, message):
    with pytest.raises(InputError, match=f"x.json: shape 0 \\(car\\): .*{message}"):
        reasonseg_label_map({"shapes": [{"label": "car", **shape}]}, 20, 20, source="x.json")


def test_a_correct_prediction_of_a_rectangle_scores_one(tmp_path):
    root = tmp_path / "ReasonSeg"
    (root / "val").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "val" / "r.jpg")
    anno = {
        "text": ["box"],
        "shapes": [{"label": "t", "shape_type": "rectangle", "points": [[0, 0], [39, 39]]}],
    }
    (root / "val" / "r.json").write_text(json.dumps(anno))  # corners beyond the image are clipped

    def full(image_path, query, **kwargs):
        return SimpleNamespace(mask=np.ones((20, 20), bool), ids=[1], usage={})

    report = run_eval("reasonseg", root, "val", out_dir=tmp_path / "o", segment_fn=full, progress=False)
    assert report.columns["val"].giou == 1.0


def test_internal_type_error_is_a_method_error_never_a_bad_option(bench, tmp_path):
    def broken(image_path, query, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    report = run_eval(
        "reasonseg", bench["reasonseg"], "val", out_dir=tmp_path / "o", segment_fn=broken, progress=False
    )
    assert report.n_errors == 2 and report.columns["val"].n == 2  # scored as empty predictions
    assert read_results(tmp_path / "o" / "results.jsonl")["val/s1"]["error"].startswith("TypeError")
    with pytest.raises(InputError, match="reasonseg takes no option split_by; its options: all_queries"):
        run_eval(
            "reasonseg",
            bench["reasonseg"],
            "val",
            out_dir=tmp_path / "p",
            dataset_options={"split_by": "unc"},
        )


def test_cli_unknown_loader_option_exits_2_naming_it(bench, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            "reasonseg",
            "--root",
            str(bench["reasonseg"]),
            "--split-by",
            "unc",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: reasonseg takes no option split_by; its options: all_queries"


def test_broken_llm_exits_2_before_the_first_sample(bench, tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            "reasonseg",
            "--root",
            str(bench["reasonseg"]),
            "--out",
            str(out),
            "--llm",
            "nonsense",
        ],
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "models.llm = 'nonsense' names no provider" in result.stderr
    assert not (out / "results.jsonl").exists()  # nothing stored as a result
    with pytest.raises(ConfigError, match="models.vlm"):
        run_eval(
            "reasonseg",
            bench["reasonseg"],
            "val",
            out_dir=out,
            settings={"models": {"vlm": "nosuchprovider:x"}},
        )


def test_provider_failures_are_never_finished_on_resume(bench, tmp_path):
    out = tmp_path / "o"

    def down(image_path, query, **kwargs):
        raise ProviderCallError(
            "openai (refine): failed after 5 attempts",
            provider="openai",
            stage="refine",
            kind="transient",
            status_code=503,
            attempts=5,
        )

    report = run_eval("reasonseg", bench["reasonseg"], "all", out_dir=out, segment_fn=down, progress=False)
    assert report.n_unfinished == 4 and report.columns["val"].n == 0 and report.n_errors == 0
    again = run_eval("reasonseg", bench["reasonseg"], "all", out_dir=out, segment_fn=square, progress=False)
    assert again.n_new == 4 and again.n_unfinished == 0 and again.columns["val"].n == 2  # all four redone


def test_cli_exits_1_while_samples_are_unfinished(bench, tmp_path, monkeypatch):
    from dtwin_agent.evaluation import runner

    def down(image_path, query, **kwargs):
        raise ProviderError("ollama (refine): connection refused")

    monkeypatch.setattr(runner, "default_segment_fn", lambda: down)
    args = [
        "eval",
        "--dataset",
        "reasonseg",
        "--root",
        str(bench["reasonseg"]),
        "--out",
        str(tmp_path / "o"),
        "--split",
        "val",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: 2 samples failed at the provider and are not scored (first: val/s1"
    )
    monkeypatch.setattr(runner, "default_segment_fn", lambda: square)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "2 samples (2 new, 0 errors, 0 bad, 0 unfinished)" in result.stdout


def test_provider_failures_in_a_row_stop_the_run(bench, tmp_path):
    calls = []

    def down(image_path, query, **kwargs):
        calls.append(image_path)
        raise ProviderError("down")

    with pytest.raises(ProviderError, match="2 samples in a row failed at the provider"):
        run_eval(
            "reasonseg",
            bench["reasonseg"],
            "all",
            out_dir=tmp_path / "o",
            segment_fn=down,
            max_provider_failures=2,
            progress=False,
        )
    assert len(calls) == 2


def test_config_error_raised_inside_a_sample_stops_the_run_and_records_nothing(bench, tmp_path):
    def misconfigured(image_path, query, **kwargs):
        raise ConfigError("models.llm = 'openai:gpt-4o' has no API key: set OPENAI_API_KEY")

    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        run_eval(
            "reasonseg",
            bench["reasonseg"],
            "val",
            out_dir=tmp_path / "o",
            segment_fn=misconfigured,
            progress=False,
        )
    assert read_results(tmp_path / "o" / "results.jsonl") == {}


def test_unreadable_image_is_a_bad_sample_not_a_method_failure(bench, tmp_path):
    (bench["reasonseg"] / "val" / "s1.jpg").write_bytes(b"not a jpeg")
    report = run_eval("reasonseg", bench["reasonseg"], "val", out_dir=tmp_path / "o", progress=False)
    rec = read_results(tmp_path / "o" / "results.jsonl")["val/s1"]
    assert rec["error_kind"] == "data" and report.n_bad == 1 and report.columns["val"].n == 1
    assert Path(rec["image"]).name == "s1.jpg"


def test_build_segdt_broken_vlm_exits_2_before_any_image(bench, tmp_path, capsys):
    import importlib.util

    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location("build_segdt", root / "tools" / "build_segdt.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "segdt.jsonl"
    args = ["--dataset", "reasonseg", "--root", str(bench["reasonseg"]), "--split", "val", "--out", str(out)]
    assert tool.main([*args, "--settings", '{"models": {"vlm": "nonsense"}}']) == 2
    assert "models.vlm = 'nonsense' names no provider" in capsys.readouterr().err and not out.exists()
    anno = bench["reasonseg"] / "val" / "s1.json"
    anno.write_text(anno.read_text().replace('"points": [[', '"points": [], "x": [['))
    assert tool.main(args) == 0  # the bad annotation is skipped with its file named; the rest is written
    assert "s1.json: shape 0 (target): polygon has no points" in capsys.readouterr().err
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["val/s2"]


def test_damaged_refs_pickle_exits_2_naming_the_file(tmp_path):
    root = tmp_path / "refer_seg"
    (root / "refcoco").mkdir(parents=True)
    (root / "train2014").mkdir()
    (root / "refcoco" / "instances.json").write_text('{"images": [], "annotations": []}')
    (root / "refcoco" / "refs(unc).p").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(InputError, match=r"refs\(unc\)\.p: not a readable refs pickle"):
        load_dataset("refcoco", root, "val")


def test_twins_build_broken_vlm_exits_2_before_the_first_image(bench, tmp_path):
    out = tmp_path / "twins"
    args = ["twins", "build", "reasonseg", "--root", str(bench["reasonseg"]), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--vlm", "nonsense"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "models.vlm = 'nonsense' names no provider" in result.stderr
    assert not any(out.rglob("*.jsonl"))  # no shard, no record of a failed image

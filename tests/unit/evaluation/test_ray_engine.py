"""--engine ray on a local Ray with 2 CPUs: the same twins and gIoU/cIoU as --engine local, resume, errors.

One Ray instance serves the module (starting one takes seconds); marked ``slow`` and ``integration``
(a local cluster), so the everyday suite stays fast; `.ci/run` (plain `pytest`) runs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.datasets import write_benchmark

from dtwin_agent.evaluation.runner import read_results, run_eval
from dtwin_agent.evaluation.shards import TwinShards
from dtwin_agent.evaluation.twins import build_twins

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.integration]  # a local Ray cluster: a server, minutes


@pytest.fixture(scope="module")
def call_log(tmp_path_factory):
    return tmp_path_factory.mktemp("ray-calls") / "calls.log"


@pytest.fixture(scope="module")
def local_ray(call_log):
    from dtwin_agent.evaluation.engines.ray_engine import local_runtime_env

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="warning",
        runtime_env=local_runtime_env({"DTWIN_TEST_CALL_LOG": str(call_log)}),
    )
    yield
    ray.shutdown()


@pytest.fixture
def bench(tmp_path):
    return write_benchmark(tmp_path / "data")


def _columns(report):
    return {name: (c.giou, c.ciou, c.n) for name, c in report.columns.items()}


def test_ray_engine_gives_exactly_the_same_twins_and_giou_ciou_as_local(local_ray, bench, tmp_path):
    rs = bench["reasonseg"]
    twins = {}
    for engine in ("local", "ray"):
        report = build_twins(
            "reasonseg",
            rs,
            "all",
            out_dir=tmp_path / f"twins-{engine}",
            engine=engine,
            workers=2,
            progress=False,
        )
        assert report.n_twins == 4 and report.errors == {}
        rows = TwinShards.open(tmp_path / f"twins-{engine}").rows()
        twins[engine] = {key: row["twin"] for key, row in rows.items()}
        workers = {row["worker"] for row in rows.values()}
        print(f"twins {engine}: {len(rows)} images, workers {sorted(workers)}")
    assert twins["ray"] == twins["local"]  # every twin, every RLE, every label: byte for byte

    tables = {}
    for engine in ("local", "ray"):
        for dataset, root, split in (("reasonseg", rs, "val,test"), ("llmseg40k", bench["llmseg40k"], "val")):
            out = tmp_path / f"eval-{engine}-{dataset}"
            report = run_eval(dataset, root, split, out_dir=out, engine=engine, workers=2, progress=False)
            assert report.n_samples == 4 and report.n_errors == 0 and report.engine == engine
            records = read_results(out / "results.jsonl")
            counts = {k: (r["intersection"], r["union"], r["ids"]) for k, r in records.items()}
            tables[(engine, dataset)] = (_columns(report), counts)
            print(
                f"eval {engine} {dataset}: "
                + ", ".join(
                    f"{n} gIoU {100 * g:.2f} cIoU {100 * c:.2f} (n={k})"
                    for n, (g, c, k) in _columns(report).items()
                )
            )
    for dataset in ("reasonseg", "llmseg40k"):
        assert tables[("ray", dataset)] == tables[("local", dataset)]
    assert tables[("local", "reasonseg")][0]["val"][0] > 0.5  # the pipeline really segments the scenes


def test_ray_run_interrupted_midway_resumes_with_only_the_rest(local_ray, bench, tmp_path, call_log):
    out = tmp_path / "twins"

    def stop_after_two(done, total, row):
        if done >= 2:
            raise KeyboardInterrupt

    call_log.write_text("")
    with pytest.raises(KeyboardInterrupt):
        build_twins(
            "reasonseg",
            bench["reasonseg"],
            "all",
            out_dir=out,
            engine="ray",
            workers=1,
            build_fn="helpers.datasets:slow_twin",
            progress=stop_after_two,
        )
    finished = set(TwinShards.open(out).rows())
    assert len(finished) == 2
    call_log.write_text("")
    report = build_twins(
        "reasonseg",
        bench["reasonseg"],
        "all",
        out_dir=out,
        engine="ray",
        workers=2,
        build_fn="helpers.datasets:slow_twin",
        progress=False,
    )
    rerun = sorted(call_log.read_text().split())
    assert rerun == sorted({"s1", "s2", "s3", "s4"} - {Path(k).stem for k in finished})
    assert report.n_new == 2 and report.n_twins == 4


def test_ray_worker_raising_on_one_image_records_its_error_and_the_run_completes(local_ray, bench, tmp_path):
    report = build_twins(
        "reasonseg",
        bench["reasonseg"],
        "all",
        out_dir=tmp_path / "t",
        engine="ray",
        workers=2,
        build_fn="helpers.datasets:build_twin_failing_on_s2",
        progress=False,
    )
    assert report.n_twins == 3 and report.errors == {"method": 1}
    assert report.first_error == "val/s2.jpg: RuntimeError: worker exploded on s2"
    ev = run_eval(
        "reasonseg",
        bench["reasonseg"],
        "val,test",
        out_dir=tmp_path / "e",
        engine="ray",
        workers=2,
        segment_fn="helpers.datasets:square_segment_failing_on_s2",
        progress=False,
    )
    assert ev.n_samples == 4 and ev.n_errors == 1 and ev.columns["val"].errors == 1
    rec = read_results(tmp_path / "e" / "results.jsonl")["val/s2"]
    assert rec["error"] == "RuntimeError: worker exploded on s2" and rec["intersection"] == 0
    assert json.loads(json.dumps(rec))["worker"]  # which actor ran it is recorded


def test_ray_eval_over_built_twins_matches_local(local_ray, bench, tmp_path):
    twins = tmp_path / "twins"
    build_twins(
        "reasonseg", bench["reasonseg"], "all", out_dir=twins, engine="ray", workers=2, progress=False
    )
    local = run_eval(
        "reasonseg", bench["reasonseg"], "all", out_dir=tmp_path / "l", twins_dir=twins, progress=False
    )
    remote = run_eval(
        "reasonseg",
        bench["reasonseg"],
        "all",
        out_dir=tmp_path / "r",
        twins_dir=twins,
        engine="ray",
        workers=2,
        progress=False,
    )
    assert _columns(remote) == _columns(local) and remote.n_errors == 0

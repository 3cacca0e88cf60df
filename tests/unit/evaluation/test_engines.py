"""Engine choice and the Ray pipeline's shape (actor pool size, one GPU per actor), without a Ray cluster."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dtwin_agent.errors import InputError
from dtwin_agent.evaluation.engines import get_engine, split_limit
from dtwin_agent.evaluation.work import WorkSpec


class FakeDataset:
    def __init__(self, rows, calls):
        self.rows, self.calls = rows, calls

    def map_batches(self, fn, **kwargs):
        self.calls.append(kwargs)
        actor = fn(*kwargs.get("fn_constructor_args", ()))
        answers = []
        for row in self.rows:
            out = actor({"key": [row["key"]], "item": [row["item"]]})
            answers += [{"key": k, "answer": a} for k, a in zip(out["key"], out["answer"], strict=True)]
        return SimpleNamespace(iter_rows=lambda: iter(answers))


def fake_ray(cpus, gpus, calls):
    data = SimpleNamespace(from_items=lambda rows, override_num_blocks: FakeDataset(rows, calls))
    return SimpleNamespace(data=data, cluster_resources=lambda: {"CPU": cpus, "GPU": gpus})


@pytest.mark.parametrize(
    ("cpus", "gpus", "workers", "size", "num_cpus", "num_gpus"),
    [
        (8, 2, None, 2, 1, 1),  # GPUs: one actor per GPU, each holding SAM on its GPU
        (8, 0, None, 8, 1, None),  # CPUs only: one actor per CPU
        (8, 0, 2, 2, 4, None),  # two actors share the CPUs out (their torch threads)
    ],
)
def test_ray_pipeline_is_an_actor_pool_with_one_gpu_per_actor(
    cpus, gpus, workers, size, num_cpus, num_gpus, tmp_path
):
    pytest.importorskip("ray")
    import numpy as np
    from PIL import Image

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(image)
    from dtwin_agent.evaluation.engines.ray_engine import RayEngine

    calls: list[dict] = []
    engine = RayEngine.__new__(RayEngine)
    engine.ray, engine.workers, engine._started = fake_ray(cpus, gpus, calls), workers, False
    engine._quiet = lambda: None
    spec = WorkSpec(task="segment", function="helpers.datasets:square_segment")
    items = [{"key": f"k{i}", "image": str(image), "query": "q", "image_id": "x.png"} for i in range(10)]
    answers = list(engine.run(spec, items))
    assert sorted(a["key"] for a in answers) == sorted(i["key"] for i in items)
    assert all(a["error"] is None and a["mask"]["size"] == [50, 60] for a in answers)
    (kwargs,) = calls
    assert kwargs["compute"].__class__.__name__ == "ActorPoolStrategy"
    assert kwargs["compute"].min_size == kwargs["compute"].max_size == size
    assert kwargs["num_cpus"] == num_cpus and kwargs["num_gpus"] == num_gpus and kwargs["batch_size"] == 1
    assert engine.worker_count() == size


def test_engine_names_and_limits():
    with pytest.raises(InputError, match="unknown engine 'spark'"):
        get_engine("spark")
    with pytest.raises(InputError, match="--workers must be at least 1"):
        get_engine("local", workers=0)
    with pytest.raises(InputError, match="--address needs --engine ray"):
        get_engine("local", address="auto")
    assert get_engine("local").worker_count() == 1 and get_engine("LOCAL", workers=3).worker_count() == 3
    assert split_limit(None, 4, 6) == 6 and split_limit(10, 4, 6) == 2

"""MobileSAM (``vit_t``, the optional ``mobile_sam`` package) through the timm / torchvision stand-ins.

No weights: the TinyViT-based model is built by ``mobile_sam``'s own registry entry with
``checkpoint=None`` (random init, then calibrated like the tiny SAM so masks pass the thresholds).
The real weights are exercised in ``tests/integration/test_mobile_sam_weights.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers.tiny_sam import calibrate

from dtwin_agent._compat import TIMM
from dtwin_agent.config import Settings
from dtwin_agent.perception.sam import SamProposer, _registry_builder

needs_mobile_sam = pytest.mark.skipif(
    importlib.util.find_spec("mobile_sam") is None,
    reason="mobile_sam is not installed (pip install mobilesam-mirror)",
)


def make_settings(**perception) -> Settings:
    base = {
        "points_per_side": 2,
        "prompts": "grid",  # the 2 x 2 grid, not the CPU default's object-aware prompts
        "points_per_batch": 64,
        "device": "cpu",
        "sam_model_type": "vit_t",
    }
    return Settings.model_validate({"perception": base | perception})


@pytest.fixture(scope="module")
def mobile_sam_model():
    if importlib.util.find_spec("mobile_sam") is None:
        pytest.skip("mobile_sam is not installed (pip install mobilesam-mirror)")
    torch.manual_seed(0)
    model = _registry_builder("vit_t")(None)  # mobile_sam.build_sam_vit_t(checkpoint=None)
    calibrate(model)
    return model.eval()


# --------------------------------------------------------------------------- the timm stand-in


def test_timm_stand_in_provides_what_mobile_sam_imports() -> None:
    with TIMM.for_import() as real:
        if real:
            pytest.skip("a working timm is installed: the stand-in is not used")
        assert TIMM.active()
        from timm.models.layers import DropPath, to_2tuple, trunc_normal_
        from timm.models.registry import register_model

        assert (
            to_2tuple(1024) == (1024, 1024)
            and to_2tuple([3, 4]) == (3, 4)
            and to_2tuple("ab") == ("ab", "ab")
        )
        x = torch.ones(8, 3, 4)
        layer = DropPath(0.5)
        assert layer.eval()(x) is x  # identity in eval mode
        torch.manual_seed(0)
        y = layer.train()(x)
        per_sample = y.flatten(1)
        assert set(per_sample[:, 0].tolist()) <= {0.0, 2.0}  # whole samples dropped, the rest scaled 1/keep
        assert torch.equal(per_sample, per_sample[:, :1].expand_as(per_sample))
        assert "drop_prob=0.500" in repr(layer)
        w = trunc_normal_(torch.empty(10_000), std=0.02)  # bounds a, b are absolute (-2, 2), as in timm
        assert 0.019 < float(w.std()) < 0.021
        w = trunc_normal_(torch.empty(10_000), mean=1.0, a=0.5, b=1.5)
        assert 0.5 <= float(w.min()) and float(w.max()) <= 1.5

        def tiny_model():
            return "model"

        assert register_model(tiny_model) is tiny_model
        with pytest.raises(ModuleNotFoundError):
            __import__("timm.data")
    # afterwards libraries probing for timm (transformers does) see it absent
    assert not TIMM.active()
    assert importlib.util.find_spec("timm") is None


def test_real_timm_wins_when_it_imports(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "timm"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\n")
    (fake / "models" / "__init__.py").write_text("")
    (fake / "models" / "layers.py").write_text("")
    (fake / "models" / "registry.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(TIMM, "real", None)
    for name in [n for n in sys.modules if n == "timm" or n.startswith("timm.")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        with TIMM.for_import() as real:
            assert real is True
            assert getattr(sys.modules["timm"], "REAL", False)
            assert not TIMM.active()
        assert getattr(sys.modules["timm"], "REAL", False)  # a real timm stays imported
    finally:
        for name in [n for n in sys.modules if n == "timm" or n.startswith("timm.")]:
            del sys.modules[name]


@pytest.mark.slow
@needs_mobile_sam
def test_importing_mobile_sam_leaves_no_stand_ins_behind() -> None:
    """In a fresh interpreter: ``vit_t`` imports mobile_sam, then timm / torchvision look absent."""
    code = textwrap.dedent(
        """
        import importlib.util, sys
        from dtwin_agent._compat import TIMM, TORCHVISION
        from dtwin_agent.perception.sam import _registry_builder
        build = _registry_builder("vit_t")
        assert build.__module__ == "mobile_sam.build_sam", build.__module__
        if not TIMM.real:
            assert not [n for n in sys.modules if n == "timm" or n.startswith("timm.")]
            assert importlib.util.find_spec("timm") is None
        if not TORCHVISION.real:
            assert not [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]
            assert importlib.util.find_spec("torchvision") is None
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# --------------------------------------------------------------------------- MobileSAM in the proposer


@pytest.mark.slow
def test_vit_t_built_by_the_registry_runs_in_the_proposer(mobile_sam_model) -> None:
    model = mobile_sam_model
    assert type(model.image_encoder).__name__ == "TinyViT"
    assert type(model).__module__.startswith("mobile_sam.")
    proposer = SamProposer(make_settings(), model=model)
    image = np.zeros((48, 64, 3), np.uint8)
    image[10:40, 8:30] = (200, 40, 40)
    image[5:25, 36:60] = (40, 180, 60)
    proposals = proposer.propose(image, "object")  # everything mode, then centroid re-prompting
    assert proposals
    for p in proposals:
        assert p.mask.dtype == bool and p.mask.shape == (48, 64)
        assert 0.0 <= p.point[0] <= 64 and 0.0 <= p.point[1] <= 48
        assert np.isfinite(p.predicted_iou) and np.isfinite(p.stability)
    sam_only = SamProposer(make_settings(policy="sam_only"), model=model).propose(image, "object")
    assert 1 <= len(sam_only) <= 2 * 2 * 3  # at most 3 masks per point of the 2 x 2 grid


@pytest.mark.slow
def test_vit_t_checkpoint_loads_through_load_sam(mobile_sam_model, tmp_path) -> None:
    """A state_dict file goes through mobile_sam's registry entry (``torch.load`` + strict load)."""
    path = tmp_path / "mobile_sam.pt"
    torch.save(mobile_sam_model.state_dict(), path)
    proposer = SamProposer(make_settings(sam_checkpoint=str(path)))
    loaded = proposer.model.state_dict()
    for name, tensor in mobile_sam_model.state_dict().items():
        assert torch.equal(loaded[name], tensor), name

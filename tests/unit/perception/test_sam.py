"""The SAM proposer and the torchvision stand-in, on a tiny calibrated random SAM (CPU, < 1 s each)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers.tiny_sam import build_tiny_sam, synthetic_image
from segment_anything import SamAutomaticMaskGenerator, SamPredictor  # noqa: E402  (after the stand-in)

from dtwin_agent._compat import TORCHVISION
from dtwin_agent._compat import torchvision as tv_stand_in
from dtwin_agent.config import Settings
from dtwin_agent.errors import ConfigError
from dtwin_agent.perception import PROPOSERS, get_proposer
from dtwin_agent.perception.policy import (
    centroid_prompt_point,
    choose_growth,
    containment_filter,
    find_groups,
    part_dedup,
)
from dtwin_agent.perception.sam import SamProposer


@pytest.fixture(scope="module")
def tiny_sam():
    return build_tiny_sam()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_image()


def make_settings(**perception) -> Settings:
    base = {  # the 4 x 4 grid (a CPU's default is object-aware prompts)
        "points_per_side": 4,
        "prompts": "grid",
        "points_per_batch": 64,
        "box_nms_thresh": 1.0,
        "device": "auto",
    }
    return Settings.model_validate({"perception": base | perception})


def as_tuples(proposals):
    return [(p.mask, p.predicted_iou, p.stability, p.point) for p in proposals]


def assert_same(a, b, *, rel: float = 0.0) -> None:
    """Same masks and points; scores equal, or within ``rel`` (float32 rounding of other batch shapes)."""
    assert len(a) == len(b)
    for pa, pb in zip(a, b, strict=True):
        assert pa.mask.dtype == bool and pa.mask.shape == pb.mask.shape
        assert np.array_equal(pa.mask, pb.mask)
        assert pa.point == pb.point
        if rel:
            assert pa.predicted_iou == pytest.approx(pb.predicted_iou, rel=rel)
            assert pa.stability == pytest.approx(pb.stability, rel=rel)
        else:
            assert pa.predicted_iou == pb.predicted_iou
            assert pa.stability == pb.stability


# --------------------------------------------------------------------------- torchvision stand-in


def test_torchvision_stand_in_provides_what_segment_anything_imports() -> None:
    with TORCHVISION.for_import() as real:
        if real:
            pytest.skip("a working torchvision is installed: the stand-in is not used")
        assert TORCHVISION.active()
        from torchvision.ops import batched_nms as ops_nms
        from torchvision.ops.boxes import batched_nms, box_area
        from torchvision.transforms.functional import resize, to_pil_image

        assert ops_nms is batched_nms and callable(box_area) and callable(resize) and callable(to_pil_image)
        with pytest.raises(ModuleNotFoundError):
            __import__("torchvision.io")
    # afterwards other libraries probing for torchvision (transformers) see it absent
    assert not TORCHVISION.active()
    import importlib.util

    assert importlib.util.find_spec("torchvision") is None


def test_real_torchvision_wins_when_it_imports(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(TORCHVISION, "real", None)
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    assert TORCHVISION.ensure() is True
    assert getattr(sys.modules["torchvision"], "REAL", False)
    assert not TORCHVISION.active()


def reference_batched_nms(boxes: np.ndarray, scores: np.ndarray, cats: np.ndarray, thr: float) -> list[int]:
    keep = []
    for cat in np.unique(cats):
        idx = [i for i in sorted(np.flatnonzero(cats == cat), key=lambda i: -scores[i])]
        alive = list(idx)
        while alive:
            best = alive.pop(0)
            keep.append(best)
            survivors = []
            for j in alive:
                bx, by = boxes[best], boxes[j]
                w = max(0.0, min(bx[2], by[2]) - max(bx[0], by[0]))
                h = max(0.0, min(bx[3], by[3]) - max(bx[1], by[1]))
                inter = w * h
                union = (bx[2] - bx[0]) * (bx[3] - bx[1]) + (by[2] - by[0]) * (by[3] - by[1]) - inter
                if not inter / union > thr:
                    survivors.append(j)
            alive = survivors
    return sorted(keep, key=lambda i: -scores[i])


@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_batched_nms_matches_per_category_reference(thr: float) -> None:
    batched_nms, box_area = (
        tv_stand_in.batched_nms,
        tv_stand_in.box_area,
    )  # the stand-in, even beside a real one
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, size=(60, 2))
    wh = rng.uniform(5, 30, size=(60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.permutation(60).astype(np.float32) / 60  # distinct scores
    cats = rng.integers(0, 3, size=60)
    keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(cats).float(), thr)
    assert keep.dtype == torch.int64
    assert keep.tolist() == reference_batched_nms(boxes, scores, cats, thr)
    assert torch.allclose(box_area(torch.from_numpy(boxes)), torch.from_numpy(wh.prod(1).astype(np.float32)))
    assert batched_nms(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


def test_resize_matches_torchvision_semantics(image: np.ndarray) -> None:
    from PIL import Image
    from segment_anything.utils.transforms import ResizeLongestSide

    resize, to_pil_image = tv_stand_in.resize, tv_stand_in.to_pil_image

    # SAM's call: resize(to_pil_image(uint8 HWC), (h, w)) -> PIL bilinear resize
    expected = np.array(Image.fromarray(image).resize((64, 48), Image.Resampling.BILINEAR))
    assert np.array_equal(np.array(resize(to_pil_image(image), (48, 64))), expected)
    assert np.array_equal(ResizeLongestSide(64).apply_image(image), expected)  # what segment-anything ran
    assert to_pil_image(image).mode == "RGB"
    # tensors: interpolate with antialias, align_corners=False; one int = the short edge
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()
    ref = torch.nn.functional.interpolate(
        tensor[None], size=(30, 40), mode="bilinear", align_corners=False, antialias=True
    )[0]
    assert torch.equal(resize(tensor, [30, 40]), ref)
    assert resize(tensor, 30).shape == (3, 30, 40)
    assert resize(tensor.to(torch.uint8), 30).dtype == torch.uint8


# --------------------------------------------------------------------------- everything mode


@pytest.mark.slow
@pytest.mark.parametrize(("points_per_side", "nms", "batch"), [(4, 1.0, 64), (5, 0.7, 7)])
def test_sam_only_equals_automatic_mask_generator(tiny_sam, image, points_per_side, nms, batch) -> None:
    settings = make_settings(
        points_per_side=points_per_side,
        box_nms_thresh=nms,
        points_per_batch=batch,
        policy="sam_only",
        decoder="exact",
        prompts="grid",  # the CPU default is object-aware prompts: this compares the grid
    )
    ours = SamProposer(settings, model=tiny_sam).propose(image, "object")
    generator = SamAutomaticMaskGenerator(
        tiny_sam,
        points_per_side=points_per_side,
        points_per_batch=batch,
        pred_iou_thresh=settings.perception.pred_iou_thresh,
        stability_score_thresh=settings.perception.stability_score_thresh,
        box_nms_thresh=nms,
        min_mask_region_area=settings.perception.min_mask_region_area,
        output_mode="binary_mask",
    )
    theirs = generator.generate(image)
    assert len(ours) == len(theirs) > 0
    assert np.array_equal(np.stack([p.mask for p in ours]), np.stack([r["segmentation"] for r in theirs]))
    assert [p.predicted_iou for p in ours] == [r["predicted_iou"] for r in theirs]
    assert [p.stability for p in ours] == [r["stability_score"] for r in theirs]
    assert [list(p.point) for p in ours] == [r["point_coords"][0] for r in theirs]
    assert all(p.mask.shape == image.shape[:2] for p in ours)


@pytest.mark.slow
@pytest.mark.parametrize("granularity", ["part", "object", "group"])
def test_encoder_runs_once_per_image(tiny_sam, image, granularity) -> None:
    calls = []
    handle = tiny_sam.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        proposer = SamProposer(make_settings(), model=tiny_sam)
        assert proposer.propose(image, granularity)
        assert len(calls) == 1
        proposer.propose(synthetic_image(seed=3), granularity)
        assert len(calls) == 2
    finally:
        handle.remove()
    assert proposer.predictor.features is None  # the embedding is released after each image


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["sam_only", "granularity"])
def test_batching_gives_identical_results(tiny_sam, image, policy) -> None:
    """Identical masks and points for any batch size; scores agree to float32 rounding (a batched
    matmul of another shape may round the last bit differently, as in SamAutomaticMaskGenerator)."""
    results = [
        SamProposer(make_settings(points_per_batch=b, policy=policy), model=tiny_sam).propose(image, "object")
        for b in (2, 5, 64)
    ]
    assert results[0]
    for other in results[1:]:
        assert_same(results[0], other, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["fast", "exact"])
@pytest.mark.parametrize("fail_at_call", [0, 1])  # 0: everything stage, 1: centroid re-prompt stage
def test_cuda_oom_halves_the_batch_and_retries(tiny_sam, image, monkeypatch, fail_at_call, decoder) -> None:
    settings = make_settings(points_per_batch=16, decoder=decoder, precision="fp32")
    expected = SamProposer(settings, model=tiny_sam).propose(image, "object")
    proposer = SamProposer(settings, model=tiny_sam)
    original = proposer.predictor.decode_points
    seen: list[int] = []

    def flaky(coords, *args, **kwargs):
        seen.append(coords.shape[0])
        if len(seen) == fail_at_call + 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(coords, *args, **kwargs)

    monkeypatch.setattr(proposer.predictor, "decode_points", flaky)
    got = proposer.propose(image, "object")
    assert seen[fail_at_call] == 16 and seen[fail_at_call + 1] == 8  # the failed batch, retried halved
    assert proposer.batch_size == 8
    assert_same(got, expected, rel=1e-6)


def test_cuda_oom_at_batch_of_one_is_raised(tiny_sam, image, monkeypatch) -> None:
    proposer = SamProposer(make_settings(points_per_batch=2), model=tiny_sam)

    def always(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(proposer.predictor, "decode_points", always)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        proposer.propose(image, "object")
    assert proposer.batch_size == 1
    assert proposer.predictor.features is None


# --------------------------------------------------------------------------- granularity policy


@pytest.mark.slow
def test_part_policy_is_dedup_of_everything_mode(tiny_sam, image) -> None:
    everything = SamProposer(make_settings(policy="sam_only"), model=tiny_sam).propose(image, "part")
    part = SamProposer(make_settings(part_iou_thresh=0.9), model=tiny_sam).propose(image, "part")
    assert_same(part, part_dedup(everything, tau=0.9))
    assert 0 < len(part) < len(everything)


@pytest.mark.slow
def test_object_policy_matches_predictor_on_centroids(tiny_sam, image) -> None:
    """Centroid -> SamPredictor.predict (multimask) -> plausible growth -> Eq. 3, done by hand."""
    settings = make_settings(containment_thresh=0.8, decoder="exact")
    p = settings.perception
    everything = SamProposer(make_settings(policy="sam_only", decoder="exact"), model=tiny_sam).propose(
        image, "object"
    )
    got = SamProposer(settings, model=tiny_sam).propose(image, "object")

    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)  # a fresh encoder pass: the proposer's reused embedding must agree
    kept = [prop for prop in everything if prop.predicted_iou > p.pred_iou_thresh]
    candidates = []
    for prop in kept:
        point = centroid_prompt_point(prop.mask)
        masks, ious, _ = predictor.predict(np.array([point]), np.array([1]), multimask_output=True)
        candidates.append([(masks[k], float(ious[k]), point) for k in range(3)])
    choice = choose_growth(
        [prop.mask for prop in kept],
        [[m for m, _, _ in group] for group in candidates],
        [[v for _, v, _ in group] for group in candidates],
        theta=p.pred_iou_thresh,
        cover=p.growth_cover,
        tau_prime=0.8,
        border_max=p.growth_border_max,
    )
    grown = [
        (prop.mask, prop.predicted_iou, prop.point) if k is None else group[k]
        for prop, group, k in zip(kept, candidates, choice, strict=True)
    ]
    masks = [m for m, _, _ in grown]
    groups = find_groups(
        masks, [v for _, v, _ in grown], tau=p.part_iou_thresh, tau_prime=0.8, union_cover=p.union_cover
    )
    containers = [not g for g in groups]
    keep = containment_filter(masks, tau_prime=0.8, containers=containers, scene_share=p.scene_share)
    keep = [k for k in keep if not groups[k]]  # object level drops the groups
    assert len(got) == len(keep) > 0
    for prop, index in zip(got, keep, strict=True):
        mask, iou, point = grown[index]
        assert np.array_equal(prop.mask, mask)
        assert prop.predicted_iou == pytest.approx(iou, abs=1e-6)
        assert prop.point == pytest.approx(point)
    areas = [int(p.mask.sum()) for p in got]
    assert areas == sorted(areas, reverse=True)


def test_group_uses_the_object_pipeline(tiny_sam, image) -> None:
    proposer = SamProposer(make_settings(), model=tiny_sam)
    assert_same(proposer.propose(image, "group"), proposer.propose(image, "object"))


@pytest.mark.slow
def test_group_level_keeps_the_unions_object_level_drops(monkeypatch, tiny_sam, image) -> None:
    """A mask :func:`find_groups` marks stays at group level only, beside its objects."""
    import dtwin_agent.perception.sam as sam_module

    proposer = SamProposer(make_settings(), model=tiny_sam)
    seen = []

    def largest_is_a_group(masks, ious, **kwargs):  # pretend the largest mask is a union of others
        largest = int(np.argmax([m.sum() for m in masks]))
        seen.append(masks[largest])
        return [k == largest for k in range(len(masks))]

    monkeypatch.setattr(sam_module, "find_groups", largest_is_a_group)
    grouped = proposer.propose(image, "group")
    dropped = proposer.propose(image, "object")
    assert len(seen) == 2 and np.array_equal(seen[0], seen[1])
    assert len(grouped) == len(dropped) + 1
    assert any(np.array_equal(p.mask, seen[0]) for p in grouped)
    assert not any(np.array_equal(p.mask, seen[0]) for p in dropped)


def test_bad_inputs_raise_value_error(tiny_sam, image) -> None:
    proposer = SamProposer(make_settings(), model=tiny_sam)
    with pytest.raises(ValueError, match="granularity"):
        proposer.propose(image, "scene")
    with pytest.raises(ValueError, match="uint8"):
        proposer.propose(image.astype(np.float32), "object")
    with pytest.raises(ValueError, match="H x W x 3"):
        proposer.propose(image[..., 0], "object")


# --------------------------------------------------------------------------- checkpoints and registry


@pytest.mark.slow
def test_checkpoint_loading_from_path(tiny_sam, image, tmp_path) -> None:
    path = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam.state_dict(), path)
    settings = make_settings(sam_checkpoint=str(path), sam_model_type="vit_b", device="cpu")
    loaded = SamProposer(settings, builder=lambda ckpt: build_tiny_sam(ckpt, seed=123, calibrated=False))
    for key, value in tiny_sam.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert_same(
        loaded.propose(image, "object"), SamProposer(settings, model=tiny_sam).propose(image, "object")
    )


def test_checkpoint_errors_are_config_errors(tmp_path, monkeypatch) -> None:
    import segment_anything

    with pytest.raises(ConfigError, match="sam_checkpoint is not set"):
        SamProposer(make_settings(sam_checkpoint=None))
    with pytest.raises(ConfigError, match="does not exist"):
        SamProposer(make_settings(sam_checkpoint=str(tmp_path / "missing.pth")))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot load SAM checkpoint"):
        SamProposer(make_settings(sam_checkpoint=str(garbage)), builder=build_tiny_sam)
    wrong = tmp_path / "wrong.pth"
    torch.save({"image_encoder.nope": torch.zeros(1)}, wrong)
    # through segment-anything's own registry (its vit_b entry swapped for the tiny architecture)
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", build_tiny_sam)
    with pytest.raises(ConfigError, match="cannot load SAM checkpoint .* as vit_b"):
        SamProposer(make_settings(sam_checkpoint=str(wrong), sam_model_type="vit_b"))


def test_vit_t_without_mobile_sam_names_the_package(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mobile_sam", None)  # makes `import mobile_sam` fail
    ckpt = tmp_path / "mobile_sam.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ConfigError, match="pip install mobilesam-mirror"):
        SamProposer(make_settings(sam_model_type="vit_t", sam_checkpoint=str(ckpt)))


def test_registered_as_sam_and_factory_reads_settings(tmp_path) -> None:
    assert "sam" in PROPOSERS
    with pytest.raises(ConfigError, match="sam_checkpoint"):
        get_proposer(make_settings(proposer="sam"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            SamProposer(make_settings(device="cuda"), model=build_tiny_sam())


def test_importing_the_module_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import dtwin_agent.perception
        import dtwin_agent.perception.sam
        import dtwin_agent.perception.policy
        print("torch" in sys.modules, "segment_anything" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

"""The fast point decoder against segment-anything's MaskDecoder, on tiny calibrated SAMs (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny_sam import build_tiny_sam, synthetic_image

from dtwin_agent.config import Settings
from dtwin_agent.errors import ConfigError
from dtwin_agent.masks import iou
from dtwin_agent.perception import decoder as decoder_module
from dtwin_agent.perception import sam as sam_module
from dtwin_agent.perception.decoder import PointDecoder, native_bf16
from dtwin_agent.perception.sam import SamProposer, resolve_batch_size, resolve_precision


@pytest.fixture(scope="module")
def tiny_sam():
    return build_tiny_sam()


def reference(model, features, sparse, dense, multimask: bool):
    return model.mask_decoder(
        image_embeddings=features,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def prompts(model, count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    size = model.image_encoder.img_size
    points = torch.rand(count, 1, 2, generator=generator) * size
    labels = torch.ones(count, 1, dtype=torch.int)
    return model.prompt_encoder(points=(points, labels), boxes=None, masks=None)


def features_for(model, seed: int = 1):
    shape = (1, model.prompt_encoder.embed_dim, *model.prompt_encoder.image_embedding_size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("batch", [1, 5])
def test_fp32_decoder_equals_mask_decoder(tiny_sam, multimask, batch) -> None:
    features = features_for(tiny_sam)
    sparse, dense = prompts(tiny_sam, batch)
    with torch.no_grad():
        ref_masks, ref_iou = reference(tiny_sam, features, sparse, dense, multimask)
    decoder = PointDecoder(tiny_sam, "fp32")
    decoder.set_image(features)
    masks, iou_pred = decoder(sparse, multimask)
    assert masks.shape == ref_masks.shape and iou_pred.shape == ref_iou.shape
    scale = ref_masks.abs().max().item()  # calibrated logits are ~1000x larger than usual
    assert torch.allclose(masks, ref_masks, atol=1e-5 * scale, rtol=1e-5)
    assert torch.allclose(iou_pred, ref_iou, atol=1e-5)
    assert torch.equal(masks > 0, ref_masks > 0)


def test_decoder_falls_back_to_the_modules_for_another_upscaling_layout() -> None:
    model = build_tiny_sam(seed=3)
    up = model.mask_decoder.output_upscaling
    model.mask_decoder.output_upscaling = torch.nn.Sequential(
        up[0], up[1], up[2], up[3], up[4], torch.nn.Identity()
    )
    features = features_for(model)
    sparse, dense = prompts(model, 3)
    decoder = PointDecoder(model, "fp32")
    assert decoder._upscaling is None
    decoder.set_image(features)
    masks, iou_pred = decoder(sparse)
    with torch.no_grad():
        ref_masks, ref_iou = reference(model, features, sparse, dense, True)
    assert torch.allclose(masks, ref_masks, atol=1e-5 * ref_masks.abs().max().item())
    assert torch.allclose(iou_pred, ref_iou, atol=1e-5)


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16")
def test_bf16_decoder_agrees_on_almost_every_pixel(tiny_sam) -> None:
    features = features_for(tiny_sam)
    sparse, dense = prompts(tiny_sam, 6)
    with torch.no_grad():
        ref_masks, ref_iou = reference(tiny_sam, features, sparse, dense, True)
    decoder = PointDecoder(tiny_sam, "bf16")
    decoder.set_image(features)
    masks, iou_pred = decoder(sparse)
    assert masks.dtype == torch.float32
    assert ((masks > 0) == (ref_masks > 0)).float().mean().item() > 0.99
    assert torch.allclose(iou_pred, ref_iou, atol=0.02)


def test_decoder_needs_an_image_and_a_known_precision(tiny_sam) -> None:
    decoder = PointDecoder(tiny_sam)
    sparse, _ = prompts(tiny_sam, 1)
    with pytest.raises(RuntimeError, match="set_image"):
        decoder(sparse)
    decoder.set_image(features_for(tiny_sam))
    decoder.reset()
    with pytest.raises(RuntimeError, match="set_image"):
        decoder(sparse)
    with pytest.raises(ValueError, match="precision"):
        PointDecoder(tiny_sam, "fp16")


@pytest.mark.parametrize(
    ("size", "policy", "level"),
    [
        ((60, 80), "sam_only", "object"),  # landscape: token rows cropped
        ((80, 60), "sam_only", "object"),  # portrait: token columns cropped
        ((80, 60), "granularity", "hierarchy"),  # the re-prompts (_decode_points) too
    ],
)
def test_fast_and_exact_proposers_give_the_same_masks(tiny_sam, size, policy, level) -> None:
    image = synthetic_image(*size)
    base = {"points_per_side": 5, "prompts": "grid", "box_nms_thresh": 1.0, "device": "cpu", "policy": policy}
    exact = SamProposer(Settings.model_validate({"perception": base | {"decoder": "exact"}}), model=tiny_sam)
    fast = SamProposer(
        Settings.model_validate({"perception": base | {"decoder": "fast", "precision": "fp32"}}),
        model=tiny_sam,
    )
    theirs, ours = exact.propose(image, level), fast.propose(image, level)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert iou(a.mask, b.mask) >= 0.98
        assert a.point == b.point
        assert a.predicted_iou == pytest.approx(b.predicted_iou, abs=1e-4)


def test_default_is_the_fast_decoder_in_fp32(tiny_sam, monkeypatch) -> None:
    # chosen by benchmarks/everything_speed.py: fp32 matches every reference mask, bf16 does not
    monkeypatch.setattr(sam_module, "native_bf16", lambda: True)
    proposer = SamProposer(Settings.model_validate({"perception": {"device": "cpu"}}), model=tiny_sam)
    assert isinstance(proposer.predictor.point_decoder, PointDecoder)
    assert proposer.precision == "fp32"
    exact = SamProposer(Settings.model_validate({"perception": {"decoder": "exact"}}), model=tiny_sam)
    assert exact.predictor.point_decoder is None


def test_precision_and_batch_size_resolution(monkeypatch) -> None:
    monkeypatch.setattr(sam_module, "native_bf16", lambda: True)
    assert resolve_precision("auto", on_cuda=False) == "bf16"
    assert resolve_precision("auto", on_cuda=True) == "fp32"
    assert resolve_precision("fp32", on_cuda=False) == "fp32"
    monkeypatch.setattr(sam_module, "native_bf16", lambda: False)
    assert resolve_precision("auto", on_cuda=False) == "fp32"
    with pytest.raises(ConfigError, match="AMX"):
        resolve_precision("bf16", on_cuda=False)
    assert resolve_batch_size("auto", on_cuda=False) == sam_module.CPU_BATCH
    assert resolve_batch_size("auto", on_cuda=True) == sam_module.CUDA_BATCH
    assert resolve_batch_size(7, on_cuda=True) == 7


def test_native_bf16_reads_the_cpu_probes(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert decoder_module.native_bf16() is True
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert decoder_module.native_bf16() is False


@pytest.mark.parametrize("granularity", ["part", "object"])
def test_progress_is_reported_per_decoder_batch(tiny_sam, granularity) -> None:
    settings = Settings.model_validate(
        {
            "perception": {
                "points_per_side": 4,
                "points_per_batch": 5,
                "box_nms_thresh": 1.0,
                "device": "cpu",
                "prompts": "grid",
            }
        }
    )
    calls: list[tuple[int, int]] = []
    proposals = SamProposer(settings, model=tiny_sam).propose(
        synthetic_image(), granularity, on_progress=lambda done, total: calls.append((done, total))
    )
    assert proposals
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1]
    assert calls[:4] == [(5, 16), (10, 16), (15, 16), (16, 16)]  # the 4 x 4 grid in batches of 5
    if granularity == "object":
        assert calls[-1][1] > 16  # the centroid re-prompts were added
    else:
        assert len(calls) == 4
    assert np.all([c[0] <= c[1] for c in calls])


def test_resize_logits_equals_sam_postprocessing(tiny_sam) -> None:
    import torch.nn.functional as F

    from dtwin_agent.perception.decoder import resize_logits

    generator = torch.Generator().manual_seed(4)
    coarse = torch.randn(3, 1, 8, 8, generator=generator) * 8
    low = F.interpolate(coarse, (64, 64), mode="bilinear", align_corners=False)[:, 0]  # smooth logits
    for model_size, input_size, image_size in [
        (256, (171, 256), (534, 800)),
        (256, (256, 192), (300, 225)),
        (256, (256, 256), (256, 256)),
    ]:
        ref = F.interpolate(low[:, None], (model_size, model_size), mode="bilinear", align_corners=False)
        ref = ref[..., : input_size[0], : input_size[1]]
        ref = F.interpolate(ref, image_size, mode="bilinear", align_corners=False)[:, 0]
        ours = resize_logits(low, model_size, input_size, image_size)
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize(
    ("input_size", "image_size", "expected"),
    [
        ((171, 256), (534, 800), (11, 16)),
        ((256, 192), (300, 225), (16, 13)),
        ((256, 256), (256, 256), (16, 16)),
    ],
)
def test_resize_logits_reads_only_the_visible_tokens(input_size, image_size, expected) -> None:
    import torch.nn.functional as F

    from dtwin_agent.perception.decoder import resize_logits, visible_tokens

    generator = torch.Generator().manual_seed(5)
    low = F.interpolate(torch.randn(2, 1, 8, 8, generator=generator) * 8, (64, 64), mode="bilinear")[:, 0]
    rows, cols = visible_tokens(256, input_size, (16, 16))
    assert (rows, cols) == expected
    whole = resize_logits(low, 256, input_size, image_size)
    visible = resize_logits(low[:, : 4 * rows, : 4 * cols], 256, input_size, image_size, low_size=(64, 64))
    assert torch.equal(visible, whole)
    # the last row or column read lies in the last visible token: one token fewer lacks logits
    if rows < 16:
        with pytest.raises(ValueError, match="rows up to .* past the"):
            resize_logits(low[:, : 4 * rows - 4], 256, input_size, image_size, low_size=(64, 64))
    if cols < 16:
        with pytest.raises(ValueError, match="columns up to .* past the"):
            resize_logits(low[:, :, : 4 * cols - 4], 256, input_size, image_size, low_size=(64, 64))


def decoded(model, count: int):
    """An fp32 decoder on a random embedding, ``count`` prompts and their whole masks and IoUs."""
    sparse, _ = prompts(model, count)
    decoder = PointDecoder(model, "fp32")
    decoder.set_image(features_for(model))
    return decoder, sparse, *decoder(sparse)


@pytest.mark.parametrize("visible", [(5, 8), (8, 5), (3, 6), (8, 8)])
@pytest.mark.parametrize("layout", ["sam", "modules"])
def test_decode_upscales_only_the_visible_tokens(visible, layout) -> None:
    model = build_tiny_sam()
    if layout == "modules":  # not SAM's upscaling layout: the decoder runs the modules, then crops
        up = model.mask_decoder.output_upscaling
        model.mask_decoder.output_upscaling = torch.nn.Sequential(*up, torch.nn.Identity())
    decoder, sparse, full, _ = decoded(model, 4)
    assert (decoder._upscaling is None) == (layout == "modules")
    assert full.shape[-2:] == (32, 32)  # an 8 x 8 token grid
    rows, cols = visible
    masks, _, keep = decoder.decode(sparse, True, visible=visible)
    assert masks.shape == (full.shape[0] * full.shape[1], 4 * rows, 4 * cols) and keep.all()
    scale = full.abs().max().item()
    expected = full.flatten(0, 1)[:, : 4 * rows, : 4 * cols]
    assert torch.allclose(masks, expected, atol=1e-5 * scale, rtol=1e-5)
    none, _, _ = decoder.decode(sparse, True, min_iou=2.0, visible=visible)
    assert none.shape == (0, 4 * rows, 4 * cols)


def test_decode_refuses_tokens_outside_the_grid(tiny_sam) -> None:
    decoder, sparse, _, _ = decoded(tiny_sam, 2)
    for wrong in [(9, 8), (0, 8), (8, 9)]:
        with pytest.raises(ValueError, match="token grid"):
            decoder.decode(sparse, True, visible=wrong)


def test_decode_with_min_iou_returns_only_the_passing_masks(tiny_sam) -> None:
    decoder, sparse, full, iou_pred = decoded(tiny_sam, 7)
    threshold = float(iou_pred.flatten().sort().values[10])  # some pass, some do not
    masks, ious, keep = decoder.decode(sparse, True, min_iou=threshold)
    assert torch.equal(keep, iou_pred > threshold) and torch.equal(ious, iou_pred)
    assert 0 < masks.shape[0] < full.shape[0] * full.shape[1]
    assert torch.allclose(masks, full.flatten(0, 1)[keep.flatten()])
    none, _, keep = decoder.decode(sparse, True, min_iou=2.0)
    assert none.shape[0] == 0 and not keep.any()


def test_grid_points_are_segment_anythings_grid() -> None:
    from segment_anything.utils.amg import build_point_grid

    from dtwin_agent.perception.prompts import grid_points

    for side in (1, 4, 32):
        assert np.allclose(grid_points(side), build_point_grid(side))
    with pytest.raises(ValueError, match="side"):
        grid_points(0)


def test_seeded_points_are_the_coarse_grid_then_the_seeds() -> None:
    from dtwin_agent.perception.prompts import grid_points, seeded_points

    seeds = [(10.0, 20.0), None, (10.0, 20.0), (79.0, 59.0)]
    points = seeded_points(seeds, (60, 80), 2)
    assert np.allclose(points[:4], grid_points(2))
    assert np.allclose(points[4:], [[10 / 80, 20 / 60], [79 / 80, 59 / 60]])  # repeats dropped
    assert seeded_points(seeds, (60, 80), 0).shape == (2, 2)
    with pytest.raises(ValueError):
        seeded_points(seeds, (0, 80), 2)


def test_object_aware_prompts_run_fewer_decoder_prompts(tiny_sam) -> None:
    image = synthetic_image()
    base = {"points_per_side": 8, "box_nms_thresh": 1.0, "device": "cpu", "policy": "sam_only"}
    totals = {}
    for mode in ("grid", "objects"):
        settings = Settings.model_validate({"perception": base | {"prompts": mode, "prompt_coarse_side": 2}})
        proposer = SamProposer(settings, model=tiny_sam)
        calls: list[tuple[int, int]] = []
        assert proposer.propose(image, "object", on_progress=lambda d, t, c=calls: c.append((d, t)))
        totals[mode] = calls[-1][1]
        assert len(proposer.generator.point_grids[0]) == 64  # the grid is back after the image
    assert totals["grid"] == 64
    assert 4 < totals["objects"] < 64  # a 2 x 2 grid plus one prompt per offline region


def test_prompts_auto_are_object_aware_on_a_cpu_and_the_grid_on_cuda(tiny_sam) -> None:
    from dtwin_agent.perception.prompts import resolve_prompts

    assert resolve_prompts("auto", on_cuda=False, policy="sam_only") == "grid"  # SAM's own output
    assert resolve_prompts("auto", on_cuda=False) == "objects"
    assert resolve_prompts("auto", on_cuda=True) == "grid"
    assert resolve_prompts("grid", on_cuda=False) == "grid"
    assert resolve_prompts("objects", on_cuda=True) == "objects"
    assert Settings().perception.prompts == "auto"
    settings = Settings.model_validate(
        {"perception": {"points_per_side": 8, "prompt_coarse_side": 2, "device": "cpu"}}
    )
    proposer = SamProposer(settings, model=tiny_sam)
    assert proposer.prompts == "objects"
    calls: list[tuple[int, int]] = []
    proposer.propose(synthetic_image(), "part", on_progress=lambda d, t: calls.append((d, t)))
    assert 4 < calls[-1][1] < 64  # a 2 x 2 grid and the offline regions, not the 8 x 8 grid


@pytest.mark.parametrize("second_holds", ["nothing", "another image"])
def test_an_embedding_kept_by_one_proposer_decodes_the_same_in_another(tiny_sam, second_holds) -> None:
    """restore() brings back everything decoding needs (benchmarks share one everything-mode run)."""
    settings = Settings.model_validate(
        {"perception": {"points_per_side": 4, "prompts": "grid", "device": "cpu", "pred_iou_thresh": 0.0}}
    )
    first, second = SamProposer(settings, model=tiny_sam), SamProposer(settings, model=tiny_sam)
    if second_holds == "another image":  # its point decoder holds a stale embedding
        second.predictor.set_image(synthetic_image(80, 60))
    first.predictor.set_image(synthetic_image(60, 80))
    second.predictor.kept = first.predictor.kept
    second.predictor.restore()
    points = np.array([[20.0, 30.0], [60.0, 10.0]])
    theirs, ours = first._decode_points(points), second._decode_points(points)
    assert [len(group) for group in ours] == [len(group) for group in theirs] == [3, 3]
    for a, b in zip(sum(theirs, []), sum(ours, []), strict=True):
        assert np.array_equal(a.mask, b.mask) and a.predicted_iou == b.predicted_iou

"""The offline proposer (paper 3.1 stand-in): every synthetic object found with IoU >= 0.9."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.synthetic import make_scene

from dtwin_agent import masks as mask_ops
from dtwin_agent.config import Settings
from dtwin_agent.perception import MaskProposer, get_proposer
from dtwin_agent.perception.offline import LEVELS, OfflineProposer


@pytest.fixture(scope="module")
def proposer() -> OfflineProposer:
    return OfflineProposer(Settings())


SCENES = [
    # n, placement, noise, antialias, seed, (width, height)
    (2, "separate", 0.0, False, 0, (320, 240)),
    (5, "separate", 8.0, False, 1, (320, 240)),
    (8, "separate", 0.0, True, 2, (320, 240)),
    (12, "separate", 8.0, True, 1, (320, 240)),
    (4, "touching", 0.0, False, 3, (320, 240)),
    (8, "touching", 8.0, False, 0, (320, 240)),
    (12, "touching", 0.0, True, 1, (320, 240)),
    (12, "touching", 8.0, True, 2, (320, 240)),
    (10, "any", 8.0, True, 1, (256, 256)),
    (6, "touching", 8.0, True, 4, (800, 600)),  # larger than work_side: downscaled and mapped back
]


@pytest.mark.parametrize(("n", "placement", "noise", "antialias", "seed", "size"), SCENES)
def test_every_object_found(proposer, n, placement, noise, antialias, seed, size):
    scene = make_scene(
        n, placement=placement, noise=noise, antialias=antialias, seed=seed, width=size[0], height=size[1]
    )
    proposals = proposer.propose(scene.image, "object")
    assert proposals
    for index, truth in enumerate(scene.masks):
        best = max(mask_ops.iou(truth, p.mask) for p in proposals)
        assert best >= 0.9, f"object {index} ({scene.shapes[index]}) best IoU {best:.3f}"
    # a partition: plain scenes give about one region per object plus the background
    assert len(proposals) <= n + 4


def test_background_is_kept(proposer):
    scene = make_scene(3, seed=5)
    proposals = proposer.propose(scene.image, "object")
    background = ~np.any(scene.masks, axis=0)
    assert max(mask_ops.iou(background, p.mask) for p in proposals) >= 0.95


def test_proposal_fields(proposer):
    scene = make_scene(6, placement="touching", noise=8.0, seed=7)
    proposals = proposer.propose(scene.image, "object")
    min_px = Settings().perception.min_area_pct / 100 * scene.image.shape[0] * scene.image.shape[1]
    for p in proposals:
        assert p.mask.shape == scene.image.shape[:2] and p.mask.dtype == bool
        assert p.mask.sum() >= min_px
        assert 0.0 <= p.predicted_iou <= 1.0 and 0.0 <= p.stability <= 1.0
        x, y = p.point
        assert p.mask[int(y), int(x)], "the point lies inside its mask"
    # flat objects on a plain background are confident
    scene = make_scene(4, seed=3)
    assert all(p.predicted_iou > 0.8 for p in proposer.propose(scene.image, "object"))


def test_proposals_do_not_overlap(proposer):
    scene = make_scene(8, placement="any", noise=8.0, seed=2)
    proposals = proposer.propose(scene.image, "object")
    stack = np.stack([p.mask for p in proposals]).sum(axis=0)
    assert stack.max() == 1


def _two_tone_scene() -> np.ndarray:
    """Two rectangles each made of two close tones (Delta E ~ 10) on a grey background."""
    image = np.full((200, 300, 3), 230, np.uint8)
    image[40:160, 30:130] = (200, 40, 40)
    image[40:100, 30:130] = (225, 60, 60)  # a lighter upper half: a "part"
    image[50:150, 170:270] = (40, 60, 190)
    image[50:150, 220:270] = (60, 85, 215)
    return image


def test_part_is_finer_than_object(proposer):
    image = _two_tone_scene()
    parts = proposer.propose(image, "part")
    objects = proposer.propose(image, "object")
    assert len(parts) > len(objects)
    assert len(objects) == 3  # two objects + background
    whole = np.zeros(image.shape[:2], bool)
    whole[40:160, 30:130] = True
    assert max(mask_ops.iou(whole, p.mask) for p in objects) >= 0.95
    upper = np.zeros_like(whole)
    upper[40:100, 30:130] = True
    assert max(mask_ops.iou(upper, p.mask) for p in parts) >= 0.95


def test_group_is_coarser_than_object_on_texture(proposer):
    rng = np.random.default_rng(0)
    import cv2

    noise = rng.normal(128, 60, size=(48, 64, 3)).clip(0, 255).astype(np.uint8)
    image = cv2.resize(noise, (320, 240), interpolation=cv2.INTER_CUBIC)
    counts = {g: len(proposer.propose(image, g)) for g in ("part", "object", "group")}
    assert counts["part"] >= counts["object"] >= counts["group"] >= 1
    assert counts["part"] <= LEVELS["part"].max_regions
    assert counts["group"] <= LEVELS["group"].max_regions


def test_min_area_pct_is_honoured():
    scene = make_scene(6, seed=1)
    settings = Settings().merged({"perception.min_area_pct": 5.0})
    proposals = OfflineProposer(settings).propose(scene.image, "object")
    total = scene.image.shape[0] * scene.image.shape[1]
    assert all(p.mask.sum() >= 0.05 * total for p in proposals)
    small = [m for m in scene.masks if m.sum() < 0.05 * total]
    assert len(proposals) <= 1 + len(scene.masks) - len(small)


def test_registry_lookup():
    offline = get_proposer(Settings().merged({"perception.proposer": "offline"}))
    assert isinstance(offline, OfflineProposer) and offline.name == "offline"
    assert isinstance(offline, MaskProposer)
    auto = get_proposer(Settings())  # no SAM checkpoint: auto means offline
    assert isinstance(auto, OfflineProposer)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (1, 40, 3), (5, 5)])
def test_tiny_and_grey_images(proposer, shape):
    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    proposals = proposer.propose(image, "object")
    assert proposals
    assert all(p.mask.shape == shape[:2] for p in proposals)


def test_bad_input(proposer):
    with pytest.raises(ValueError, match="uint8"):
        proposer.propose(np.zeros((8, 8, 3), np.float32), "object")
    with pytest.raises(ValueError, match="H x W x 3"):
        proposer.propose(np.zeros((8, 8, 4), np.uint8), "object")
    with pytest.raises(ValueError, match="granularity"):
        proposer.propose(np.zeros((8, 8, 3), np.uint8), "pixel")  # type: ignore[arg-type]


@pytest.mark.integration
def test_real_photo_gives_tens_of_regions(proposer, shared_image):
    from dtwin_agent.images import downscale, load_image

    rgb, _ = downscale(load_image(shared_image("dog.jpg")).rgb, 512)
    proposals = proposer.propose(rgb, "object")
    assert 5 <= len(proposals) <= LEVELS["object"].max_regions


def test_an_unknown_proposer_lists_every_choice_auto_included():
    from dtwin_agent.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown perception.proposer 'bogus'; known: auto, offline, sam"):
        get_proposer(Settings().merged({"perception.proposer": "bogus"}))

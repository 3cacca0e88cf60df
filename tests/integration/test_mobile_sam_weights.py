"""The real MobileSAM weights (``mobile_sam.pt`` from the model store) on a photo, on the CPU.

Skipped cleanly when ``mobile_sam`` is not installed (``pip install mobilesam-mirror``), the weights
are not fetched (``dtwin models fetch mobile_sam``) or ../shared/images/dog.jpg is absent. The
store folder is read at import, before the test fixtures clear ``DTWIN_*`` variables.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from dtwin_agent.config import Settings
from dtwin_agent.weights import store

pytestmark = pytest.mark.integration

MODELS_DIR = store.models_dir()  # the real store, captured before the autouse env fixture runs


def mobile_sam_checkpoint() -> str:
    if importlib.util.find_spec("mobile_sam") is None:
        pytest.skip("mobile_sam is not installed (pip install mobilesam-mirror)")
    spec = store.MODELS["mobile_sam"]
    if not store.model_path(spec, MODELS_DIR).is_file():
        pytest.skip("not fetched: mobile_sam (dtwin models fetch mobile_sam)")
    settings = SimpleNamespace(models=SimpleNamespace(models_dir=str(MODELS_DIR)))
    return str(store.resolve_model("mobile_sam", settings))  # hashes once if not stamped yet


def test_mobile_sam_weights_segment_the_dog_photo(shared_image) -> None:
    from dtwin_agent.images import downscale, load_image
    from dtwin_agent.perception.sam import SamProposer

    checkpoint = mobile_sam_checkpoint()
    photo = load_image(shared_image("dog.jpg"))
    settings = Settings.model_validate(
        {
            "perception": {
                "sam_model_type": "vit_t",
                "sam_checkpoint": checkpoint,
                "points_per_side": 4,
                "prompts": "grid",  # the 4 x 4 grid (a CPU's default is object-aware prompts)
                "device": "cpu",
            }
        }
    )
    proposer = SamProposer(settings)  # mobile_sam's build_sam_vit_t: torch.load + strict load_state_dict
    assert type(proposer.model.image_encoder).__name__ == "TinyViT"
    image, _ = downscale(photo.rgb, settings.perception.max_image_side)
    height, width = image.shape[:2]

    proposals = proposer.propose(np.ascontiguousarray(image), "object")
    assert 2 <= len(proposals) <= 16  # 4 x 4 prompts, re-grown and containment-filtered
    areas = [float(p.mask.mean()) for p in proposals]
    assert all(p.mask.shape == (height, width) and p.mask.dtype == bool for p in proposals)
    assert all(0.0 < a < 0.95 for a in areas)  # no empty or whole-image masks (small parts may pass theta)
    assert max(p.predicted_iou for p in proposals) > 0.9  # trained weights are confident somewhere
    # the bulldog sits in the lower left quarter-to-half of the photo: some mask covers it
    dog = np.zeros((height, width), bool)
    dog[int(0.55 * height) :, : int(0.45 * width)] = True
    best = max(float((p.mask & dog).sum() / (p.mask | dog).sum()) for p in proposals)
    assert best > 0.4, best

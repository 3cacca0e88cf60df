"""Test helpers: a tiny, randomly initialised, "calibrated" SAM and a synthetic image.

The architecture is segment-anything's own (``segment_anything.modeling``) at toy sizes: a 64 px
image encoder (patch 8, embed_dim 32, depth 2, 2 heads) and a 32-dim prompt encoder / mask
decoder. Random weights give logits near 0, so no mask passes SAM's default thresholds; following
ENVIRONMENT.md the model is *calibrated*: the last layer of each output hypernetwork MLP is
multiplied by 1000 (sharp logits, stability ~1) and the IoU head's last bias is set to 1.0.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from dtwin_agent._compat import torchvision_for_import

with torchvision_for_import():
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

IMG_SIZE = 64
PATCH = 8
DIM = 32


def build_tiny_sam(checkpoint: str | None = None, *, seed: int = 0, calibrated: bool = True) -> Sam:
    """A tiny SAM (eval mode, CPU); with ``checkpoint`` its weights are read from that file."""
    torch.manual_seed(seed)
    grid = IMG_SIZE // PATCH
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMG_SIZE,
            patch_size=PATCH,
            embed_dim=DIM,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=DIM,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=4,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(IMG_SIZE, IMG_SIZE),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=DIM, mlp_dim=64, num_heads=2),
            transformer_dim=DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=DIM,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.image_encoder.img_size = IMG_SIZE
    if calibrated:
        calibrate(sam)
    if checkpoint is not None:
        with open(checkpoint, "rb") as fh:
            sam.load_state_dict(torch.load(fh))
    return sam.eval()


@torch.no_grad()
def calibrate(sam: Sam) -> None:
    """Make random logits sharp and predicted IoUs high, so masks pass SAM's thresholds."""
    for mlp in sam.mask_decoder.output_hypernetworks_mlps:
        mlp.layers[-1].weight.mul_(1000.0)
        mlp.layers[-1].bias.mul_(1000.0)
    sam.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(1.0)


def synthetic_image(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    """An ``H x W x 3`` uint8 image: a gradient background, a disc, a bar and a square."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    image[..., 2] = (ys * 255 // max(height - 1, 1)).astype(np.uint8)
    image[(xs - width // 3) ** 2 + (ys - height // 2) ** 2 < (min(height, width) // 5) ** 2] = (250, 40, 40)
    image[height // 6 : height // 6 + 6, width // 2 : width - 4] = (30, 200, 30)
    image[height - 20 : height - 6, width - 24 : width - 10] = (240, 240, 20)
    noise = rng.integers(0, 12, size=image.shape, dtype=np.uint8)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)

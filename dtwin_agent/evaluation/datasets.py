"""Benchmark loaders reading local folders: ReasonSeg, RefCOCO / RefCOCO+ / RefCOCOg, LLM-Seg40K.

Nothing is downloaded here; ``docs/evaluation.md`` says where to get each dataset and how to lay it
out. Every loader yields :class:`Sample` objects (image path, query, ground-truth mask, ignore mask,
meta) in a deterministic order, with a stable ``meta["sample_id"]`` that the resumable evaluation
(:mod:`dtwin_agent.evaluation.runner`) uses to skip samples already scored.

Masks are boolean ``H x W`` arrays at the original image size. Ground-truth conventions follow
LISA's evaluation code so that gIoU / cIoU are comparable with published numbers:

- **ReasonSeg**: polygons drawn with OpenCV (``polylines`` + ``fillPoly``, larger polygons first so
  smaller ones are drawn on top), label ``flag`` skipped, labels containing ``ignore`` go to the
  ignore mask (value 255 in LISA), everything else is target. One sample per image with the first
  ``text`` entry as the query (LISA's validation rule); ``all_queries=True`` yields every entry.
- **RefCOCO family**: one sample per (referring expression, sentence), the sentence's ``sent``
  field as the query, the referred annotation's mask (polygons or RLE, parts merged), no ignore.
- **LLM-Seg40K**: one sample per question, the ``rle_seg`` COCO RLE as the mask, no ignore.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dtwin_agent.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")

#: The splits each benchmark is evaluated on (paper 4.1, following LISA).
EVAL_SPLITS: dict[str, tuple[str, ...]] = {
    "reasonseg": ("val", "test"),
    "refcoco": ("val", "testA", "testB"),
    "refcoco+": ("val", "testA", "testB"),
    "refcocog": ("val", "test"),
    "llmseg40k": ("val", "test"),
}

#: Default ``splitBy`` of each RefCOCO-family dataset (the refs file is ``refs(<splitBy>).p``).
REFCOCO_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}

_ALIASES = {
    "reason_seg": "reasonseg",
    "reasonseg": "reasonseg",
    "refcoco": "refcoco",
    "refcoco+": "refcoco+",
    "refcocoplus": "refcoco+",
    "refcocog": "refcocog",
    "llmseg40k": "llmseg40k",
    "llm-seg40k": "llmseg40k",
    "llm_seg40k": "llmseg40k",
}


MaskPair = tuple[np.ndarray, np.ndarray]


class Sample:
    """One evaluation sample. Unpacks as ``image_path, query, gt_mask, ignore_mask, meta``.

    The masks are computed on first access (listing a split reads no pixels), so a resumed
    evaluation skips finished samples cheaply.

    Attributes:
        image_path: the image file.
        query: the text query x_txt.
        gt_mask: bool ``H x W`` ground truth at the original image size.
        ignore_mask: bool ``H x W``; pixels excluded from intersection and union.
        meta: ``sample_id`` (stable, unique within a dataset split), ``dataset``, ``split`` and
            dataset-specific fields (ReasonSeg: ``is_sentence``, ``query_type`` short / long).

    """

    __slots__ = ("image_path", "query", "meta", "_load", "_masks")

    def __init__(
        self,
        image_path: str | Path,
        query: str,
        masks: MaskPair | Callable[[], MaskPair],
        meta: dict[str, Any] | None = None,
    ):
        """Create a sample from ``(gt, ignore)`` arrays or a function returning them."""
        self.image_path = Path(image_path)
        self.query = query
        self.meta: dict[str, Any] = dict(meta or {})
        if callable(masks):
            self._load: Callable[[], MaskPair] | None = masks
            self._masks: MaskPair | None = None
        else:
            self._load = None
            self._masks = (np.asarray(masks[0], dtype=bool), np.asarray(masks[1], dtype=bool))

    def _get(self) -> MaskPair:
        if self._masks is None:
            if self._load is None:  # pragma: no cover - set in __init__
                raise RuntimeError("sample has no masks")
            gt, ignore = self._load()
            self._masks = (np.asarray(gt, dtype=bool), np.asarray(ignore, dtype=bool))
        return self._masks

    @property
    def gt_mask(self) -> np.ndarray:
        """Ground truth, bool ``H x W``."""
        return self._get()[0]

    @property
    def ignore_mask(self) -> np.ndarray:
        """Ignored pixels, bool ``H x W``."""
        return self._get()[1]

    @property
    def sample_id(self) -> str:
        """The stable id of this sample (``meta["sample_id"]``)."""
        return str(self.meta["sample_id"])

    def __iter__(self) -> Iterator[Any]:
        return iter((self.image_path, self.query, self.gt_mask, self.ignore_mask, self.meta))

    def __repr__(self) -> str:
        return f"Sample({self.meta.get('sample_id')!r}, {self.image_path.name!r}, {self.query[:40]!r})"


def canonical_name(name: str) -> str:
    """Return the canonical dataset name: reasonseg, refcoco, refcoco+, refcocog or llmseg40k.

    Raises:
        InputError: for an unknown name.

    """
    key = name.strip().lower()
    if key not in _ALIASES:
        raise InputError(f"unknown dataset {name!r}; choose one of {sorted(set(_ALIASES.values()))}")
    return _ALIASES[key]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(f"{what} not found: {path}")
    return path


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image as OpenCV decodes it (EXIF orientation applied), header only."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return height, width


# --------------------------------------------------------------------------------------- ReasonSeg


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return json.loads(path.read_text(encoding="cp1252"))  # as LISA does for a few files
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc


def reasonseg_label_map(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Draw the LISA label map of one ReasonSeg annotation: uint8 0 background, 1 target, 255 ignore.

    Reproduces LISA's ``get_mask_from_json``: ``flag`` shapes are skipped, shapes are sorted by
    filled area, largest first, and each is drawn with ``cv2.polylines`` (thickness 1) then
    ``cv2.fillPoly``; labels containing ``ignore`` draw 255, all others 1.
    """
    import cv2

    shapes = annotation.get("shapes")
    if not isinstance(shapes, list):
        raise InputError("ReasonSeg annotation has no 'shapes' list")
    areas: list[int] = []
    valid: list[dict[str, Any]] = []
    for shape in shapes:
        label = str(shape.get("label", ""))
        if label.lower() == "flag":
            continue
        pts = np.array([shape["points"]], dtype=np.int32)
        tmp = np.zeros((height, width), dtype=np.uint8)
        cv2.polylines(tmp, pts, True, 1, 1)
        cv2.fillPoly(tmp, pts, 1)
        areas.append(int(tmp.sum()))
        valid.append(shape)
    order = list(np.argsort(areas)[::-1].astype(np.int32)) if areas else []
    label_map = np.zeros((height, width), dtype=np.uint8)
    for idx in order:
        shape = valid[idx]
        value = 255 if "ignore" in str(shape.get("label", "")).lower() else 1
        pts = np.array([shape["points"]], dtype=np.int32)
        cv2.polylines(label_map, pts, True, value, 1)
        cv2.fillPoly(label_map, pts, value)
    return label_map


def _reasonseg_masks(image_path: Path, anno: dict[str, Any]) -> Callable[[], MaskPair]:
    cache: list[MaskPair] = []

    def load() -> MaskPair:
        if not cache:
            height, width = _image_size(image_path)
            label_map = reasonseg_label_map(anno, height, width)
            cache.append((label_map == 1, label_map == 255))
        return cache[0]

    return load


def _reasonseg_split_dir(root: Path, split: str) -> Path:
    for cand in (root / split, root / "ReasonSeg" / split, root / "reason_seg" / "ReasonSeg" / split):
        if cand.is_dir():
            return cand
    raise InputError(
        f"ReasonSeg split folder not found: {root / split} (expected ROOT/{split}/*.jpg + *.json)"
    )


def load_reasonseg(root: str | Path, split: str = "val", *, all_queries: bool = False) -> Iterator[Sample]:
    """Yield ReasonSeg samples from ``root/<split>/<name>.jpg`` + ``<name>.json`` (LISA's layout).

    Args:
        root: the ``ReasonSeg`` folder holding ``train/``, ``val/``, ``test/`` (its parent also works).
        split: ``train`` | ``val`` | ``test``.
        all_queries: one sample per ``text`` entry instead of LISA's first-entry-only rule.

    Raises:
        InputError: missing folders or malformed annotation files.

    """
    root = _require_dir(Path(root), "dataset root")
    folder = _reasonseg_split_dir(root, split)
    images = sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES)
    return _iter_reasonseg(images, split, all_queries)


def _iter_reasonseg(images: list[Path], split: str, all_queries: bool) -> Iterator[Sample]:
    for image_path in images:
        json_path = image_path.with_suffix(".json")
        if not json_path.is_file():
            raise InputError(f"{image_path.name}: annotation {json_path.name} is missing")
        anno = _read_json(json_path)
        texts = anno.get("text")
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise InputError(f"{json_path}: 'text' is empty or missing")
        is_sentence = bool(anno.get("is_sentence", False))
        masks = _reasonseg_masks(image_path, anno)
        chosen = list(enumerate(texts)) if all_queries else [(0, texts[0])]
        for q_index, text in chosen:
            sid = f"{split}/{image_path.stem}" + (f"#{q_index}" if all_queries else "")
            yield Sample(
                image_path,
                str(text),
                masks,
                meta={
                    "sample_id": sid,
                    "dataset": "reasonseg",
                    "split": split,
                    "is_sentence": is_sentence,
                    "query_type": "long" if is_sentence else "short",
                    "query_index": q_index,
                },
            )


# ------------------------------------------------------------------------------------- RefCOCO(+/g)


def _load_refs(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)  # noqa: S301 - the standard refer format is a pickle
    except UnicodeDecodeError:
        with path.open("rb") as fh:
            return pickle.load(fh, encoding="latin1")  # noqa: S301 - Python 2 pickles


def _coco_ann_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        if isinstance(segmentation[0], list):  # polygons
            rles = mask_utils.frPyObjects(segmentation, height, width)
        else:  # a list of RLE dicts
            rles = [_rle_bytes(r, height, width) for r in segmentation]
    elif isinstance(segmentation, dict):
        rles = [_rle_bytes(segmentation, height, width)]
    else:
        raise InputError(f"unsupported segmentation of type {type(segmentation).__name__}")
    decoded = mask_utils.decode(rles)
    if decoded.ndim == 3:
        decoded = decoded.sum(axis=2)
    return decoded > 0


def _coco_masks(segmentation: Any, height: int, width: int) -> Callable[[], MaskPair]:
    cache: list[MaskPair] = []

    def load() -> MaskPair:
        if not cache:
            gt = _coco_ann_mask(segmentation, height, width)
            cache.append((gt, np.zeros_like(gt)))
        return cache[0]

    return load


def _rle_bytes(rle: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects(rle, height, width)
    return {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def _first_dir(candidates: list[Path], what: str) -> Path:
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise InputError(f"{what} not found; looked in: " + ", ".join(str(c) for c in candidates))


def load_refcoco(
    root: str | Path,
    dataset: str = "refcoco",
    split: str = "val",
    *,
    split_by: str | None = None,
    image_dir: str | Path | None = None,
) -> Iterator[Sample]:
    """Yield RefCOCO / RefCOCO+ / RefCOCOg samples from the ``refer`` layout LISA uses.

    Layout: ``root/<dataset>/refs(<split_by>).p`` and ``root/<dataset>/instances.json``; images in
    ``image_dir`` or the first existing of ``root/images/mscoco/images/train2014``,
    ``root/images/train2014``, ``root/train2014``.

    Args:
        root: the ``refer_seg`` folder.
        dataset: ``refcoco`` | ``refcoco+`` | ``refcocog``.
        split: ``val`` | ``testA`` | ``testB`` (RefCOCO / RefCOCO+), ``val`` | ``test`` (RefCOCOg umd),
            or ``train``.
        split_by: ``unc`` (default for RefCOCO / RefCOCO+), ``umd`` (default for RefCOCOg) or ``google``.
        image_dir: folder of the COCO train2014 images.

    Raises:
        InputError: missing files, unknown split or names.

    """
    root = _require_dir(Path(root), "dataset root")
    dataset = canonical_name(dataset)
    if dataset not in REFCOCO_SPLIT_BY:
        raise InputError(f"{dataset!r} is not a RefCOCO-family dataset")
    split_by = split_by or REFCOCO_SPLIT_BY[dataset]
    ds_dir = root / dataset if (root / dataset).is_dir() else root
    refs_path = ds_dir / f"refs({split_by}).p"
    inst_path = ds_dir / "instances.json"
    for path in (refs_path, inst_path):
        if not path.is_file():
            raise InputError(f"{dataset}: {path} not found")
    img_dir = (
        _require_dir(Path(image_dir), "image folder")
        if image_dir is not None
        else _first_dir(
            [
                root / "images" / "mscoco" / "images" / "train2014",
                root / "images" / "train2014",
                root / "train2014",
            ],
            "COCO train2014 image folder",
        )
    )
    all_refs = _load_refs(refs_path)
    refs = [r for r in all_refs if r.get("split") == split]
    if not refs:
        known = sorted({str(r.get("split")) for r in all_refs})
        raise InputError(f"{dataset} ({split_by}) has no split {split!r}; it has {known}")
    instances = _read_json(inst_path)
    return _iter_refcoco(instances, refs, img_dir, dataset, split, split_by)


def _iter_refcoco(
    instances: dict[str, Any],
    refs: list[dict[str, Any]],
    img_dir: Path,
    dataset: str,
    split: str,
    split_by: str,
) -> Iterator[Sample]:
    images = {im["id"]: im for im in instances["images"]}
    anns = {a["id"]: a for a in instances["annotations"]}
    for ref in sorted(refs, key=lambda r: r["ref_id"]):
        image = images[ref["image_id"]]
        ann = anns[ref["ann_id"]]
        masks = _coco_masks(ann["segmentation"], int(image["height"]), int(image["width"]))
        for sent in ref["sentences"]:
            yield Sample(
                img_dir / image["file_name"],
                str(sent.get("sent", sent.get("raw", ""))),
                masks,
                meta={
                    "sample_id": f"{dataset}/{split_by}/{split}/ref{ref['ref_id']}/sent{sent['sent_id']}",
                    "dataset": dataset,
                    "split": split,
                    "split_by": split_by,
                    "ref_id": ref["ref_id"],
                    "ann_id": ref["ann_id"],
                    "image_id": ref["image_id"],
                },
            )


# ---------------------------------------------------------------------------------------- LLM-Seg40K

_LLMSEG_SPLIT_FILES = {
    "train": ("train.json", "training.json", "llmseg40k_train.json"),
    "val": ("val.json", "validation.json", "llmseg40k_val.json", "llmseg40k_validation.json"),
    "test": ("test.json", "llmseg40k_test.json"),
}


def load_llmseg40k(
    root: str | Path,
    split: str = "val",
    *,
    coco_image_dir: str | Path | None = None,
    ego_objects_image_dir: str | Path | None = None,
) -> Iterator[Sample]:
    """Yield LLM-Seg40K samples: one per question of each image.

    The split file (``root/<split>.json``; ``validation.json`` also accepted for ``val``) maps an
    image file name to ``{"from_dataset": "coco" | "ego_objects", "qa_pairs": [{"question",
    "answer", "rle_seg": {"size", "counts"}}]}`` (the LLM-Seg release's format). Images are read
    from ``coco_image_dir`` (default ``root/coco/train2017``) or ``ego_objects_image_dir``
    (default ``root/ego_objects/images``).

    Raises:
        InputError: missing split file or malformed entries.

    """
    root = _require_dir(Path(root), "dataset root")
    if split not in _LLMSEG_SPLIT_FILES:
        raise InputError(f"LLM-Seg40K split must be one of {sorted(_LLMSEG_SPLIT_FILES)}, got {split!r}")
    names = _LLMSEG_SPLIT_FILES[split]
    split_path = next((root / n for n in names if (root / n).is_file()), None)
    if split_path is None:
        raise InputError(f"LLM-Seg40K {split} file not found in {root} (looked for {', '.join(names)})")
    dirs = {
        "coco": Path(coco_image_dir) if coco_image_dir else root / "coco" / "train2017",
        "ego_objects": Path(ego_objects_image_dir)
        if ego_objects_image_dir
        else root / "ego_objects" / "images",
    }
    data = _read_json(split_path)
    if not isinstance(data, dict):
        raise InputError(f"{split_path}: expected an object keyed by image file name")
    return _iter_llmseg(data, dirs, split, split_path)


def _iter_llmseg(
    data: dict[str, Any], dirs: dict[str, Path], split: str, split_path: Path
) -> Iterator[Sample]:
    for image_name in sorted(data):
        entry = data[image_name]
        source = entry.get("from_dataset", "coco")
        if source not in dirs:
            raise InputError(f"{split_path}: {image_name}: unknown from_dataset {source!r}")
        for k, qa in enumerate(entry.get("qa_pairs", [])):
            rle = qa["rle_seg"]
            yield Sample(
                dirs[source] / image_name,
                str(qa["question"]),
                _coco_masks(rle, int(rle["size"][0]), int(rle["size"][1])),
                meta={
                    "sample_id": f"{split}/{image_name}#{k}",
                    "dataset": "llmseg40k",
                    "split": split,
                    "from_dataset": source,
                    "answer": qa.get("answer", ""),
                },
            )


# ------------------------------------------------------------------------------------------ registry


def load_dataset(name: str, root: str | Path, split: str, **options: Any) -> Iterator[Sample]:
    """Yield the samples of benchmark ``name`` / ``split`` under ``root``.

    Args:
        name: ``reasonseg`` | ``refcoco`` | ``refcoco+`` | ``refcocog`` | ``llmseg40k`` (aliases accepted).
        root: the dataset folder (see each loader).
        split: the split name.
        **options: passed to the loader (e.g. ``split_by``, ``image_dir``, ``all_queries``).

    Raises:
        InputError: unknown dataset, missing root or files.

    """
    canon = canonical_name(name)
    if not Path(root).is_dir():
        raise InputError(f"dataset root not found: {root}")
    loaders: dict[str, Callable[..., Iterator[Sample]]] = {
        "reasonseg": lambda: load_reasonseg(root, split, **options),
        "llmseg40k": lambda: load_llmseg40k(root, split, **options),
    }
    if canon in loaders:
        return loaders[canon]()
    return load_refcoco(root, canon, split, **options)

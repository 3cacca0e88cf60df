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
- **images**: a plain folder of images (recursively), for ``dtwin twins build``; no ground truth.

A bad annotation never stops a listing: the sample is yielded, and reading its masks
(:meth:`Sample.load_masks`) raises :class:`~dtwin_agent.errors.InputError` naming the file and the
entry, so the evaluation records that one sample as a ``data`` error and goes on.
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
    "images": ("all",),
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
    "images": "images",
    "folder": "images",
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

    def load_masks(self) -> MaskPair:
        """``(gt, ignore)`` read now and not kept (a long run holds no mask it has scored).

        Raises:
            InputError: the annotation is missing or malformed (the message names file and entry).
        """
        if self._masks is not None:
            return self._masks
        if self._load is None:  # pragma: no cover - set in __init__
            raise RuntimeError("sample has no masks")
        gt, ignore = self._load()
        return np.asarray(gt, dtype=bool), np.asarray(ignore, dtype=bool)

    def _get(self) -> MaskPair:
        if self._masks is None:
            self._masks = self.load_masks()
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
    """Return the canonical dataset name: reasonseg, refcoco, refcoco+, refcocog, llmseg40k or images.

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

    from dtwin_agent.images import large_images_allowed

    try:
        with large_images_allowed(), Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return height, width


# --------------------------------------------------------------------------------------- ReasonSeg


def _read_json(path: Path) -> Any:
    """Parse a JSON file (UTF-8, else cp1252 as LISA does for a few ReasonSeg files).

    Raises:
        InputError: naming the file when it cannot be read or parsed.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252")
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: neither UTF-8 nor cp1252 text") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc


#: LabelMe's drawing sizes for ``line`` / ``linestrip`` (stroke width) and ``point`` (disc radius),
#: from ``labelme.utils.shape.shape_to_mask``.
LABELME_LINE_WIDTH = 10
LABELME_POINT_SIZE = 5
#: shape_type -> the number of points LabelMe requires (``None``: any number >= 1).
_LABELME_POINTS: dict[str, int | None] = {
    "polygon": None,
    "rectangle": 2,
    "circle": 2,
    "line": 2,
    "linestrip": None,
    "point": 1,
}


def _shape_points(shape: Any, where: str) -> tuple[str, np.ndarray]:
    """Validate one LabelMe shape: ``(shape_type, int32 N x 2 points)`` or an InputError naming it."""
    if not isinstance(shape, dict):
        raise InputError(f"{where}: a shape must be an object, got {type(shape).__name__}")
    kind = shape.get("shape_type") or "polygon"
    if kind not in _LABELME_POINTS:
        raise InputError(f"{where}: unsupported shape_type {kind!r}; supported: {', '.join(_LABELME_POINTS)}")
    try:
        pts = np.asarray(shape.get("points"), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: points are not [x, y] number pairs") from exc
    if pts.size == 0:
        raise InputError(f"{where}: {kind} has no points")
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise InputError(f"{where}: points are not [x, y] number pairs")
    need = _LABELME_POINTS[kind]
    if need is not None and len(pts) != need:
        raise InputError(f"{where}: a {kind} needs {need} point(s), got {len(pts)}")
    return kind, pts.astype(np.int32)  # LISA truncates to int32 the same way


def draw_labelme_shape(canvas: np.ndarray, kind: str, pts: np.ndarray, value: int) -> None:
    """Draw one LabelMe shape into ``canvas`` (uint8 ``H x W``) with ``value``, as what it is.

    - ``polygon``: ``cv2.polylines`` (thickness 1) then ``cv2.fillPoly``, exactly LISA's drawing;
    - ``rectangle``: the filled box between its two corners;
    - ``circle``: the filled disc around the first point through the second;
    - ``line`` / ``linestrip``: a stroke of LabelMe's width (10 px);
    - ``point``: a filled disc of LabelMe's point size (radius 5).

    LabelMe defines these in ``labelme.utils.shape.shape_to_mask``; LISA draws every shape as a
    polygon, which turns a 2-point rectangle into a thin line (a correct prediction scored ~0).
    """
    import cv2

    if kind == "polygon":
        cv2.polylines(canvas, [pts], True, value, 1)
        cv2.fillPoly(canvas, [pts], value)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = pts
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), value, thickness=-1)
    elif kind == "circle":
        (cx, cy), (px, py) = pts
        radius = int(round(float(np.hypot(cx - px, cy - py))))
        cv2.circle(canvas, (int(cx), int(cy)), radius, value, thickness=-1)
    elif kind in ("line", "linestrip"):
        cv2.polylines(canvas, [pts], False, value, LABELME_LINE_WIDTH)
    else:  # point
        (cx, cy) = pts[0]
        cv2.circle(canvas, (int(cx), int(cy)), LABELME_POINT_SIZE, value, thickness=-1)


def reasonseg_label_map(
    annotation: dict[str, Any], height: int, width: int, *, source: str = "annotation"
) -> np.ndarray:
    """Draw the LISA label map of one ReasonSeg annotation: uint8 0 background, 1 target, 255 ignore.

    Reproduces LISA's ``get_mask_from_json``: ``flag`` shapes are skipped, shapes are sorted by
    filled area, largest first, and each is drawn (:func:`draw_labelme_shape`); labels containing
    ``ignore`` draw 255, all others 1. Non-polygon LabelMe shapes are drawn as what they are.

    Raises:
        InputError: naming ``source`` and the shape, for a missing ``shapes`` list, an unknown
            shape type, empty points or the wrong number of points.

    """
    shapes = annotation.get("shapes") if isinstance(annotation, dict) else None
    if not isinstance(shapes, list):
        raise InputError(f"{source}: no 'shapes' list")
    areas: list[int] = []
    valid: list[tuple[str, np.ndarray, int]] = []
    for index, shape in enumerate(shapes):
        label = str(shape.get("label", "")) if isinstance(shape, dict) else ""
        if label.lower() == "flag":
            continue
        kind, pts = _shape_points(shape, f"{source}: shape {index} ({label or 'no label'})")
        tmp = np.zeros((height, width), dtype=np.uint8)
        draw_labelme_shape(tmp, kind, pts, 1)
        areas.append(int(tmp.sum()))
        valid.append((kind, pts, 255 if "ignore" in label.lower() else 1))
    order = list(np.argsort(areas)[::-1].astype(np.int32)) if areas else []
    label_map = np.zeros((height, width), dtype=np.uint8)
    for idx in order:
        kind, pts, value = valid[idx]
        draw_labelme_shape(label_map, kind, pts, value)
    return label_map


def _reasonseg_masks(image_path: Path, json_path: Path, anno: Any) -> Callable[[], MaskPair]:
    def load() -> MaskPair:
        if isinstance(anno, InputError):
            raise anno
        height, width = _image_size(image_path)
        label_map = reasonseg_label_map(anno, height, width, source=str(json_path))
        return label_map == 1, label_map == 255

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


def _reasonseg_annotation(image_path: Path) -> tuple[Path, Any, list[str], bool]:
    """``(json path, annotation or the InputError reading it, texts, is_sentence)`` of one image."""
    json_path = image_path.with_suffix(".json")
    if not json_path.is_file():
        return json_path, InputError(f"{image_path}: annotation {json_path.name} is missing"), [""], False
    try:
        anno = _read_json(json_path)
    except InputError as exc:
        return json_path, exc, [""], False
    if not isinstance(anno, dict):
        return json_path, InputError(f"{json_path}: expected a JSON object"), [""], False
    texts = anno.get("text")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        return json_path, InputError(f"{json_path}: 'text' is empty, missing or not strings"), [""], False
    return json_path, anno, texts, bool(anno.get("is_sentence", False))


def _iter_reasonseg(images: list[Path], split: str, all_queries: bool) -> Iterator[Sample]:
    for image_path in images:
        json_path, anno, texts, is_sentence = _reasonseg_annotation(image_path)
        masks = _reasonseg_masks(image_path, json_path, anno)
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
                    "annotation": str(json_path),
                },
            )


# ------------------------------------------------------------------------------------- RefCOCO(+/g)


def _load_refs(path: Path) -> list[dict[str, Any]]:
    """Read a ``refs(*).p`` pickle: a list of reference dicts.

    Raises:
        InputError: naming the file when it is not such a pickle.
    """
    try:
        try:
            with path.open("rb") as fh:
                refs = pickle.load(fh)  # noqa: S301 - the standard refer format is a pickle
        except UnicodeDecodeError:
            with path.open("rb") as fh:
                refs = pickle.load(fh, encoding="latin1")  # noqa: S301 - Python 2 pickles
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types for a damaged file
        raise InputError(f"{path}: not a readable refs pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(refs, list):
        raise InputError(f"{path}: expected a list of references, got {type(refs).__name__}")
    bad = next((i for i, r in enumerate(refs) if not isinstance(r, dict) or "ref_id" not in r), None)
    if bad is not None:
        raise InputError(f"{path}: reference {bad} is not an object with a ref_id")
    return refs


def _coco_ann_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (polygons, RLE dicts or a list of them) to one bool ``H x W`` mask.

    Raises:
        InputError: for an empty polygon, a malformed RLE (e.g. ``counts`` stored as the text of a
            Python bytes literal ``"b'...'"``) or an unsupported type.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        if all(isinstance(p, list) for p in segmentation):  # polygons
            bad = [k for k, p in enumerate(segmentation) if len(p) < 6 or len(p) % 2]
            if bad:
                raise InputError(f"polygon {bad[0]} needs at least 3 x,y pairs")
            rles = mask_utils.frPyObjects(segmentation, height, width)
        else:  # a list of RLE dicts
            rles = [_rle_bytes(r, height, width) for r in segmentation]
    elif isinstance(segmentation, dict):
        rles = [_rle_bytes(segmentation, height, width)]
    else:
        raise InputError(f"unsupported segmentation of type {type(segmentation).__name__}")
    try:
        decoded = mask_utils.decode(rles)
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare ValueError / TypeError / MemoryError
        raise InputError(f"segmentation cannot be decoded ({type(exc).__name__}: {exc})") from exc
    if decoded.ndim == 3:
        decoded = decoded.sum(axis=2)
    if decoded.shape != (height, width):
        raise InputError(f"segmentation is {decoded.shape[1]}x{decoded.shape[0]}, the image {width}x{height}")
    return decoded > 0


def _coco_masks(where: str, segmentation: Any, size: Callable[[], tuple[int, int]]) -> Callable[[], MaskPair]:
    """A loader decoding ``segmentation`` at ``size() = (height, width)``; errors name ``where``."""

    def load() -> MaskPair:
        try:
            height, width = size()
            gt = _coco_ann_mask(segmentation, int(height), int(width))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed annotation ({type(exc).__name__}: {exc})") from exc
        return gt, np.zeros_like(gt)

    return load


def _rle_bytes(rle: Any, height: int, width: int) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise InputError("an RLE needs 'size' and 'counts'")
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects(rle, height, width)
    if isinstance(counts, str) and counts[:2] in ("b'", 'b"'):
        raise InputError(
            "RLE 'counts' is the text of a Python bytes literal (str(bytes)); "
            "store counts.decode('ascii') instead"
        )
    if not isinstance(counts, (str, bytes)):
        raise InputError(f"RLE 'counts' must be a string or a list, got {type(counts).__name__}")
    try:
        encoded = counts.encode("ascii") if isinstance(counts, str) else counts
    except UnicodeEncodeError as exc:
        raise InputError("RLE 'counts' is not ASCII") from exc
    return {"size": [int(v) for v in rle["size"]], "counts": encoded}


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
    images = {im.get("id"): im for im in instances.get("images", []) if isinstance(im, dict)}
    anns = {a.get("id"): a for a in instances.get("annotations", []) if isinstance(a, dict)}
    for ref in sorted(refs, key=lambda r: r["ref_id"]):
        where = f"{dataset} ({split_by}) ref {ref['ref_id']}"
        image = images.get(ref.get("image_id"), {})
        ann = anns.get(ref.get("ann_id"))
        if not image:
            problem: InputError | None = InputError(
                f"{where}: image {ref.get('image_id')} not in instances.json"
            )
        elif ann is None:
            problem = InputError(f"{where}: annotation {ref.get('ann_id')} not in instances.json")
        else:
            problem = None
        masks = (
            _failing(problem)
            if problem is not None
            else _coco_masks(
                f"{where} (annotation {ref['ann_id']})",
                ann.get("segmentation"),
                lambda image=image: (image["height"], image["width"]),
            )
        )
        file_name = image.get("file_name") or ref.get("file_name") or f"missing-image-{ref.get('image_id')}"
        for k, sent in enumerate(ref.get("sentences") or []):
            sent = sent if isinstance(sent, dict) else {}
            sid = f"{dataset}/{split_by}/{split}/ref{ref['ref_id']}/sent{sent.get('sent_id', k)}"
            yield Sample(
                img_dir / file_name,
                str(sent.get("sent", sent.get("raw", ""))),
                masks,
                meta={
                    "sample_id": sid,
                    "dataset": dataset,
                    "split": split,
                    "split_by": split_by,
                    "ref_id": ref["ref_id"],
                    "ann_id": ref.get("ann_id"),
                    "image_id": ref.get("image_id"),
                },
            )


def _failing(error: InputError) -> Callable[[], MaskPair]:
    """A mask loader that raises ``error`` (a sample whose annotation is known to be bad)."""

    def load() -> MaskPair:
        raise error

    return load


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
        entry = entry if isinstance(entry, dict) else {}
        source = entry.get("from_dataset", "coco")
        folder = dirs.get(source, dirs["coco"])
        pairs = entry.get("qa_pairs")
        for k, qa in enumerate(pairs if isinstance(pairs, list) else [None]):
            where = f"{split_path}: {image_name} qa_pairs[{k}]"
            qa = qa if isinstance(qa, dict) else {}
            rle = qa.get("rle_seg")
            if source not in dirs:
                masks = _failing(InputError(f"{split_path}: {image_name}: unknown from_dataset {source!r}"))
            elif not qa.get("question") or not isinstance(rle, dict):
                masks = _failing(InputError(f"{where}: needs 'question' and an 'rle_seg' object"))
            else:
                masks = _coco_masks(where, rle, lambda rle=rle: (rle["size"][0], rle["size"][1]))
            yield Sample(
                folder / image_name,
                str(qa.get("question") or ""),
                masks,
                meta={
                    "sample_id": f"{split}/{image_name}#{k}",
                    "dataset": "llmseg40k",
                    "split": split,
                    "from_dataset": source,
                    "answer": qa.get("answer", ""),
                },
            )


# ------------------------------------------------------------------------------------- image folder


def load_image_folder(root: str | Path, split: str = "all") -> Iterator[Sample]:
    """Yield one sample per image file under ``root`` (recursively, sorted), without ground truth.

    ``split`` names a subfolder, or ``all`` for the whole tree. The sample id is the path relative
    to ``root``; the query is empty and reading the masks raises (there is no ground truth), so this
    loader serves ``dtwin twins build`` only.

    Raises:
        InputError: a missing folder or one with no image.
    """
    root = _require_dir(Path(root), "image folder")
    base = root if split in ("all", "", ".") else _require_dir(root / split, f"split folder {split!r}")
    images = sorted(p for p in base.rglob("*") if p.suffix in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise InputError(
            f"no image ({', '.join(sorted(set(s.lower() for s in IMAGE_SUFFIXES)))}) under {base}"
        )
    no_truth = _failing(InputError("a plain image folder has no ground truth"))
    for path in images:
        rel = path.relative_to(root).as_posix()
        yield Sample(path, "", no_truth, meta={"sample_id": rel, "dataset": "images", "split": split})


# ------------------------------------------------------------------------------------------ registry


_LOADERS: dict[str, Callable[..., Iterator[Sample]]] = {
    "reasonseg": load_reasonseg,
    "refcoco": load_refcoco,
    "refcoco+": load_refcoco,
    "refcocog": load_refcoco,
    "llmseg40k": load_llmseg40k,
    "images": load_image_folder,
}
_POSITIONAL = {"root", "dataset", "split"}


def loader_options(name: str) -> list[str]:
    """The options (``--dataset-option`` keys) the loader of dataset ``name`` takes."""
    import inspect

    params = inspect.signature(_LOADERS[canonical_name(name)]).parameters
    return [p for p in params if p not in _POSITIONAL]


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse loader options the dataset does not take, naming them and the ones it does.

    Raises:
        InputError: for an unknown option.
    """
    known = loader_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(
            f"{canonical_name(name)} takes no option {', '.join(unknown)}; "
            f"its options: {', '.join(known) or 'none'}"
        )


def load_dataset(name: str, root: str | Path, split: str, **options: Any) -> Iterator[Sample]:
    """Yield the samples of benchmark ``name`` / ``split`` under ``root``.

    Args:
        name: ``reasonseg`` | ``refcoco`` | ``refcoco+`` | ``refcocog`` | ``llmseg40k`` | ``images``
            (aliases accepted).
        root: the dataset folder (see each loader).
        split: the split name.
        **options: passed to the loader (e.g. ``split_by``, ``image_dir``, ``all_queries``).

    Raises:
        InputError: unknown dataset or option, missing root or files.

    """
    canon = canonical_name(name)
    check_options(canon, options)
    if not Path(root).is_dir():
        raise InputError(f"dataset root not found: {root}")
    if canon in REFCOCO_SPLIT_BY:
        return load_refcoco(root, canon, split, **options)
    return _LOADERS[canon](root, split, **options)

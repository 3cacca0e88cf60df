"""The segment-anything proposer: everything mode plus the granularity policy of paper 3.1.

Pipeline for one image (``H x W x 3`` uint8):

1. **Everything mode**: a ``points_per_side x points_per_side`` grid of point prompts (32 x 32 =
   1024, as in the paper; ``prompts = "grid"``, the default on CUDA), or object-aware prompts
   (``prompts = "objects"``, the default on a CPU, :func:`resolve_prompts`; MobileSAMv2's idea):
   one prompt per colour region of the offline proposer plus a coarse grid
   (:mod:`dtwin_agent.perception.prompts`). The image
   encoder runs **once** (``SamPredictor.set_image``); the prompts go through the mask decoder in
   batches of ``points_per_batch`` (``auto``: 16 on a CPU, 1024 on CUDA). A
   ``torch.cuda.OutOfMemoryError`` halves the batch and retries it (the smaller size is kept for
   later batches and images of this proposer). Masks with predicted IoU ``<= pred_iou_thresh``
   (theta), stability ``< stability_score_thresh``, and box-NMS duplicates (``box_nms_thresh``) are
   dropped. This stage *is* ``SamAutomaticMaskGenerator`` (a subclass that only changes how each
   batch is computed, see ``Generator`` in :func:`_backend`). With ``decoder = "exact"`` each batch
   runs segment-anything's own decoder and post-processing, so ``policy = "sam_only"`` returns
   exactly its masks, predicted IoUs and stability scores; ``decoder = "fast"`` (default) runs
   :class:`~dtwin_agent.perception.decoder.PointDecoder` (same function, less work: the same
   masks up to rounding, see ``benchmarks/everything_speed.py``).
2. **Granularity policy** (``policy = "granularity"``, :mod:`dtwin_agent.perception.policy`):

   - ``part``: :func:`~dtwin_agent.perception.policy.part_dedup` with ``tau = part_iou_thresh``;
   - ``object`` / ``group``: the centroid of each kept mask (Eq. 2, snapped into the mask) prompts
     SAM again in multi-mask mode, **reusing the same image embedding**; a re-prompted mask
     replaces the original only when it is a plausible growth of it
     (:func:`~dtwin_agent.perception.policy.choose_growth`); masks that are (nearly) unions of
     two or more others, with a lower predicted IoU than one of them, are groups
     (:func:`~dtwin_agent.perception.policy.find_groups`, ``union_cover``); then
     :func:`~dtwin_agent.perception.policy.containment_filter` with ``tau' = containment_thresh``
     (Eq. 3), where neither a group nor a mask covering ``scene_share`` of the image (the scene,
     the floor) may act as the container ``m*``. ``object`` drops the groups (their objects
     stay), ``group`` keeps them beside their objects;
   - ``hierarchy``: both of the above from the one everything-mode pass, each part naming its
     object (:func:`~dtwin_agent.perception.policy.assemble_hierarchy`).

The backend (torch, segment-anything) is imported only when a :class:`SamProposer` is built;
:func:`~dtwin_agent._compat.torchvision_for_import` wraps the import, so
segment-anything imports on machines without a working torchvision; MobileSAM (``vit_t``, the
``mobile_sam`` package) is imported under
:func:`~dtwin_agent._compat.mobile_sam_for_import`, which also stands in for the four
timm helpers it needs when timm is not installed.
"""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from dtwin_agent.config import Settings
from dtwin_agent.errors import ConfigError
from dtwin_agent.perception import register_proposer
from dtwin_agent.perception.base import ProgressCallback, Proposal
from dtwin_agent.perception.decoder import (
    LOGITS_PER_TOKEN,
    PointDecoder,
    native_bf16,
    resize_logits,
    visible_tokens,
)
from dtwin_agent.perception.memory import reuse_freed_memory
from dtwin_agent.perception.policy import (
    assemble_hierarchy,
    centroid_prompt_point,
    choose_growth,
    containment_filter,
    filter_by_predicted_iou,
    find_groups,
    part_dedup,
)
from dtwin_agent.perception.prompts import resolve_prompts, seeded_points
from dtwin_agent.twin import TWIN_LEVELS, TwinLevel

__all__ = ["SamProposer", "load_sam", "resolve_device"]

MOBILE_SAM_HINT = "pip install mobilesam-mirror"
FULL_FRAME = 0.95  # a re-prompted mask covering this much of the image is the scene, not an object
CPU_BATCH = 16  # prompts per decoder call on a CPU (benchmarks/everything_speed.py)
CUDA_BATCH = 1024  # on CUDA: a whole 32 x 32 grid per call; halved on out-of-memory
SamBuilder = Callable[[str], Any]  # checkpoint path -> Sam model, like sam_model_registry entries


@functools.cache
def _backend() -> Any:
    """Import torch + segment-anything once and define the classes that subclass theirs."""
    import torch

    from dtwin_agent._compat import torchvision_for_import

    with torchvision_for_import():
        from segment_anything import SamAutomaticMaskGenerator, SamPredictor
        from segment_anything.utils.amg import (
            MaskData,
            batched_mask_to_box,
            calculate_stability_score,
            is_box_near_crop_edge,
            mask_to_rle_pytorch,
            uncrop_masks,
        )

    class KeepingPredictor(SamPredictor):
        """A ``SamPredictor`` that remembers the last image embedding so it can be restored.

        ``SamAutomaticMaskGenerator`` resets the predictor after each crop; :meth:`restore` brings
        the embedding back for the re-prompting stage without a second encoder pass.
        """

        point_decoder: PointDecoder | None = None  # set for the fast decoder

        def set_torch_image(self, transformed_image: Any, original_image_size: tuple[int, ...]) -> None:
            super().set_torch_image(transformed_image, original_image_size)
            self.kept = (self.features, self.original_size, self.input_size)
            if self.point_decoder is not None:
                self.point_decoder.set_image(self.features)
                self._set_visible()

        def _set_visible(self) -> None:
            grid = tuple(self.features.shape[-2:])
            self.visible = visible_tokens(self.model.image_encoder.img_size, self.input_size, grid)

        def restore(self) -> None:
            """Bring back the kept embedding: the point decoder's copy and the tokens the crop reads too.

            ``kept`` may come from another predictor of the same model (benchmarks share one
            everything-mode run); the point decoder skips an embedding it holds already.
            """
            if getattr(self, "kept", None) is None:
                raise RuntimeError("no image embedding to restore")
            self.features, self.original_size, self.input_size = self.kept
            self.is_image_set = True
            if self.point_decoder is not None:
                self.point_decoder.set_image(self.features)
                self._set_visible()

        def release(self) -> None:
            self.reset_image()
            self.kept = None
            if self.point_decoder is not None:
                self.point_decoder.reset()

        def decode_points(
            self, coords: Any, multimask_output: bool = True, min_iou: float | None = None
        ) -> tuple[Any, Any, Any]:
            """Decode ``B x 2`` point prompts (model coordinates) on the image set.

            Returns ``(low_res, iou_pred, keep)``: the ``K x h x w`` low-resolution logits of the
            masks whose predicted IoU is above ``min_iou`` (all when None), prompt-major, and the
            ``B x M`` predicted IoUs and ``keep`` flags of all masks. The fast decoder returns the
            top-left part of the logits that :meth:`upscale` reads (``visible_tokens``).
            """
            model = self.model
            labels = torch.ones((coords.shape[0], 1), dtype=torch.int, device=coords.device)
            sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
            if self.point_decoder is not None:  # only the tokens whose logits the crop reads
                return self.point_decoder.decode(sparse, multimask_output, min_iou, self.visible)
            low_res, iou_pred = model.mask_decoder(
                image_embeddings=self.features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            keep = torch.ones_like(iou_pred, dtype=torch.bool) if min_iou is None else iou_pred > min_iou
            return low_res.flatten(0, 1)[keep.flatten()], iou_pred, keep

        def upscale(self, low_res: Any) -> Any:
            """``K x h x w`` low-resolution logits -> ``K x H x W`` logits at the image size.

            ``h x w``: the decoder's whole low-resolution output (exact decoder) or the part of
            it :meth:`decode_points` returns (fast decoder).

            Exact decoder: SAM's ``postprocess_masks`` (bilinear to the model input, crop, bilinear
            to the image). Fast decoder: both passes as one banded linear map per axis
            (:func:`~dtwin_agent.perception.decoder.resize_logits`).
            """
            if getattr(self, "kept", None) is None:
                raise RuntimeError("no image embedding: set an image first")
            if low_res.shape[0] == 0:
                return low_res.new_zeros((0, *self.original_size))
            if self.point_decoder is None:
                return self.model.postprocess_masks(low_res[:, None], self.input_size, self.original_size)[
                    :, 0
                ]
            grid = self.kept[0].shape[-2:]
            return resize_logits(
                low_res,
                self.model.image_encoder.img_size,
                self.input_size,
                self.original_size,
                low_size=(LOGITS_PER_TOKEN * grid[0], LOGITS_PER_TOKEN * grid[1]),
            )

    class Generator(SamAutomaticMaskGenerator):
        """``SamAutomaticMaskGenerator`` with OOM batch halving and cheaper batches.

        Each batch computes what the parent's ``_process_batch`` computes, in the same order, with
        the same operations, except that low-resolution masks failing the predicted-IoU filter are
        dropped *before* being upsampled to the image size (the filter reads only the predicted
        IoU, and upsampling is per mask, so the kept masks are bit-identical).
        """

        def __init__(self, model: Any, *, point_decoder: PointDecoder | None = None, **kwargs: Any) -> None:
            super().__init__(model, **kwargs)
            self.predictor = KeepingPredictor(model)
            self.predictor.point_decoder = point_decoder
            self.batch_size = self.points_per_batch
            self.on_batch: Callable[[int], None] | None = None  # called with the prompts of each batch

        def _process_batch(
            self,
            points: np.ndarray,
            im_size: tuple[int, ...],
            crop_box: list[int],
            orig_size: tuple[int, ...],
        ) -> Any:
            parts = []
            start = 0
            while start < len(points):
                size = min(self.batch_size, len(points) - start)
                try:
                    parts.append(self._decode(points[start : start + size], im_size, crop_box, orig_size))
                except torch.cuda.OutOfMemoryError:
                    if size <= 1:
                        raise
                    self.batch_size = max(1, size // 2)  # halve, retry this batch, keep the new size
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                start += size
                if self.on_batch is not None:
                    self.on_batch(size)
            if len(parts) == 1:
                return parts[0]
            data = MaskData()
            for part in parts:  # same order as one big batch
                data.cat(part)
            return data

        def _decode(
            self,
            points: np.ndarray,
            im_size: tuple[int, ...],
            crop_box: list[int],
            orig_size: tuple[int, ...],
        ) -> Any:
            orig_h, orig_w = orig_size
            predictor = self.predictor
            model = predictor.model
            transformed_points = predictor.transform.apply_coords(points, im_size)
            in_points = torch.as_tensor(transformed_points, device=predictor.device)
            min_iou = self.pred_iou_thresh if self.pred_iou_thresh > 0.0 else None
            low_res, iou_preds, keep = predictor.decode_points(
                in_points, multimask_output=True, min_iou=min_iou
            )
            keep = keep.flatten()
            iou_preds = iou_preds.flatten(0, 1)[keep]
            point_rows = torch.as_tensor(points.repeat(len(keep) // len(points), axis=0))[keep.cpu()]
            masks = predictor.upscale(low_res)
            data = MaskData(masks=masks, iou_preds=iou_preds, points=point_rows)
            del masks, low_res
            # From here on, exactly SamAutomaticMaskGenerator._process_batch.
            data["stability_score"] = calculate_stability_score(
                data["masks"], model.mask_threshold, self.stability_score_offset
            )
            if self.stability_score_thresh > 0.0:
                data.filter(data["stability_score"] >= self.stability_score_thresh)
            data["masks"] = data["masks"] > model.mask_threshold
            data["boxes"] = batched_mask_to_box(data["masks"])
            keep_mask = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
            if not torch.all(keep_mask):
                data.filter(keep_mask)
            data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
            data["rles"] = mask_to_rle_pytorch(data["masks"])
            del data["masks"]
            return data

    return types.SimpleNamespace(
        torch=torch,
        KeepingPredictor=KeepingPredictor,
        Generator=Generator,
        calculate_stability_score=calculate_stability_score,
    )


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; other values pass through.

    Raises:
        ConfigError: when CUDA is asked for and not available.
    """
    torch = _backend().torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"perception.device is {device!r} but CUDA is not available; use 'cpu' or 'auto'")
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"invalid perception.device {device!r}: {exc}") from exc
    return device


def _registry_builder(model_type: str) -> SamBuilder:
    if model_type == "vit_t":
        from dtwin_agent._compat import mobile_sam_for_import

        try:
            with mobile_sam_for_import():  # timm + torchvision stand-ins, only while importing
                from mobile_sam import sam_model_registry as mobile_registry
        except ImportError as exc:
            raise ConfigError(
                f"sam_model_type 'vit_t' (MobileSAM) needs the mobile_sam package: {MOBILE_SAM_HINT} ({exc})"
            ) from exc
        return mobile_registry["vit_t"]
    from segment_anything import sam_model_registry

    if model_type not in sam_model_registry:
        raise ConfigError(
            f"unknown perception.sam_model_type {model_type!r}; known: vit_h, vit_l, vit_b, vit_t"
        )
    return sam_model_registry[model_type]


def load_sam(
    model_type: str, checkpoint: str | os.PathLike | None, *, builder: SamBuilder | None = None
) -> Any:
    """Build a SAM model of ``model_type`` and load ``checkpoint`` into it.

    Args:
        model_type: ``vit_h``, ``vit_l``, ``vit_b`` (segment-anything) or ``vit_t`` (MobileSAM,
            from the optional ``mobile_sam`` package).
        checkpoint: path of the weights file (a ``state_dict`` saved with ``torch.save``; loaded
            with ``torch.load``'s default ``weights_only=True``).
        builder: replaces the registry entry: a callable ``checkpoint path -> Sam`` (tests use a
            tiny architecture).

    Returns:
        The model, in eval mode, on the CPU.

    Raises:
        ConfigError: if the checkpoint is not set, missing, unreadable or does not fit the model,
            or ``vit_t`` is asked for without ``mobile_sam`` installed.
    """
    _backend()
    if checkpoint is None or str(checkpoint) == "":
        raise ConfigError(
            "perception.sam_checkpoint is not set: give a model-store name (mobile_sam, sam_vit_h, "
            "sam_vit_l, sam_vit_b: `dtwin models list`) or the path of a SAM checkpoint file, or use "
            "perception.proposer = 'auto' (MobileSAM once fetched) or 'offline'"
        )
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise ConfigError(f"perception.sam_checkpoint {path!r} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"perception.sam_checkpoint {path!r} is not readable")
    build = builder or _registry_builder(model_type)
    try:
        model = build(path)
    except ConfigError:
        raise
    except Exception as exc:  # unpickling, truncated files, state_dict mismatches
        raise ConfigError(
            f"cannot load SAM checkpoint {path!r} as {model_type}: {type(exc).__name__}: {exc}"
        ) from exc
    model.eval()
    return model


class SamProposer:
    """Mask proposals from segment-anything: everything mode + the paper's granularity policy.

    Build it from settings (the checkpoint is loaded at construction) or from a ready ``Sam``
    model. Registered as ``"sam"`` in :mod:`dtwin_agent.perception`.

    ``perception.decoder`` picks how prompts are decoded: ``"fast"`` runs
    :class:`~dtwin_agent.perception.decoder.PointDecoder` (per-image work done once, low-rank
    attention; fp32 by default, bf16 products with ``perception.precision``), the default: with
    fp32 every ``SamAutomaticMaskGenerator`` mask has one of ours at IoU >= 0.98
    (``benchmarks/everything_speed.py``); ``"exact"`` runs segment-anything's own ``MaskDecoder``,
    so that ``policy = "sam_only"`` returns exactly ``SamAutomaticMaskGenerator``'s masks and
    scores.

    Args:
        settings: the run settings (``settings.perception`` is read); defaults to ``Settings()``.
        model: an already built ``segment_anything.modeling.Sam`` (or MobileSAM) model; the
            checkpoint settings are then ignored. With ``device = "auto"`` it stays on its device;
            an explicit device moves it there.
        builder: a ``checkpoint path -> Sam`` callable replacing the model registry.

    Raises:
        ConfigError: for a missing or unusable checkpoint, an unknown model type or device, or
            ``precision = "bf16"`` on a CPU without native bf16.
    """

    name = "sam"

    def __init__(
        self, settings: Settings | None = None, *, model: Any = None, builder: SamBuilder | None = None
    ):
        self.settings = settings or Settings()
        backend = _backend()
        self._torch = backend.torch
        self._stability = backend.calculate_stability_score
        p = self.settings.perception
        model_name = "MobileSAM vit_t" if p.sam_model_type == "vit_t" else p.sam_model_type
        if model is None:
            device = resolve_device(p.device)
            model = load_sam(p.sam_model_type, p.sam_checkpoint, builder=builder).to(device)
        elif p.device != "auto":
            model = model.to(resolve_device(p.device))
        model.eval()
        self.model = model
        self.device_type = next(model.parameters()).device.type  # fixes precision, batch, heap policy
        on_cuda = self.device_type == "cuda"
        self.precision = resolve_precision(p.precision, on_cuda) if p.decoder == "fast" else "fp32"
        point_decoder = PointDecoder(model, self.precision) if p.decoder == "fast" else None
        self.generator = backend.Generator(
            model,
            point_decoder=point_decoder,
            points_per_side=p.points_per_side,
            points_per_batch=resolve_batch_size(p.points_per_batch, on_cuda),
            pred_iou_thresh=p.pred_iou_thresh,
            stability_score_thresh=p.stability_score_thresh,
            box_nms_thresh=p.box_nms_thresh,
            min_mask_region_area=p.min_mask_region_area,
            output_mode="binary_mask",
        )
        self.predictor = self.generator.predictor
        self.prompts = resolve_prompts(p.prompts, on_cuda, p.policy)
        prompts = ", object-aware prompts" if self.prompts == "objects" else ""  # said in components
        self.name = f"sam ({model_name}{prompts})"
        self._seeder: Any = None  # the offline proposer, for object-aware prompts

    @property
    def batch_size(self) -> int:
        """Prompts per decoder call now (``points_per_batch``, halved after each CUDA OOM)."""
        return self.generator.batch_size

    def propose(
        self, image: np.ndarray, granularity: TwinLevel, *, on_progress: ProgressCallback | None = None
    ) -> list[Proposal]:
        """Mask proposals for an ``H x W x 3`` uint8 RGB image at ``granularity``.

        Args:
            image: the image.
            granularity: ``part``, ``object`` or ``group``.
            on_progress: called after every decoder batch with ``(done, total)`` prompts decoded
                so far and prompts to decode; ``total`` grows once, when the object / group
                re-prompts are known.

        Returns:
            Proposals with boolean ``H x W`` masks. ``sam_only``: the generator's order (its NMS
            order, best predicted IoU first). ``part``: that order, deduplicated. ``object`` /
            ``group``: largest mask first; ``point`` is the prompt of the mask kept.
            ``hierarchy``: the object-level proposals, then the part-level ones with ``parent``
            set (:func:`~dtwin_agent.perception.policy.assemble_hierarchy`), from one
            everything-mode pass.

        Raises:
            ValueError: for a malformed image or an unknown granularity.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"image must be an H x W x 3 uint8 array, got shape {image.shape} dtype {image.dtype}"
            )
        if granularity not in TWIN_LEVELS:
            raise ValueError(f"granularity must be one of {', '.join(TWIN_LEVELS)}, got {granularity!r}")
        p = self.settings.perception
        image = np.ascontiguousarray(image)
        grid = self.generator.point_grids
        if self.prompts == "objects":
            self.generator.point_grids = [self._seeded_points(image)]
        progress = _Progress(on_progress, len(self.generator.point_grids[0]))
        self.generator.on_batch = progress.advance
        with reuse_freed_memory(p.reuse_memory and self.device_type == "cpu"):  # same masks, fewer faults
            try:
                records = self.generator.generate(image)  # the one image-encoder pass
                proposals = [
                    Proposal(
                        mask=np.asarray(r["segmentation"], dtype=bool),
                        predicted_iou=float(r["predicted_iou"]),
                        stability=float(r["stability_score"]),
                        point=(float(r["point_coords"][0][0]), float(r["point_coords"][0][1])),
                    )
                    for r in records
                ]
                if p.policy == "sam_only":
                    return proposals
                proposals = filter_by_predicted_iou(proposals, p.pred_iou_thresh)
                if granularity == "part":
                    return part_dedup(proposals, p.part_iou_thresh)
                objects = self._object_level(proposals, progress, keep_groups=granularity == "group")
                if granularity == "hierarchy":
                    parts = part_dedup(proposals, p.part_iou_thresh)
                    return assemble_hierarchy(
                        objects, parts, tau=p.part_iou_thresh, tau_prime=p.containment_thresh
                    )
                return objects
            finally:
                self.generator.point_grids = grid
                self.generator.on_batch = None
                self.predictor.release()

    def _seeded_points(self, image: np.ndarray) -> np.ndarray:
        """Object-aware prompts (``prompts = "objects"``): offline part-level regions + a coarse grid."""
        if self._seeder is None:
            from dtwin_agent.perception.offline import OfflineProposer

            self._seeder = OfflineProposer(self.settings)
        seeds = [prop.point for prop in self._seeder.propose(image, "part")]
        return seeded_points(seeds, image.shape[:2], self.settings.perception.prompt_coarse_side)

    def _object_level(
        self, proposals: list[Proposal], progress: _Progress, *, keep_groups: bool
    ) -> list[Proposal]:
        """Centroid re-prompts (Eq. 2), plausible growth (:func:`choose_growth`), groups, then Eq. 3.

        ``keep_groups``: group level keeps the masks :func:`find_groups` marks (object level drops
        them); at neither level do they act as Eq. 3 containers.
        """
        if not proposals:
            return []
        p = self.settings.perception
        self.predictor.restore()
        points = np.asarray([centroid_prompt_point(prop.mask) for prop in proposals], dtype=float)
        progress.grow(len(points))
        candidates = self._multimask(points, progress)
        choice = choose_growth(
            [prop.mask for prop in proposals],
            [[c.mask for c in group] for group in candidates],
            [[c.predicted_iou for c in group] for group in candidates],
            theta=p.pred_iou_thresh,
            cover=p.growth_cover,
            tau_prime=p.containment_thresh,
            border_max=p.growth_border_max,
            full_frame=FULL_FRAME,
        )
        grown = [
            prop if k is None else group[k]
            for prop, group, k in zip(proposals, candidates, choice, strict=True)
        ]
        masks = [prop.mask for prop in grown]
        groups = find_groups(
            masks,
            [prop.predicted_iou for prop in grown],
            tau=p.part_iou_thresh,
            tau_prime=p.containment_thresh,
            union_cover=p.union_cover,
        )
        keep = containment_filter(
            masks,
            p.containment_thresh,
            containers=[not group for group in groups],
            scene_share=p.scene_share,
        )
        return [grown[i] for i in keep if keep_groups or not groups[i]]

    def _multimask(self, points: np.ndarray, progress: _Progress) -> list[list[Proposal]]:
        """Prompt SAM with each point in multi-mask mode: the three masks of every point.

        Same as ``predictor.predict(point_coords=[pt], point_labels=[1], multimask_output=True)``
        per point, batched (``batch_size`` prompts per decoder call, halved on CUDA OOM) on the
        embedding already set.
        """
        torch = self._torch
        out: list[list[Proposal]] = []
        start = 0
        with torch.no_grad():
            while start < len(points):
                size = min(self.generator.batch_size, len(points) - start)
                chunk = points[start : start + size]
                try:
                    out.extend(self._decode_points(chunk))
                except torch.cuda.OutOfMemoryError:
                    if size <= 1:
                        raise
                    self.generator.batch_size = max(1, size // 2)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                start += size
                progress.advance(size)
        return out

    def _decode_points(self, chunk: np.ndarray) -> list[list[Proposal]]:
        """The multi-mask masks of each point that pass theta (the others could not be chosen)."""
        torch = self._torch
        predictor = self.predictor
        coords = predictor.transform.apply_coords(chunk, predictor.original_size)
        coords_t = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)
        theta = self.settings.perception.pred_iou_thresh
        low_res, ious, keep = predictor.decode_points(coords_t, multimask_output=True, min_iou=theta)
        logits = predictor.upscale(low_res)
        threshold = self.model.mask_threshold
        stability = self._stability(logits, threshold, self.generator.stability_score_offset)
        binary = (logits > threshold).cpu().numpy()
        stability = stability.float().cpu().numpy()
        ious, keep = ious.float().cpu().numpy(), keep.cpu().numpy()
        out: list[list[Proposal]] = []
        row = 0
        for i in range(len(chunk)):
            group = []
            for k in np.flatnonzero(keep[i]):
                point = (float(chunk[i, 0]), float(chunk[i, 1]))
                group.append(
                    Proposal(
                        mask=binary[row],
                        predicted_iou=float(ious[i, k]),
                        stability=float(stability[row]),
                        point=point,
                    )
                )
                row += 1
            out.append(group)
        return out


class _Progress:
    """Counts decoded prompts for an ``on_progress(done, total)`` callback."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback, self.done, self.total = callback, 0, total

    def grow(self, more: int) -> None:
        self.total += more

    def advance(self, prompts: int) -> None:
        self.done += prompts
        if self.callback is not None:
            self.callback(self.done, self.total)


def resolve_precision(precision: str, on_cuda: bool) -> str:
    """``auto`` -> ``bf16`` on a CPU with native bf16 products, else ``fp32``.

    Raises:
        ConfigError: for ``bf16`` on a CPU without native bf16 (it would be slower, not faster).
    """
    if precision == "auto":
        return "bf16" if not on_cuda and native_bf16() else "fp32"
    if precision == "bf16" and not on_cuda and not native_bf16():
        raise ConfigError(
            "perception.precision 'bf16' needs a CPU with AMX or AVX512-BF16; use 'auto' or 'fp32'"
        )
    return precision


def resolve_batch_size(points_per_batch: int | str, on_cuda: bool) -> int:
    """``auto`` -> :data:`CUDA_BATCH` prompts per decoder call on CUDA, :data:`CPU_BATCH` on a CPU."""
    if points_per_batch == "auto":
        return CUDA_BATCH if on_cuda else CPU_BATCH
    return int(points_per_batch)


@register_proposer("sam")
def _make_sam_proposer(settings: Settings) -> SamProposer:
    return SamProposer(settings)

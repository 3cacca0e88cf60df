"""The offline mask proposer: graph segmentation plus colour region merging, no weights (paper 3.1).

The embedded default when no SAM checkpoint is configured (``perception.proposer = "auto"``). It
plays the role of SAM's "everything" mode in paper 3.1: it turns an image into a set of masks
``{m_i}``, here a *partition* of the image into colour-homogeneous regions.

Algorithm:

1. **Working copy.** The image is downscaled (area interpolation) so that its longer side is at
   most ``work_side`` (640 px by default); masks are mapped back with nearest-neighbour sampling.
2. **Over-segmentation.** Felzenszwalb-Huttenlocher graph segmentation (``skimage``) with a
   small scale gives a few hundred to a few thousand connected fragments whose edges follow
   colour edges exactly.
3. **Region adjacency graph (RAG).** Nodes are fragments with their pixel count and the sum and
   sum of squares of their CIE Lab colour; edges join 4-connected fragments and carry the length
   of their shared boundary.
4. **Merging**, always joining the two adjacent regions of least cost (a heap, with union of
   statistics), in three phases:

   a. *colour*: merge while the CIE76 distance between mean Lab colours is below ``delta_e``;
   b. *small*: every region under ``min_region_pct`` % of the image, or thinner than about 3 px
      (shared boundary > 0.7 x pixel count), joins its most similar neighbour (absorbs
      anti-aliased edge rings, noise specks and texture crumbs);
   c. *budget*: while more than ``max_regions`` remain, merge the pair of least Ward cost
      ``n_a n_b / (n_a + n_b) * |mu_a - mu_b|^2`` (small, similar regions go first).

5. **Boundary refinement.** Twice, every pixel on a region edge moves to the adjacent region
   whose mean colour is closest to its (3 x 3 median) colour; this puts blended edges where they
   belong and undoes blockiness.
6. **Proposals.** Each final region is one :class:`~dtwin_agent.perception.base.Proposal`,
   dropped when under ``perception.min_area_pct`` % of the image.

Granularity (paper Eq. 1) selects the merging parameters (:data:`LEVELS`):

======== ========= ================ ===========
level    delta_e   min_region_pct   max_regions
======== ========= ================ ===========
part     7         0.1              80
object   13        0.25             50
group    18        0.5              25
======== ========= ================ ===========

so ``part`` keeps regions that differ by small colour steps (the two tones of a shirt), and
``group`` merges similar-coloured neighbours into one region. The levels are nested in practice but
not guaranteed to be, since each runs its own merge.

The background: the region that covers most of the image border (a wall, the sky, a table, the
plain backdrop of a synthetic scene) is a real region and is **kept** as an object like any other.
Queries can name it ("the wall behind the man"), and the spatial layer relates objects to it
("inside 1"). It gets the largest area, so :func:`~dtwin_agent.graph.nodes.propose.proposals_to_records`
numbers it first when it is the largest region.

Scores (SAM's fields, filled with analogues):

* ``predicted_iou`` = ``homogeneity x separation`` with ``homogeneity = exp(-s / 40)`` (``s``: RMS
  Lab standard deviation inside the region) and ``separation = 1 - exp(-c / 10)`` (``c``: mean
  Lab distance to the adjacent regions, weighted by shared boundary length; 1 without neighbours).
  A flat object on a contrasting background scores about 0.98; a textured or low-contrast one less.
* ``stability`` = ``min(1, c_min / (2 delta_e))`` with ``c_min`` the distance to the most similar
  neighbour: how far the colour threshold could grow before the region would be merged away.
* ``point`` = the pixel farthest from the region's edge (pole of inaccessibility), which lies inside
  the region even for concave shapes: the analogue of SAM's prompt point ``c_i``.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dtwin_agent.config import Settings
from dtwin_agent.perception import register_proposer
from dtwin_agent.perception.base import ProgressCallback, Proposal
from dtwin_agent.perception.policy import assemble_hierarchy
from dtwin_agent.twin import GRANULARITIES, Granularity, TwinLevel

__all__ = ["LEVELS", "MergeLevel", "OfflineProposer", "build_offline_proposer"]


@dataclass(frozen=True)
class MergeLevel:
    """Merging parameters of one granularity level.

    Attributes:
        delta_e: colour phase: merge adjacent regions whose mean Lab colours are closer than this.
        min_region_pct: small phase: regions under this % of the image join their nearest neighbour.
        max_regions: budget phase: merge (by Ward cost) until at most this many regions remain.

    """

    delta_e: float
    min_region_pct: float
    max_regions: int


LEVELS: dict[str, MergeLevel] = {
    "part": MergeLevel(delta_e=7.0, min_region_pct=0.1, max_regions=80),
    "object": MergeLevel(delta_e=13.0, min_region_pct=0.25, max_regions=50),
    "group": MergeLevel(delta_e=18.0, min_region_pct=0.5, max_regions=25),
}


class _RegionGraph:
    """Region adjacency graph with union-find merging of colour statistics (plain Python floats)."""

    def __init__(self, labels: np.ndarray, lab: np.ndarray) -> None:
        n = int(labels.max()) + 1
        flat = labels.ravel()
        pixels = lab.reshape(-1, 3).astype(np.float64)
        self.count: list[float] = np.bincount(flat, minlength=n).astype(np.float64).tolist()
        sums = np.stack([np.bincount(flat, weights=pixels[:, c], minlength=n) for c in range(3)], axis=1)
        sqs = np.stack([np.bincount(flat, weights=pixels[:, c] ** 2, minlength=n) for c in range(3)], axis=1)
        self.sum: list[list[float]] = sums.tolist()
        self.sq: list[list[float]] = sqs.tolist()
        self.parent = list(range(n))
        self.n_alive = n
        self.neighbours: list[dict[int, int]] = [{} for _ in range(n)]
        self._pushed_mean: list[tuple[float, float, float]] = [self.mean(i) for i in range(n)]
        a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
        b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
        keep = a != b
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        keys, lengths = np.unique(lo.astype(np.int64) * n + hi, return_counts=True)
        for key, length in zip(keys.tolist(), lengths.tolist(), strict=True):
            i, j = divmod(key, n)
            self.neighbours[i][j] = length
            self.neighbours[j][i] = length
        self.boundary: list[float] = [float(sum(nb.values())) for nb in self.neighbours]

    @property
    def alive(self) -> list[int]:
        """Ids of the regions that remain, ascending."""
        return [i for i, p in enumerate(self.parent) if p == i]

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def mean(self, i: int) -> tuple[float, float, float]:
        n, s = self.count[i], self.sum[i]
        return s[0] / n, s[1] / n, s[2] / n

    def colour_distance(self, i: int, j: int) -> float:
        ni, nj, si, sj = self.count[i], self.count[j], self.sum[i], self.sum[j]
        return math.sqrt(
            (si[0] / ni - sj[0] / nj) ** 2 + (si[1] / ni - sj[1] / nj) ** 2 + (si[2] / ni - sj[2] / nj) ** 2
        )

    def merge(self, keep: int, gone: int) -> list[int]:
        """Merge ``gone`` into ``keep``; returns the neighbours ``keep`` inherited from ``gone``."""
        self.count[keep] += self.count[gone]
        for c in range(3):
            self.sum[keep][c] += self.sum[gone][c]
            self.sq[keep][c] += self.sq[gone][c]
        self.parent[gone] = keep
        self.n_alive -= 1
        mine = self.neighbours[keep]
        self.boundary[keep] += self.boundary[gone] - 2 * mine.get(gone, 0)
        inherited = []
        for other, length in self.neighbours[gone].items():
            if other == keep:
                continue
            if other not in mine:
                inherited.append(other)
            mine[other] = mine.get(other, 0) + length
            theirs = self.neighbours[other]
            theirs.pop(gone, None)
            theirs[keep] = theirs.get(keep, 0) + length
        mine.pop(gone, None)
        self.neighbours[gone] = {}
        return inherited

    def run(self, cost: Callable[[int, int], float | None], *, max_regions: int | None = None) -> None:
        """Merge least-cost adjacent pairs; ``cost(i, j)`` returns None for pairs that must not merge.

        Stops when no allowed pair is left or, with ``max_regions``, when that few regions remain.
        Heap entries are re-evaluated lazily when popped (costs change as regions grow); a region
        re-offers all its edges only when its mean colour has moved by more than 0.5 Delta E since
        it last did, so a large region absorbing many crumbs stays cheap.
        """
        heap: list[tuple[float, int, int]] = []

        def offer(i: int, others: list[int] | dict[int, int]) -> None:
            for j in others:
                c = cost(i, j)
                if c is not None:
                    heapq.heappush(heap, (c, i, j))

        for i in self.alive:
            for j in self.neighbours[i]:
                if i < j:
                    c = cost(i, j)
                    if c is not None:
                        heap.append((c, i, j))
        heapq.heapify(heap)
        while heap:
            if max_regions is not None and self.n_alive <= max_regions:
                return
            c_old, i, j = heapq.heappop(heap)
            i, j = self.find(i), self.find(j)
            if i == j:
                continue
            c = cost(i, j)
            if c is None:
                continue
            if c > c_old + 1e-9:
                heapq.heappush(heap, (c, i, j))  # stale: costlier now, try again later
                continue
            keep, gone = (i, j) if self.count[i] >= self.count[j] else (j, i)
            inherited = self.merge(keep, gone)
            now, then = self.mean(keep), self._pushed_mean[keep]
            if (now[0] - then[0]) ** 2 + (now[1] - then[1]) ** 2 + (now[2] - then[2]) ** 2 > 0.25:
                self._pushed_mean[keep] = now
                offer(keep, self.neighbours[keep])
            else:
                offer(keep, inherited)

    def roots(self) -> np.ndarray:
        """Map every fragment to the id of the region it ended up in."""
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)


class OfflineProposer:
    """Weight-free mask proposer: Felzenszwalb fragments merged on a colour RAG.

    Args:
        settings: run settings (``perception.min_area_pct`` and ``perception.max_objects`` are used).
        work_side: longer side of the working copy the segmentation runs on.
        levels: merging parameters per granularity (default :data:`LEVELS`).
        scale: Felzenszwalb scale (larger: fewer, bigger fragments).
        sigma: Felzenszwalb Gaussian pre-smoothing.
        refine_iterations: passes of boundary refinement (0 to switch it off).

    Attributes:
        name: registry name, ``"offline"``.
        last_timings: seconds spent per internal stage of the latest :meth:`propose` call
            (``oversegment``, ``merge``, ``masks``), for benchmarks.

    """

    name = "offline"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        work_side: int = 640,
        levels: dict[str, MergeLevel] | None = None,
        scale: float = 60.0,
        sigma: float = 0.8,
        refine_iterations: int = 2,
    ) -> None:
        self.settings = settings or Settings()
        if work_side < 16:
            raise ValueError(f"work_side must be at least 16, got {work_side}")
        self.work_side = int(work_side)
        self.levels = dict(LEVELS if levels is None else levels)
        self.scale = float(scale)
        self.sigma = float(sigma)
        self.refine_iterations = int(refine_iterations)
        self.last_timings: dict[str, float] = {}

    def segment(self, image: np.ndarray, granularity: Granularity = "object") -> np.ndarray:
        """Partition the image: an ``H x W`` int32 label image with labels ``0..R-1``.

        Raises:
            ValueError: for a malformed image or an unknown granularity.

        """
        import cv2
        from skimage.segmentation import felzenszwalb

        rgb = _check_image(image)
        if granularity not in self.levels:
            raise ValueError(
                f"unknown granularity {granularity!r}; expected one of {', '.join(GRANULARITIES)}"
            )
        level = self.levels[granularity]
        height, width = rgb.shape[:2]
        t0 = time.perf_counter()
        scale = min(1.0, self.work_side / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        else:
            small = rgb
        area = small.shape[0] * small.shape[1]
        min_size = max(4, int(area * 5e-5))
        fragments = felzenszwalb(small, scale=self.scale, sigma=self.sigma, min_size=min_size).astype(
            np.int32
        )
        t1 = time.perf_counter()
        lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        graph = _RegionGraph(fragments, lab)
        threshold = level.delta_e

        def colour_cost(i: int, j: int) -> float | None:
            d = graph.colour_distance(i, j)
            return d if d < threshold else None

        min_px = max(level.min_region_pct, self.settings.perception.min_area_pct) / 100.0 * area

        def small(i: int) -> bool:
            # under the size floor, or a sliver (anti-aliased edge rings): mostly boundary pixels
            return graph.count[i] < min_px or graph.boundary[i] > 0.7 * graph.count[i]

        def small_cost(i: int, j: int) -> float | None:
            if not (small(i) or small(j)):
                return None
            return graph.colour_distance(i, j)

        def ward_cost(i: int, j: int) -> float:
            ni, nj = graph.count[i], graph.count[j]
            return ni * nj / (ni + nj) * graph.colour_distance(i, j) ** 2

        graph.run(colour_cost)
        graph.run(small_cost)
        cap = min(level.max_regions, self.settings.perception.max_objects)
        graph.run(ward_cost, max_regions=cap)
        roots = graph.roots()
        alive = np.asarray(graph.alive, dtype=np.int64)
        relabel = np.zeros(len(graph.parent), dtype=np.int32)
        relabel[alive] = np.arange(alive.size, dtype=np.int32)
        labels = relabel[roots][fragments]
        means = np.array([graph.mean(int(i)) for i in alive], dtype=np.float32).reshape(-1, 3)
        labels = _refine_boundaries(labels, lab, means, self.refine_iterations)
        self._graph, self._alive = graph, alive  # scores for propose()
        t2 = time.perf_counter()
        if labels.shape != (height, width):
            labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
        self.last_timings = {"oversegment": t1 - t0, "merge": t2 - t1}
        return labels

    def propose(
        self, image: np.ndarray, granularity: TwinLevel, *, on_progress: ProgressCallback | None = None
    ) -> list[Proposal]:
        """Return one proposal per region of the partition (masks at the input size).

        Regions under ``perception.min_area_pct`` % of the image are dropped; the background
        region is kept (see the module docstring). ``on_progress(done, total)`` is called once per
        level segmented and at the end.

        ``hierarchy``: the object-level regions, then the part-level regions with ``parent`` set
        (:func:`~dtwin_agent.perception.policy.assemble_hierarchy`; the two levels are separate
        merges, so a part is given the object region that holds most of it).

        Raises:
            ValueError: for a malformed image or an unknown granularity.

        """
        if granularity == "hierarchy":
            p = self.settings.perception
            objects = self._regions(image, "object")
            if on_progress is not None:
                on_progress(1, 3)
            parts = self._regions(image, "part")
            if on_progress is not None:
                on_progress(2, 3)
            out = assemble_hierarchy(objects, parts, tau=p.part_iou_thresh, tau_prime=p.containment_thresh)
            if on_progress is not None:
                on_progress(3, 3)
            return out
        proposals = self._regions(image, granularity)
        if on_progress is not None:
            on_progress(1, 1)
        return proposals

    def _regions(self, image: np.ndarray, granularity: Granularity) -> list[Proposal]:
        """One proposal per region of the partition at ``granularity``."""
        import cv2
        from scipy import ndimage

        labels = self.segment(image, granularity)
        t0 = time.perf_counter()
        graph, alive = self._graph, self._alive
        threshold = self.levels[granularity].delta_e
        total = labels.size
        min_px = self.settings.perception.min_area_pct / 100.0 * total
        boxes = ndimage.find_objects(labels + 1)
        proposals: list[Proposal] = []
        for region, node in enumerate(alive.tolist()):
            box = boxes[region] if region < len(boxes) else None
            if box is None:
                continue
            crop = labels[box] == region
            pixels = int(crop.sum())
            if pixels == 0 or pixels < min_px:
                continue
            mask = np.zeros(labels.shape, dtype=bool)
            mask[box] = crop
            # pole of inaccessibility: the pixel farthest from the region edge
            dist = cv2.distanceTransform(np.pad(crop, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
            py, px = np.unravel_index(int(np.argmax(dist)), dist.shape)
            point = (float(px + box[1].start), float(py + box[0].start))
            predicted_iou, stability = _scores(graph, node, threshold)
            proposals.append(
                Proposal(mask=mask, predicted_iou=predicted_iou, stability=stability, point=point)
            )
        self.last_timings["masks"] = time.perf_counter() - t0
        return proposals


def _refine_boundaries(labels: np.ndarray, lab: np.ndarray, means: np.ndarray, iterations: int) -> np.ndarray:
    """Move each boundary pixel to the adjacent region whose mean colour is closest to it.

    A 3 x 3 median of the Lab image is compared with the region means, so noise does not fray the
    edges; blended (anti-aliased) edge pixels go to the side they resemble most, which puts the
    edge where a pixel-centre coverage rule would. Only labels of the pixel and its 4 neighbours
    are candidates, so regions cannot jump.
    """
    import cv2

    if iterations <= 0 or len(means) < 2 or min(labels.shape) < 2:
        return labels
    smooth = cv2.medianBlur(np.ascontiguousarray(lab, dtype=np.float32), 3)
    height, width = labels.shape
    for _ in range(iterations):
        padded = np.pad(labels, 1, mode="edge")
        candidates = np.stack(
            [
                labels,
                padded[:-2, 1:-1],
                padded[2:, 1:-1],
                padded[1:-1, :-2],
                padded[1:-1, 2:],
            ]
        )
        boundary = (candidates != labels).any(axis=0)
        if not boundary.any():
            break
        ys, xs = np.nonzero(boundary)
        cand = candidates[:, ys, xs]  # 5 x P
        pixels = smooth[ys, xs]  # P x 3
        dist = ((means[cand] - pixels[None, :, :]) ** 2).sum(axis=2)  # 5 x P
        best = cand[np.argmin(dist, axis=0), np.arange(ys.size)]
        if np.array_equal(best, labels[ys, xs]):
            break
        labels = labels.copy()
        labels[ys, xs] = best
    del height, width
    return labels


def _scores(graph: _RegionGraph, node: int, threshold: float) -> tuple[float, float]:
    """``(predicted_iou, stability)`` analogues of a final region (see the module docstring)."""
    n = graph.count[node]
    var = sum(max(q / n - (s / n) ** 2, 0.0) for q, s in zip(graph.sq[node], graph.sum[node], strict=True))
    homogeneity = math.exp(-math.sqrt(var) / 40.0)
    neighbours = graph.neighbours[node]
    if not neighbours:
        return round(homogeneity, 4), 1.0
    dists = np.array([graph.colour_distance(node, j) for j in neighbours])
    weights = np.array(list(neighbours.values()), dtype=np.float64)
    contrast = float((dists * weights).sum() / weights.sum())
    separation = 1.0 - float(np.exp(-contrast / 10.0))
    stability = min(1.0, float(dists.min()) / (2.0 * threshold)) if threshold > 0 else 1.0
    return round(homogeneity * separation, 4), round(stability, 4)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be an H x W x 3 array, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


@register_proposer("offline")
def build_offline_proposer(settings: Settings) -> OfflineProposer:
    """Registry factory: the offline proposer for these settings."""
    return OfflineProposer(settings)

"""Synthetic scenes of flat-coloured shapes with exact ground-truth masks (tests and benchmarks).

The scenes exercise the perception and spatial layers of the twin (paper 3.1-3.2) without any
photo or weight: rectangles, circles, ellipses and triangles in distinct colours on a plain
background, optionally with Gaussian pixel noise, anti-aliased edges, and objects that touch or
occlude one another. Ground-truth masks are the *visible* pixels of each object (later objects
occlude earlier ones), so together with the background they partition the image.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

SHAPES: tuple[str, ...] = ("rectangle", "circle", "ellipse", "triangle")

# Well separated colours (pairwise CIE76 Delta E >= 28, also to the background), so that touching
# objects never blend.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 30, 30),  # red
    (30, 160, 40),  # green
    (30, 60, 210),  # blue
    (240, 220, 40),  # yellow
    (200, 40, 200),  # magenta
    (40, 210, 220),  # cyan
    (250, 140, 20),  # orange
    (110, 40, 150),  # purple
    (20, 20, 20),  # black
    (120, 80, 30),  # brown
    (250, 160, 200),  # pink
    (140, 140, 140),  # grey
    (0, 90, 90),  # teal
    (150, 200, 90),  # light green
)
BACKGROUND: tuple[int, int, int] = (235, 235, 225)

Placement = Literal["separate", "touching", "any"]


class SyntheticScene(NamedTuple):
    """A synthetic image and its ground truth.

    Attributes:
        image: ``H x W x 3`` uint8 RGB image.
        masks: one boolean ``H x W`` mask per object (visible pixels), in drawing order.
        shapes: the shape name of each object.
        colours: the RGB fill colour of each object.

    """

    image: np.ndarray
    masks: list[np.ndarray]
    shapes: list[str]
    colours: list[tuple[int, int, int]]


def _draw(
    shape: str, canvas: np.ndarray, rng: np.random.Generator, cx: float, cy: float, size: float
) -> None:
    """Draw one filled shape (value 1) of about ``size`` pixels of area centred at (cx, cy)."""
    import cv2

    side = float(np.sqrt(size))
    if shape == "rectangle":
        aspect = rng.uniform(0.5, 2.0)
        w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
        x0, y0 = round(cx - w / 2), round(cy - h / 2)
        cv2.rectangle(canvas, (x0, y0), (round(x0 + w) - 1, round(y0 + h) - 1), 1, thickness=-1)
    elif shape == "circle":
        cv2.circle(canvas, (round(cx), round(cy)), max(1, round(side / np.sqrt(np.pi))), 1, thickness=-1)
    elif shape == "ellipse":
        aspect = rng.uniform(1.4, 2.5)
        a = side / np.sqrt(np.pi) * np.sqrt(aspect)
        b = side / np.sqrt(np.pi) / np.sqrt(aspect)
        angle = float(rng.uniform(0, 180))
        axes = (max(1, round(a)), max(1, round(b)))
        cv2.ellipse(canvas, (round(cx), round(cy)), axes, angle, 0, 360, 1, -1)
    elif shape == "triangle":
        # an isosceles-ish triangle with area ~ size, random rotation
        r = side * 0.88
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.array([0.0, 2.2, 4.1])
        pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _place(
    rng: np.random.Generator,
    n_objects: int,
    width: int,
    height: int,
    placement: str,
    min_area_pct: float,
    upper: float,
    shapes: tuple[str, ...],
) -> tuple[np.ndarray, list[str]] | None:
    """Place the objects; the owner map (-1 background) and shape names, or None when stuck."""
    import cv2

    total = width * height
    drawn: list[np.ndarray] = []  # full drawn masks
    kinds: list[str] = []
    owner = np.full((height, width), -1, dtype=np.int32)
    kernel = np.ones((5, 5), np.uint8)  # gap of at least 2 px
    for index in range(n_objects):
        for _attempt in range(200):
            shape = str(rng.choice(shapes))
            size = rng.uniform(min_area_pct, upper) / 100.0 * total
            margin = np.sqrt(size) * 0.6
            if placement == "touching" and drawn:
                # centre near the boundary of an earlier object
                other = drawn[int(rng.integers(len(drawn)))]
                ring = cv2.dilate(other.astype(np.uint8), np.ones((3, 3), np.uint8)) & ~other
                ys, xs = np.nonzero(ring)
                k = int(rng.integers(xs.size))
                direction = rng.normal(size=2)
                direction /= np.linalg.norm(direction) + 1e-9
                cx, cy = xs[k] + direction[0] * margin * 0.8, ys[k] + direction[1] * margin * 0.8
            else:
                cx = rng.uniform(margin, width - margin)
                cy = rng.uniform(margin, height - margin)
            canvas = np.zeros((height, width), np.uint8)
            _draw(shape, canvas, rng, cx, cy, size)
            mask = canvas.astype(bool)
            if mask.sum() < min_area_pct / 100.0 * total * 0.75:
                continue  # clipped by the border
            if placement == "separate" and (cv2.dilate(canvas, kernel).astype(bool) & (owner >= 0)).any():
                continue
            if (
                placement == "touching"
                and drawn
                and not (cv2.dilate(canvas, np.ones((3, 3), np.uint8)).astype(bool) & (owner >= 0)).any()
            ):
                continue
            trial = owner.copy()
            trial[mask] = index
            visible_ok = all(
                (trial == j).sum() >= max(0.6 * drawn[j].sum(), min_area_pct / 200.0 * total)
                and cv2.connectedComponents((trial == j).astype(np.uint8), connectivity=4)[0] == 2
                for j in range(len(drawn))
                if (mask & drawn[j]).any()
            )
            if not visible_ok:
                continue
            owner = trial
            drawn.append(mask)
            kinds.append(shape)
            break
        else:
            return None
    return owner, kinds


def make_scene(
    n_objects: int = 6,
    *,
    width: int = 320,
    height: int = 240,
    seed: int = 0,
    placement: Placement = "separate",
    noise: float = 0.0,
    antialias: bool = False,
    min_area_pct: float = 2.0,
    max_area_pct: float = 10.0,
    shapes: tuple[str, ...] = SHAPES,
    background: tuple[int, int, int] = BACKGROUND,
) -> SyntheticScene:
    """Draw a random scene of ``n_objects`` flat-coloured shapes and return it with its masks.

    Args:
        n_objects: number of objects (1 to ``len(PALETTE)``).
        width: image width in pixels.
        height: image height in pixels.
        seed: random seed; the same arguments always give the same scene.
        placement: ``separate``: objects keep a gap of at least 3 px; ``touching``: each object
            after the first is placed against (or partly over) an earlier one, so shapes touch
            and occlude; ``any``: random positions, overlaps allowed.
        noise: standard deviation of Gaussian pixel noise (0 for none; 8 is "mildly noisy").
        antialias: draw the image with anti-aliased edges (masks stay binary).
        min_area_pct: smallest drawn object area, as a percentage of the image.
        max_area_pct: largest drawn object area, as a percentage of the image (lowered to
            ``50 / n_objects`` when that is smaller, but never below ``min_area_pct``).
        shapes: shape kinds to draw from (see :data:`SHAPES`).
        background: RGB background colour.

    Returns:
        The scene; every visible mask is one 4-connected piece of at least ``min_area_pct / 2`` % of
        the image that keeps at least 60% of its drawn area.

    Raises:
        ValueError: for bad arguments, or when the objects cannot be placed (too many or too large).

    """
    import cv2

    if not 1 <= n_objects <= len(PALETTE):
        raise ValueError(f"n_objects must be between 1 and {len(PALETTE)}, got {n_objects}")
    if width < 16 or height < 16:
        raise ValueError(f"image must be at least 16 x 16, got {width} x {height}")
    if not 0 < min_area_pct <= max_area_pct:
        raise ValueError(f"need 0 < min_area_pct <= max_area_pct, got {min_area_pct}, {max_area_pct}")
    if placement not in ("separate", "touching", "any"):
        raise ValueError(f"placement must be separate, touching or any, got {placement!r}")
    rng = np.random.default_rng(seed)
    colours = [PALETTE[i] for i in rng.permutation(len(PALETTE))[:n_objects]]
    # keep the total drawn area near half the image so that placement always succeeds
    upper = min(max_area_pct, max(min_area_pct, 50.0 / n_objects))
    for _restart in range(30):
        placed = _place(rng, n_objects, width, height, placement, min_area_pct, upper, shapes)
        if placed is not None:
            break
    else:
        raise ValueError(
            f"could not place {n_objects} objects in {width} x {height}: use fewer or smaller ones"
        )
    owner, kinds = placed
    image = np.empty((height, width, 3), np.float32)
    image[:] = background
    for index, colour in enumerate(colours):
        if antialias:
            # supersample 4x for soft edges
            big = cv2.resize(
                (owner == index).astype(np.float32), (width * 4, height * 4), interpolation=cv2.INTER_NEAREST
            )
            alpha = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)
            alpha = cv2.GaussianBlur(alpha, (3, 3), 0.6)[..., None]
            image = image * (1 - alpha) + np.asarray(colour, np.float32) * alpha
        else:
            image[owner == index] = colour
    if noise > 0:
        image = image + rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    rgb = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return SyntheticScene(rgb, [owner == i for i in range(n_objects)], kinds, colours)


def random_masks(
    n: int, *, width: int = 512, height: int = 512, seed: int = 0, max_side_frac: float = 0.15
) -> list[np.ndarray]:
    """``n`` random, possibly overlapping boolean masks (ellipses and boxes) for geometry tests.

    Args:
        n: number of masks.
        width: image width.
        height: image height.
        seed: random seed.
        max_side_frac: largest object side as a fraction of the image side.

    Returns:
        A list of non-empty ``H x W`` boolean masks.

    """
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        canvas = np.zeros((height, width), np.uint8)
        w = int(rng.integers(3, max(4, int(width * max_side_frac))))
        h = int(rng.integers(3, max(4, int(height * max_side_frac))))
        x, y = int(rng.integers(0, width - 1)), int(rng.integers(0, height - 1))
        if rng.random() < 0.5:
            cv2.rectangle(canvas, (x, y), (x + w, y + h), 1, -1)
        else:
            cv2.ellipse(canvas, (x, y), (w // 2 + 1, h // 2 + 1), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if canvas.any():
            out.append(canvas.astype(bool))
    return out


def box_mask(x0: int, y0: int, x1: int, y1: int, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    """Boolean ``H x W`` mask of the pixels ``x0..x1``, ``y0..y1`` inclusive."""
    mask = np.zeros(shape, bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


class CompositeScene(NamedTuple):
    """A synthetic scene of objects made of parts, with queries at every level of paper Eq. 1.

    Attributes:
        image: ``H x W x 3`` uint8 RGB image.
        objects: the visible mask of each whole object (body, window and wheels).
        parts: for each object, its visible parts by name (``body``, ``window``, ``wheel 1``,
            ``wheel 2``).
        queries: ``(query, level, mask)``: a request, the level (``part``, ``object``, ``group``)
            its answer is at, and the answer's mask.

    """

    image: np.ndarray
    objects: list[np.ndarray]
    parts: list[dict[str, np.ndarray]]
    queries: list[tuple[str, str, np.ndarray]]


VEHICLE_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 30, 30)),
    ("blue", (30, 60, 210)),
    ("green", (30, 160, 40)),
    ("orange", (250, 140, 20)),
)
WHEEL = (20, 20, 20)
WINDOW = (170, 220, 240)


def make_composite_scene(
    n_objects: int = 3, *, width: int = 640, height: int = 480, seed: int = 0, noise: float = 0.0
) -> CompositeScene:
    """Side-by-side toy vehicles: a body, a window inside it and two wheels under it.

    Each vehicle is a body rectangle in its own colour (:data:`VEHICLE_COLOURS`), a light window
    in its upper half and two black wheels overlapping its lower edge; vehicles do not touch. The
    queries ask for a window and for a pair of wheels (part level), for one vehicle (object level)
    and for all of them (group level), by colour.

    Args:
        n_objects: vehicles, 1 to ``len(VEHICLE_COLOURS)``.
        width: image width in pixels (at least 80 per vehicle).
        height: image height in pixels (at least 120).
        seed: random seed (sizes and positions jitter).
        noise: standard deviation of Gaussian pixel noise.

    Returns:
        The scene.

    Raises:
        ValueError: for too many vehicles or too small an image.

    """
    import cv2

    if not 1 <= n_objects <= len(VEHICLE_COLOURS):
        raise ValueError(f"n_objects must be between 1 and {len(VEHICLE_COLOURS)}, got {n_objects}")
    if width < 80 * n_objects or height < 120:
        raise ValueError(f"image {width} x {height} is too small for {n_objects} vehicles")
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = BACKGROUND
    owner = np.zeros((height, width), np.int32)  # 0 background, then per vehicle: 4 labels
    slot = width / n_objects
    names = ("body", "window", "wheel 1", "wheel 2")
    colours = (None, WINDOW, WHEEL, WHEEL)
    for index in range(n_objects):
        body_w = int(slot * rng.uniform(0.55, 0.75))
        body_h = int(body_w * rng.uniform(0.35, 0.5))
        x0 = int(index * slot + (slot - body_w) / 2 + rng.uniform(-0.05, 0.05) * slot)
        y0 = int(height * rng.uniform(0.3, 0.5))
        label = 1 + 4 * index
        owner[y0 : y0 + body_h, x0 : x0 + body_w] = label
        win_w, win_h = int(body_w * 0.3), int(body_h * 0.35)
        wx, wy = x0 + int(body_w * rng.uniform(0.1, 0.55)), y0 + int(body_h * 0.12)
        owner[wy : wy + win_h, wx : wx + win_w] = label + 1
        radius = max(4, int(body_h * 0.28))
        for k, fraction in enumerate((0.22, 0.78)):
            canvas = np.zeros((height, width), np.uint8)
            cv2.circle(canvas, (x0 + int(body_w * fraction), y0 + body_h), radius, 1, thickness=-1)
            owner[canvas.astype(bool)] = label + 2 + k
    objects, parts, queries = [], [], []
    for index in range(n_objects):
        colour_name, body_colour = VEHICLE_COLOURS[index]
        label = 1 + 4 * index
        named = {name: owner == label + k for k, name in enumerate(names)}
        for k, name in enumerate(names):
            image[named[name]] = colours[k] or body_colour
        whole = np.isin(owner, [label, label + 1, label + 2, label + 3])
        objects.append(whole)
        parts.append(named)
        queries += [
            (f"the window of the {colour_name} vehicle", "part", named["window"]),
            (f"the wheels of the {colour_name} vehicle", "part", named["wheel 1"] | named["wheel 2"]),
            (f"the {colour_name} vehicle", "object", whole),
        ]
    queries.append(("all the vehicles", "group", np.logical_or.reduce(objects)))
    if noise > 0:
        image = image + rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    rgb = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return CompositeScene(rgb, objects, parts, queries)

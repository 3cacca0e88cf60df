"""Exact pixel-edge polygons of masks (spatial/geometry.py)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from helpers.synthetic import box_mask as box

from dtwin_agent.spatial import filled, mask_to_polygon

W, H = 100, 100


def test_polygon_with_hole_is_valid_and_exact():
    ring = box(10, 10, 50, 50) & ~box(20, 20, 30, 40)
    poly = mask_to_polygon(ring)
    assert poly.is_valid and poly.geom_type == "Polygon"
    assert len(poly.interiors) == 1
    assert poly.area == ring.sum()
    assert poly.bounds == (10.0, 10.0, 51.0, 51.0)
    assert filled(poly).area == 41 * 41


def test_polygon_pixel_edges_random_masks():
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:18, 0:23]
    for _ in range(100):
        mask = rng.random((18, 23)) < rng.uniform(0.2, 0.8)  # holes, islands, diagonal pinches
        poly = mask_to_polygon(mask)
        assert poly.is_valid
        assert poly.area == pytest.approx(mask.sum())
        assert np.array_equal(shapely.contains_xy(poly, xs + 0.5, ys + 0.5), mask)


def test_adjacent_squares_touch():
    left, right = mask_to_polygon(box(10, 10, 19, 19)), mask_to_polygon(box(20, 10, 29, 19))
    assert left.touches(right)
    assert left.intersection(right).length == 10
    below = mask_to_polygon(box(10, 20, 19, 29))
    assert left.touches(below)


def test_empty_mask_polygon():
    assert mask_to_polygon(np.zeros((5, 5), bool)).is_empty
    with pytest.raises(ValueError):
        mask_to_polygon(np.zeros((2, 2, 2), bool))

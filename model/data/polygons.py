"""Polygon geometry shared by augmentation and synthesis."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import shapely


def clip_polygons(polygons: Sequence[np.ndarray], width: float, height: float) -> tuple[list[np.ndarray], list[int]]:
    """Clip each polygon to [0, width] × [0, height] as a whole; drop those with nothing left.

    Returns the polygons that remain and, for each, the index of the input it comes from. A word
    cut by the border keeps its visible part (possibly with more vertices; for a non-convex word
    cut in two, the larger part); polygons wholly inside are returned as they are.
    """
    kept: list[np.ndarray] = []
    source: list[int] = []
    inside = [bool(((p >= 0).all() and (p[:, 0] <= width).all() and (p[:, 1] <= height).all())) for p in polygons]
    outside = [i for i, ok in enumerate(inside) if not ok]
    clipped = {}
    if outside:
        canvas = shapely.box(0, 0, width, height)
        shapes = np.array([shapely.Polygon(polygons[i]) for i in outside], dtype=object)
        shapes = np.where(shapely.is_valid(shapes), shapes, shapely.make_valid(shapes))
        for i, part in zip(outside, shapely.intersection(shapes, canvas)):
            clipped[i] = _largest_polygon(part)
    for i, p in enumerate(polygons):
        poly = p if inside[i] else clipped[i]
        if poly is not None:
            kept.append(poly)
            source.append(i)
    return kept, source


def _largest_polygon(geom) -> np.ndarray | None:
    if geom.is_empty:
        return None
    parts = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type == "Polygon" and g.area > 0]
    if not parts:
        return None
    best = max(parts, key=lambda g: g.area)
    return np.asarray(best.exterior.coords, np.float64)[:-1]


def at_least_four_points(poly: np.ndarray) -> np.ndarray:
    """UFO words need 4 points; a triangle (a word's corner cut by a border, a 3-vertex
    detection) gets the midpoint of its longest edge: the same shape, one more vertex."""
    while len(poly) < 4:
        nxt = np.roll(poly, -1, axis=0)
        k = int(np.argmax(np.hypot(*(nxt - poly).T)))
        poly = np.insert(poly, k + 1, (poly[k] + nxt[k]) / 2, axis=0)
    return poly

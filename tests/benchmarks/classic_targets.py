"""The classic DBNet target generation, written here as the reference our fast version must match.

It follows the algorithm of the DBNet authors' data pipeline as it is commonly used: validate
polygons (clip to the image, ignore tiny ones), shrink each polygon by D = A(1 - r²)/L with a
pyclipper offset and fill it, then for every polygon and every edge compute a distance grid over
the padded polygon's bounding box and keep the maximum of 1 - d/D. One numpy grid per edge per
polygon is what makes it slow. Kept deliberately close to the original, quirks included (the
law-of-cosines distance, numpy's warnings on degenerate input).
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon


def classic_targets(
    h, w, polygons, ignore, shrink_ratio=0.4, thresh_min=0.3, thresh_max=0.7, min_text_size=8, nan_pixels=None
):
    """Returns (prob, prob_mask, thresh, thresh_mask) as float32 maps.

    `nan_pixels`, a (h, w) bool array, receives the pixels whose distance came out NaN: points on
    an edge where rounding pushes the cosine past 1. The classic code silently leaves them at the
    background value; comparisons exclude them and count them.
    """
    polygons = [np.array(p, dtype=np.float64) for p in polygons]
    ignore = list(ignore)
    gt, mask = _shrink_map(h, w, polygons, ignore, shrink_ratio, min_text_size)
    canvas = np.zeros((h, w), dtype=np.float32)
    tmask = np.zeros((h, w), dtype=np.float32)
    for polygon, ign in zip(polygons, ignore):
        if not ign:
            _draw_border_map(polygon, canvas, tmask, shrink_ratio, nan_pixels)
    canvas = canvas * (thresh_max - thresh_min) + thresh_min
    return gt, mask, canvas, tmask


def _shrink_map(h, w, polygons, ignore, shrink_ratio, min_text_size):
    for polygon in polygons:
        polygon[:, 0] = np.clip(polygon[:, 0], 0, w - 1)
        polygon[:, 1] = np.clip(polygon[:, 1], 0, h - 1)
    for i, polygon in enumerate(polygons):
        if abs(cv2.contourArea(polygon.astype(np.float32))) < 1:
            ignore[i] = True
    gt = np.zeros((h, w), dtype=np.float32)
    mask = np.ones((h, w), dtype=np.float32)
    for i, polygon in enumerate(polygons):
        height = polygon[:, 1].max() - polygon[:, 1].min()
        width = polygon[:, 0].max() - polygon[:, 0].min()
        if ignore[i] or min(height, width) < min_text_size:
            cv2.fillPoly(mask, polygon.astype(np.int32)[np.newaxis], 0)
            ignore[i] = True
            continue
        shape = Polygon(polygon)
        distance = shape.area * (1 - shrink_ratio**2) / shape.length
        offset = pyclipper.PyclipperOffset()
        offset.AddPath([tuple(p) for p in polygon], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        shrunk = offset.Execute(-distance)
        if not shrunk:
            cv2.fillPoly(mask, polygon.astype(np.int32)[np.newaxis], 0)
            ignore[i] = True
            continue
        cv2.fillPoly(gt, [np.array(shrunk[0]).reshape(-1, 2).astype(np.int32)], 1)
    return gt, mask


def _draw_border_map(polygon, canvas, mask, shrink_ratio, nan_pixels=None):
    polygon = polygon.copy()
    shape = Polygon(polygon)
    if shape.area <= 0:
        return
    distance = shape.area * (1 - shrink_ratio**2) / shape.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath([tuple(p) for p in polygon], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    padded = np.array(offset.Execute(distance)[0])
    cv2.fillPoly(mask, [padded.astype(np.int32)], 1.0)
    xmin, xmax = padded[:, 0].min(), padded[:, 0].max()
    ymin, ymax = padded[:, 1].min(), padded[:, 1].max()
    width, height = xmax - xmin + 1, ymax - ymin + 1
    polygon[:, 0] -= xmin
    polygon[:, 1] -= ymin
    xs = np.broadcast_to(np.linspace(0, width - 1, num=width).reshape(1, width), (height, width))
    ys = np.broadcast_to(np.linspace(0, height - 1, num=height).reshape(height, 1), (height, width))
    distance_map = np.zeros((polygon.shape[0], height, width), dtype=np.float32)
    for i in range(polygon.shape[0]):
        j = (i + 1) % polygon.shape[0]
        distance_map[i] = np.clip(_distance(xs, ys, polygon[i], polygon[j]) / distance, 0, 1)
    distance_map = distance_map.min(axis=0)
    xmin_valid = min(max(0, xmin), canvas.shape[1] - 1)
    xmax_valid = min(max(0, xmax), canvas.shape[1] - 1)
    ymin_valid = min(max(0, ymin), canvas.shape[0] - 1)
    ymax_valid = min(max(0, ymax), canvas.shape[0] - 1)
    if nan_pixels is not None:
        nan_pixels[ymin_valid : ymax_valid + 1, xmin_valid : xmax_valid + 1] |= np.isnan(
            distance_map[ymin_valid - ymin : ymax_valid - ymax + height, xmin_valid - xmin : xmax_valid - xmax + width]
        )
    canvas[ymin_valid : ymax_valid + 1, xmin_valid : xmax_valid + 1] = np.fmax(
        1 - distance_map[ymin_valid - ymin : ymax_valid - ymax + height, xmin_valid - xmin : xmax_valid - xmax + width],
        canvas[ymin_valid : ymax_valid + 1, xmin_valid : xmax_valid + 1],
    )


def _distance(xs, ys, p1, p2):
    sq1 = np.square(xs - p1[0]) + np.square(ys - p1[1])
    sq2 = np.square(xs - p2[0]) + np.square(ys - p2[1])
    sq = np.square(p1[0] - p2[0]) + np.square(p1[1] - p2[1])
    cosin = (sq - sq1 - sq2) / (2 * np.sqrt(sq1 * sq2))
    square_sin = np.nan_to_num(1 - np.square(cosin))
    result = np.sqrt(sq1 * sq2 * square_sin / sq)
    result[cosin < 0] = np.sqrt(np.fmin(sq1, sq2))[cosin < 0]
    return result

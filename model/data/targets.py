"""DBNet training targets: probability (shrink) map, threshold (border) map and their masks.

Definitions from the DBNet paper (Liao et al., AAAI 2020) and its authors' data pipeline:

* every polygon G with area A and perimeter L gets the offset D = A (1 - r²) / L, r = 0.4;
* the probability map is 1 inside G shrunk by D (pyclipper, round joins), 0 elsewhere; polygons
  that are tiny (area < 1 or shorter side < `min_text_size`), flagged ignore, or vanish when
  shrunk are zeroed in the probability mask instead;
* the threshold map is 1 - min(d / D, 1), d the distance to the nearest edge of G (the
  authors' definition of it, see `edge_distance_sq`), kept as the
  maximum over polygons inside the bounding box of G padded by D, then scaled to
  [thresh_min, thresh_max]; its mask is the padded polygon.

The classic implementation computes one numpy distance grid per edge per polygon; here one
compiled pass visits each pixel of each padded box once, and polygon areas and perimeters are
vectorised, so a 960-px receipt costs about a tenth.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numba
import numpy as np
import pyclipper


class Targets(NamedTuple):
    """The four maps at image resolution. The binary ones are uint8 (0/1): a quarter of the bytes
    to allocate, to pass between DataLoader workers and to copy to the GPU; `collate` makes floats."""

    prob: np.ndarray  # (H, W) uint8, 1 inside shrunk text
    prob_mask: np.ndarray  # (H, W) uint8, 0 on ignored text
    thresh: np.ndarray  # (H, W) float32 in [thresh_min, thresh_max]
    thresh_mask: np.ndarray  # (H, W) uint8, 1 inside padded text


def make_targets(
    height: int,
    width: int,
    polygons: Sequence[np.ndarray],
    ignore: Sequence[bool] | None = None,
    *,
    shrink_ratio: float = 0.4,
    thresh_min: float = 0.3,
    thresh_max: float = 0.7,
    min_text_size: float = 8,
) -> Targets:
    prob = np.zeros((height, width), np.uint8)
    prob_mask = np.ones((height, width), np.uint8)
    thresh = np.full((height, width), thresh_min, np.float32)
    thresh_mask = np.zeros((height, width), np.uint8)
    n = len(polygons)
    if n == 0:
        return Targets(prob, prob_mask, thresh, thresh_mask)

    # All vertices in one array: areas, perimeters and extents come from a few vectorised calls.
    counts = np.fromiter(map(len, polygons), np.int64, n)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    pts = np.concatenate(polygons, dtype=np.float64).reshape(-1, 2)
    np.clip(pts[:, 0], 0, width - 1, out=pts[:, 0])
    np.clip(pts[:, 1], 0, height - 1, out=pts[:, 1])
    nxt = np.arange(len(pts)) + 1
    nxt[starts[1:] - 1] = starts[:-1]
    x, y = pts[:, 0], pts[:, 1]
    area = np.abs(np.add.reduceat(x * y[nxt] - x[nxt] * y, starts[:-1])) / 2
    length = np.add.reduceat(np.hypot(x[nxt] - x, y[nxt] - y), starts[:-1])
    extent = np.minimum(
        np.maximum.reduceat(x, starts[:-1]) - np.minimum.reduceat(x, starts[:-1]),
        np.maximum.reduceat(y, starts[:-1]) - np.minimum.reduceat(y, starts[:-1]),
    )
    skip = (area < 1) | (extent < min_text_size)
    if ignore is not None:
        skip |= np.asarray(ignore, bool)
    offset = np.where(skip, 0.0, area * (1 - shrink_ratio**2) / np.where(length > 0, length, 1))

    boxes = np.zeros((n, 4), np.int64)  # padded bounding boxes, x0 y0 x1 y1 inclusive
    drawn = np.zeros(n, np.bool_)
    # Python lists from here: the loop is per word, and numpy scalars cost more than the work.
    paths, bounds, skips, offsets = pts.tolist(), starts.tolist(), skip.tolist(), offset.tolist()
    for i in range(n):
        path = paths[bounds[i] : bounds[i + 1]]
        if not skips[i]:
            pco = pyclipper.PyclipperOffset()
            pco.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
            shrunk = pco.Execute(-offsets[i])
            if shrunk:
                cv2.fillPoly(prob, [np.array(shrunk[0], np.int32)], 1)
                padded = np.array(pco.Execute(offsets[i])[0], np.int32)
                cv2.fillPoly(thresh_mask, [padded], 1)
                x, y, w, h = cv2.boundingRect(padded)
                boxes[i] = x, y, x + w - 1, y + h - 1
                drawn[i] = True
                continue
        cv2.fillPoly(prob_mask, [np.array(path, np.int32)], 0)

    _border_map(thresh, pts, starts, offset, boxes, drawn, thresh_min, thresh_max)
    return Targets(prob, prob_mask, thresh, thresh_mask)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _border_map(canvas, pts, starts, offset, boxes, drawn, lo, hi):  # pragma: no cover - compiled
    """canvas = max(canvas, lo + (hi - lo) * (1 - min(d / D, 1))) over each word's padded box.

    d is the authors' point-to-edge distance (see `_edge_distance_sq`). Rows are swept edge by
    edge so the inner loop over x vectorises; one square root per pixel, at the end.
    """
    h, w = canvas.shape
    best = np.empty(w, np.float64)
    for i in range(len(offset)):
        if not drawn[i]:
            continue
        scale = (hi - lo) / offset[i]
        x0 = min(max(boxes[i, 0], 0), w - 1)
        x1 = min(max(boxes[i, 2], 0), w - 1)
        y0 = min(max(boxes[i, 1], 0), h - 1)
        y1 = min(max(boxes[i, 3], 0), h - 1)
        n = x1 - x0 + 1
        a, b = starts[i], starts[i + 1]
        for py in range(y0, y1 + 1):
            row = best[:n]
            row[:] = 1e300
            for k in range(a, b):
                m = k + 1 if k + 1 < b else a
                _edge_distance_sq(row, float(x0), float(py), pts[k, 0], pts[k, 1], pts[m, 0], pts[m, 1])
            out = canvas[py, x0 : x1 + 1]
            for j in range(n):
                out[j] = max(out[j], hi - scale * np.sqrt(row[j]))


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _edge_distance_sq(row, x0, py, ax, ay, bx, by):  # pragma: no cover - compiled
    """row[j] = min(row[j], d²) for P = (x0 + j, py), d the DBNet authors' distance from P to AB.

    Where P sees AB at an obtuse angle (|AB|² > |PA|² + |PB|²) d is the distance to the line AB,
    elsewhere the distance to the nearer endpoint. That is the exact segment distance except near
    corners, where it is larger; every published DBNet was trained with it, so we keep it. (The
    reference code's NaNs for points exactly on an edge, which drop those pixels, are not kept.)
    """
    sq = (ax - bx) ** 2 + (ay - by) ** 2
    inv = 1.0 / sq if sq > 0 else 0.0
    dy1 = (py - ay) ** 2
    dy2 = (py - by) ** 2
    for j in range(len(row)):
        px = x0 + j
        sq1 = (px - ax) ** 2 + dy1
        sq2 = (px - bx) ** 2 + dy2
        c = sq - sq1 - sq2
        # sq1 sq2 sin²(APB) / sq with the law of cosines written out: no square root per edge.
        line = max(sq1 * sq2 - 0.25 * c * c, 0.0) * inv
        d = line if (c >= 0 and sq > 0) else min(sq1, sq2)
        row[j] = min(row[j], d)

"""DBNet post-processing: probability map → text polygons (or rotated boxes) with scores.

The algorithm is the DBNet authors' `SegDetectorRepresenter` as the seed's code base runs it, and
it returns the same detections (tests/benchmarks/classic_postprocess.py is that reference; the
shared vectors in ../shared/data/postprocess/ are its output):

1. binarize: a pixel is on where prob > `thresh`;
2. `cv2.findContours` (RETR_LIST, CHAIN_APPROX_SIMPLE): one contour per region border, holes
   included, in OpenCV's raster order; only the first `max_candidates` are considered;
3. per contour, the candidate shape:
   * ``mode="polygon"``: `cv2.approxPolyDP` with epsilon 0.002 × the contour's perimeter;
     fewer than 4 vertices → dropped;
   * ``mode="box"``: the contour's minimum-area rotated rectangle (`cv2.minAreaRect`), corners
     ordered from the top-left as the authors' `get_mini_boxes` does; shorter side < `min_size`
     → dropped;
4. score = mean probability over the shape as `cv2.fillPoly` rasterises it (vertices truncated
   to integers, boundary pixels included), inside the shape's bounding box clipped to the map:
   the authors' `box_score_fast`; score < `box_thresh` → dropped;
5. unclip: offset the shape outwards by D = area × `unclip_ratio` / perimeter (pyclipper, round
   joins), undoing the shrink the training targets apply (DB paper, eq. 10). A polygon that the
   offset splits into pieces is dropped; a box is replaced by the minimum-area rectangle of its
   offset;
6. the unclipped shape's minimum-area rectangle has its shorter side < `min_size` + 2 → dropped.

Coordinates. Contour vertices are pixel indices and are used as coordinates as they are: no 0.5
is added. That is the convention the targets are drawn in: `model.data.targets` fills the shrunk
polygon with `cv2.fillPoly`, which lights pixel i exactly when i lies between the integer
vertices, so a predicted region maps back onto the polygon it was trained from; adding 0.5 would
move every detection half a pixel right and down. (The classic code does the same before its
x / width × dest_width scaling.) Points are clipped to the map, [0, W] × [0, H], then mapped by
`to_original` (canvas → original pixels: `Batch.to_original`, the inverse of `Sample.matrix`),
and not rounded; without a matrix they stay in canvas pixels. Round where a format needs
integers. With the identity, polygons equal the classic output exactly and box corners equal it
before its final rounding.

Speed. The classic spends its time in Python per contour: numpy scalar arithmetic, a fresh mask
per score, shapely objects for one area and one length. Here binarizing (with the extent of the
text, so `findContours` reads only that crop), rasterising and averaging every candidate, the
box corners and the unclip distances are compiled passes over all candidates at once. They copy
OpenCV's and GEOS's arithmetic (the fill rule, `boxPoints`, the summation order of area and
perimeter), so every intermediate value, and so every output, is the classic's; the tests check
the copies against OpenCV on thousands of random shapes, and each process checks once that they
match the installed OpenCV (else it calls OpenCV, slower). The minimum-area-rectangle filter of
polygon mode asks OpenCV only where the polygon's width (a lower bound of the rectangle's sides)
leaves the answer in doubt. What stays per candidate is `approxPolyDP` (`minAreaRect` in box
mode) and the pyclipper offset, now most of the time. 4.5–5× faster than the classic on 960-px
SROIE maps, one core: ~1.4 ms against ~6.5 ms (tests/benchmarks/bench_postprocess.py).
"""
from __future__ import annotations

import functools
import math
from itertools import chain
from typing import Literal, NamedTuple, Sequence

import cv2
import numba
import numpy as np
import pyclipper

__all__ = ["Detection", "postprocess", "postprocess_batch"]

JT_ROUND, ET_CLOSEDPOLYGON = pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON


class Detection(NamedTuple):
    """One text instance: its outline and its score (mean probability inside the shape)."""

    points: np.ndarray  # (N, 2) float64: original pixels with `to_original`, else canvas pixels
    score: float


def postprocess(
    prob: np.ndarray,
    *,
    thresh: float = 0.29,
    box_thresh: float = 0.25,
    max_candidates: int = 600,
    unclip_ratio: float = 2.0,
    mode: Literal["polygon", "box"] = "polygon",
    to_original: np.ndarray | None = None,
    min_size: float = 3,
) -> list[Detection]:
    """Detections of one (H, W) probability map (float in [0, 1]), in contour order.

    `thresh` binarizes the map, `box_thresh` is the least mean probability a shape must have,
    `max_candidates` caps the contours considered, `unclip_ratio` scales the outward offset,
    `mode` picks polygons or 4-point rotated boxes, `to_original` (3, 3) maps canvas → original
    pixels, `min_size` is the least shorter side of a candidate box and, plus 2, of the result.
    The defaults are the seed's settings (polygon mode, 0.29 / 0.25 / 600, unclip 2.0).
    """
    if mode not in ("polygon", "box"):
        raise ValueError(f"mode must be 'polygon' or 'box', not {mode!r}")
    prob = _numpy(prob)
    if prob.ndim == 3 and prob.shape[0] == 1:
        prob = prob[0]
    if prob.ndim != 2:
        raise ValueError(f"prob must be an (H, W) map, got shape {prob.shape}")
    if not np.issubdtype(prob.dtype, np.floating):
        raise ValueError(f"prob must hold float probabilities in [0, 1], got dtype {prob.dtype}")
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    if to_original is not None:
        to_original = np.asarray(to_original, np.float64)
        if to_original.shape != (3, 3):
            raise ValueError(f"to_original must be a (3, 3) matrix, got shape {to_original.shape}")
    if prob.size == 0 or max_candidates <= 0:
        return []
    bitmap, extent = _binarize(prob, np.float32(thresh))
    x0, y0, x1, y1 = extent
    if x1 < x0:
        return []
    # Only the crop around the text, one zero pixel wide where the map allows: the same contours
    # in the same order, the offset put back by OpenCV.
    x0, y0, x1, y1 = max(x0 - 1, 0), max(y0 - 1, 0), x1 + 2, y1 + 2
    crop = bitmap[y0:y1, x0:x1]
    contours, _ = cv2.findContours(crop, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
    contours = contours[: int(max_candidates)]
    if mode == "polygon":
        shapes, scores = _polygons(prob, contours, box_thresh, unclip_ratio, min_size)
    else:
        shapes, scores = _boxes(prob, contours, box_thresh, unclip_ratio, min_size)
    if not scores:
        return []
    return _finish(shapes, scores, prob.shape, to_original)


def postprocess_batch(probs, to_original=None, **options) -> list[list[Detection]]:
    """`postprocess` for each map of an (N, H, W) or (N, 1, H, W) batch: a torch tensor on any
    device (any float dtype) or an array. `to_original` (N, 3, 3), tensor or array, maps each
    canvas back to its original pixels (None: canvas pixels); `options` are `postprocess`'s."""
    probs = _numpy(probs)
    if probs.ndim == 4 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim != 3:
        raise ValueError(f"probs must be (N, H, W), got shape {probs.shape}")
    matrices = None if to_original is None else _numpy(to_original).astype(np.float64)
    if matrices is not None and matrices.shape != (len(probs), 3, 3):
        raise ValueError(f"to_original must be ({len(probs)}, 3, 3), got {matrices.shape}")
    return [postprocess(p, to_original=None if matrices is None else matrices[i], **options)
            for i, p in enumerate(probs)]


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch.Tensor: to float32 on the CPU (half and bfloat16 too)
        import torch

        if x.is_floating_point() and x.dtype != torch.float64:
            x = x.detach().to(device="cpu", dtype=torch.float32)
        return x.detach().cpu().numpy()
    return np.asarray(x)


# -- the two candidate kinds -------------------------------------------------------------------


def _polygons(prob, contours, box_thresh, unclip_ratio, min_size):
    approx = []
    for c in contours:
        a = cv2.approxPolyDP(c, 0.002 * cv2.arcLength(c, True), True)
        if len(a) >= 4:
            approx.append(a.reshape(-1, 2))
    if not approx:
        return None, []
    pts, starts = _pack(approx)
    scores = _scores(prob, pts, starts).tolist()
    keep = [i for i, s in enumerate(scores) if s >= box_thresh]
    if not keep:
        return None, []
    polys = [approx[i] for i in keep]
    pts, starts = _pack(polys)
    distance = _area_length_ratio(pts.astype(np.float64), starts, float(unclip_ratio)).tolist()
    vertices, bounds = pts.tolist(), starts.tolist()
    out_paths, out_scores = [], []
    for a, b, d, i in zip(bounds[:-1], bounds[1:], distance, keep):
        if d != d:  # zero perimeter: shapely would divide by zero; nothing to offset
            continue
        offset = pyclipper.PyclipperOffset()  # a fresh one is faster than Clear()
        offset.AddPath(vertices[a:b], JT_ROUND, ET_CLOSEDPOLYGON)
        out = offset.Execute(d)
        if len(out) != 1:  # split into pieces (or vanished): dropped, as the classic does
            continue
        out_paths.append(out[0])
        out_scores.append(scores[i])
    if not out_paths:
        return None, []
    shapes, starts = _unpack(out_paths)
    # The classic drops a polygon whose minAreaRect has a side < min_size + 2. Both sides of any
    # enclosing rectangle are at least the polygon's minimum width, so only the polygons whose
    # width leaves that in doubt (0.05 px of slack for OpenCV's float32) need OpenCV's answer.
    limit = min_size + 2
    sure = (_min_widths(shapes, starts) >= limit + 0.05).tolist()
    kept, kept_scores = [], []
    for a, b, s, ok in zip(starts[:-1].tolist(), starts[1:].tolist(), out_scores, sure):
        if ok or min(cv2.minAreaRect(shapes[a:b])[1]) >= limit:
            kept.append((a, b))
            kept_scores.append(s)
    return (shapes, kept), kept_scores


def _boxes(prob, contours, box_thresh, unclip_ratio, min_size):
    rects = _rect_array([cv2.minAreaRect(c) for c in contours])
    rects = rects[np.minimum(rects[:, 2], rects[:, 3]).astype(np.float64) >= min_size]
    if not len(rects):
        return None, []
    boxes = _box_points(rects)  # (K, 4, 2) float32, ordered
    # the score rasterises the corners truncated to integers, as the classic's astype(int32) does
    starts = np.arange(0, 4 * len(boxes) + 1, 4)
    scores = _scores(prob, np.trunc(boxes).astype(np.int64).reshape(-1, 2), starts, boxes).tolist()
    keep = [i for i, s in enumerate(scores) if s >= box_thresh]
    if not keep:
        return None, []
    boxes = boxes[keep]
    corners = boxes.reshape(-1, 2).astype(np.float64)
    distance = _area_length_ratio(corners, starts[: len(keep) + 1], float(unclip_ratio)).tolist()
    # pyclipper truncates float coordinates towards zero: hand it those integers directly
    paths = np.trunc(boxes).astype(np.int64).tolist()
    out_rects, out_scores = [], []
    limit = min_size + 2
    for path, d, i in zip(paths, distance, keep):
        offset = pyclipper.PyclipperOffset()
        offset.AddPath(path, JT_ROUND, ET_CLOSEDPOLYGON)
        out = offset.Execute(d)
        if not out:
            continue
        # the classic takes the rectangle around all pieces of the offset
        rect = cv2.minAreaRect(np.array(list(chain.from_iterable(out)), np.int32))
        if min(rect[1]) < limit:
            continue
        out_rects.append(rect)
        out_scores.append(scores[i])
    if not out_rects:
        return None, []
    corners = _box_points(_rect_array(out_rects)).reshape(-1, 2)
    return (corners, [(4 * k, 4 * k + 4) for k in range(len(out_rects))]), out_scores


def _pack(polys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Polygons → all vertices (M, 2) int64 and the start of each polygon (K + 1,)."""
    starts = np.zeros(len(polys) + 1, np.int64)
    np.cumsum([len(p) for p in polys], out=starts[1:])
    return np.concatenate(polys).astype(np.int64), starts


def _unpack(paths: list) -> tuple[np.ndarray, np.ndarray]:
    """pyclipper's nested lists → all vertices (M, 2) int32 and starts, in one conversion."""
    starts = np.zeros(len(paths) + 1, np.int64)
    np.cumsum([len(p) for p in paths], out=starts[1:])
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(paths)), np.int32, 2 * int(starts[-1]))
    return flat.reshape(-1, 2), starts


def _rect_array(rects: list) -> np.ndarray:
    """cv2.minAreaRect results → (K, 5) float32: centre x, y, width, height, angle."""
    return np.array([(c[0], c[1], s[0], s[1], a) for c, s, a in rects], np.float32).reshape(-1, 5)


def _box_points(rects: np.ndarray) -> np.ndarray:
    """cv2.boxPoints of each (K, 5) rectangle, bit for bit, corners ordered as the authors'
    `get_mini_boxes` orders them: (K, 4, 2) float32."""
    formula = _opencv_copies()[1]
    if formula < 0:  # an OpenCV whose boxPoints we have not copied: ask it, one by one
        raw = np.stack([cv2.boxPoints(((r[0], r[1]), (r[2], r[3]), r[4])) for r in rects.tolist()])
    else:
        raw = _corners(rects, formula)
    return _order_corners(raw)


@numba.njit(cache=True, nogil=True)
def _corners(rects, formula):  # pragma: no cover - compiled
    """OpenCV's RotatedRect::points in float32: corners 2 and 3 by OpenCV 5's own formula
    (`formula` 0) or as 2 × centre − corners 0 and 1 (`formula` 1, OpenCV 4)."""
    f32 = np.float32
    out = np.empty((len(rects), 4, 2), np.float32)
    for k in range(len(rects)):
        cx, cy, w, h, angle = rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3], rects[k, 4]
        theta = np.float64(angle) * math.pi / 180.0
        b = f32(math.cos(theta)) * f32(0.5)
        a = f32(math.sin(theta)) * f32(0.5)
        out[k, 0, 0] = cx - a * h - b * w
        out[k, 0, 1] = cy + b * h - a * w
        out[k, 1, 0] = cx + a * h - b * w
        out[k, 1, 1] = cy - b * h - a * w
        if formula == 0:
            out[k, 2, 0] = cx + a * h + b * w
            out[k, 2, 1] = cy - b * h + a * w
            out[k, 3, 0] = cx - a * h + b * w
            out[k, 3, 1] = cy + b * h + a * w
        else:
            for i in range(2):
                out[k, 2 + i, 0] = f32(2) * cx - out[k, i, 0]
                out[k, 2 + i, 1] = f32(2) * cy - out[k, i, 1]
    return out


@numba.njit(cache=True, nogil=True)
def _order_corners(pts):  # pragma: no cover - compiled
    """(K, 4, 2) corners → the authors' `get_mini_boxes` order: a stable sort by x, then of the
    two left corners the upper one first, of the two right ones the upper one second."""
    out = np.empty((len(pts), 4, 2), np.float32)
    order = np.empty(4, np.int64)
    pick = np.empty(4, np.int64)
    for k in range(len(pts)):
        for i in range(4):  # stable insertion sort by x, as Python's sorted()
            j = i
            while j > 0 and pts[k, order[j - 1], 0] > pts[k, i, 0]:
                order[j] = order[j - 1]
                j -= 1
            order[j] = i
        upper_left = 0 if pts[k, order[1], 1] > pts[k, order[0], 1] else 1
        upper_right = 2 if pts[k, order[3], 1] > pts[k, order[2], 1] else 3
        pick[0] = order[upper_left]
        pick[1] = order[upper_right]
        pick[2] = order[5 - upper_right]
        pick[3] = order[1 - upper_left]
        for j in range(4):
            out[k, j, 0] = pts[k, pick[j], 0]
            out[k, j, 1] = pts[k, pick[j], 1]
    return out


@functools.cache
def _opencv_copies() -> tuple[bool, int]:
    """Whether the compiled copies reproduce the installed OpenCV bit for bit, checked once per
    process on a few hundred random shapes: (fillPoly copied, which boxPoints formula: 0, 1, or
    -1 for neither). Where a copy does not match, OpenCV itself is called instead, slower."""
    rng = np.random.default_rng(0)
    fill_ok = True
    for _ in range(200):
        n, h, w = int(rng.integers(3, 10)), int(rng.integers(2, 24)), int(rng.integers(2, 24))
        xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
        ref = np.zeros((h, w), np.uint8)
        cv2.fillPoly(ref, [np.stack([xs, ys], axis=1).astype(np.int32)], 1)
        mine = np.zeros((h, w + 1), np.uint8)[:, :w]  # a strided view, as `_fill_scores` passes
        _fill(mine, xs.astype(np.int64), ys.astype(np.int64), np.empty((5, n), np.int64))
        fill_ok = fill_ok and bool((ref == mine).all())
    clouds = [rng.integers(0, 960, (int(rng.integers(3, 12)), 2)).astype(np.int32) for _ in range(200)]
    rects = [cv2.minAreaRect(c) for c in clouds]
    ref = np.stack([cv2.boxPoints(r) for r in rects])
    array = _rect_array(rects)
    formula = next((f for f in (0, 1) if np.array_equal(_corners(array, f), ref)), -1)
    return fill_ok, formula


# -- binarize ----------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _binarize(prob, thresh):  # pragma: no cover - compiled
    """(prob > thresh) as uint8, and the extent of the on pixels: x0, y0, x1, y1 inclusive
    (x1 < x0 when none is on). One pass; the extent is an OR over rows taken 8 pixels at a time,
    so it costs next to nothing (rows are padded to a multiple of 8; the view hides that)."""
    h, w = prob.shape
    padded = np.zeros((h, (w + 7) // 8 * 8), np.uint8)
    words = padded.view(np.uint64)
    cols = np.zeros(words.shape[1], np.uint64)
    y0, y1 = h, -1
    for y in range(h):
        src = prob[y]
        dst = padded[y]
        for x in range(w):
            dst[x] = src[x] > thresh
        row = words[y]
        on = np.uint64(0)
        for k in range(len(row)):
            cols[k] |= row[k]
            on |= row[k]
        if on:
            y0 = min(y0, y)
            y1 = y
    x0, x1 = w, -1
    col_bytes = cols.view(np.uint8)
    for x in range(w):
        if col_bytes[x]:
            x0 = min(x0, x)
            x1 = x
    return padded[:, :w], (x0, y0, x1, y1)


# -- scores ------------------------------------------------------------------------------------


def _scores(prob, pts, starts, float_boxes=None) -> np.ndarray:
    """Mean of `prob` over each integer polygon (`pts[starts[k]:starts[k + 1]]`) as cv2.fillPoly
    rasterises it into the polygon's bounding box clipped to the map: `box_score_fast`.

    `float_boxes`, the float corners the integer polygons were truncated from, gives the box as
    the classic takes it (floor / ceil of the float extent). The rasterisation is a compiled copy
    of OpenCV's (`_fill`); a polygon with a vertex outside the map, which OpenCV would clip edge
    by edge, goes to cv2.fillPoly itself (in practice: boxes at the border of the map).
    """
    h, w = prob.shape
    if float_boxes is None:
        lo_x = np.minimum.reduceat(pts[:, 0], starts[:-1])
        hi_x = np.maximum.reduceat(pts[:, 0], starts[:-1])
        lo_y = np.minimum.reduceat(pts[:, 1], starts[:-1])
        hi_y = np.maximum.reduceat(pts[:, 1], starts[:-1])
    else:
        lo_x = np.floor(float_boxes[:, :, 0].min(axis=1))
        hi_x = np.ceil(float_boxes[:, :, 0].max(axis=1))
        lo_y = np.floor(float_boxes[:, :, 1].min(axis=1))
        hi_y = np.ceil(float_boxes[:, :, 1].max(axis=1))
    crop = np.stack([lo_x, lo_y, hi_x, hi_y], axis=1)
    np.clip(crop, 0, [w - 1, h - 1, w - 1, h - 1], out=crop)
    crop = crop.astype(np.int64)
    scores = _fill_scores(prob, pts, starts, crop) if _opencv_copies()[0] else np.full(len(crop), np.nan)
    for k in np.flatnonzero(np.isnan(scores)).tolist():
        x0, y0, x1, y1 = crop[k].tolist()
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        cv2.fillPoly(mask, [pts[starts[k] : starts[k + 1]].astype(np.int32)], 1, offset=(-x0, -y0))
        scores[k] = cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0]
    return scores


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})  # reassoc: the sums vectorise
def _fill_scores(prob, pts, starts, crop):  # pragma: no cover - compiled
    """Per polygon: rasterise it into a crop-sized mask (`_fill`), average `prob` over the mask
    and wipe it. NaN for a polygon with a vertex outside its crop (clipping is not copied)."""
    n = len(starts) - 1
    out = np.full(n, np.nan)
    mh, mw, mn = 1, 1, 1
    for k in range(n):
        mh = max(mh, crop[k, 3] - crop[k, 1] + 1)
        mw = max(mw, crop[k, 2] - crop[k, 0] + 1)
        mn = max(mn, starts[k + 1] - starts[k])
    mask = np.zeros((mh, mw), np.uint8)
    work = np.empty((7, mn), np.int64)
    for k in range(n):
        x0, y0, x1, y1 = crop[k, 0], crop[k, 1], crop[k, 2], crop[k, 3]
        m = starts[k + 1] - starts[k]
        xs, ys = work[0, :m], work[1, :m]
        inside = True
        for i in range(m):
            xs[i] = pts[starts[k] + i, 0] - x0
            ys[i] = pts[starts[k] + i, 1] - y0
            inside &= 0 <= xs[i] <= x1 - x0 and 0 <= ys[i] <= y1 - y0
        if not inside:
            continue
        sub = mask[: y1 - y0 + 1, : x1 - x0 + 1]
        _fill(sub, xs, ys, work[2:])
        total = 0.0
        count = 0
        for yy in range(sub.shape[0]):
            row = prob[y0 + yy, x0 : x1 + 1]
            on = sub[yy]
            for xx in range(len(on)):  # branch-free, so it vectorises
                total += row[xx] * on[xx]
                count += on[xx]
                on[xx] = 0
        out[k] = total / count if count > 0 else 0.0
    return out


@numba.njit(cache=True, nogil=True)
def _fill(mask, xs, ys, work):  # pragma: no cover - compiled
    """cv2.fillPoly(mask, [polygon], 1) for integer vertices inside `mask` (shift 0, LINE_8).

    OpenCV's two steps, copied: every edge drawn as an 8-connected line, then each row y filled
    between consecutive pairs of the crossings of the edges with y0 <= y < y1, computed in 16.16
    fixed point from the upper end (slope truncated towards zero), from ceil(left) to
    floor(right). `work`: (5, len(xs)) int64 scratch.
    """
    n = len(xs)
    for i in range(n):
        j = i - 1 if i > 0 else n - 1
        _line(mask, xs[j], ys[j], xs[i], ys[i])
    ex, ey0, ey1, edx, cross = work[0], work[1], work[2], work[3], work[4]
    ne = 0
    for i in range(n):
        j = i - 1 if i > 0 else n - 1
        if ys[i] == ys[j]:
            continue
        num = (xs[i] - xs[j]) << 16
        den = ys[i] - ys[j]
        q = abs(num) // abs(den)
        edx[ne] = -q if (num < 0) != (den < 0) else q  # C division truncates
        top = j if ys[j] < ys[i] else i
        ex[ne] = xs[top] << 16
        ey0[ne] = ys[top]
        ey1[ne] = max(ys[i], ys[j])
        ne += 1
    if ne < 2:
        return
    w = mask.shape[1]
    for y in range(ey0[:ne].min(), min(ey1[:ne].max(), mask.shape[0])):
        c = 0
        for e in range(ne):
            if ey0[e] <= y < ey1[e]:
                v = ex[e] + (y - ey0[e]) * edx[e]
                k = c
                while k > 0 and cross[k - 1] > v:  # insertion sort: a handful of crossings
                    cross[k] = cross[k - 1]
                    k -= 1
                cross[k] = v
                c += 1
        for q in range(0, c - 1, 2):
            lo = max((cross[q] + 65535) >> 16, 0)
            hi = min(cross[q + 1] >> 16, w - 1)
            if lo <= hi:
                mask[y, lo : hi + 1] = 1


@numba.njit(cache=True, nogil=True)
def _line(mask, x0, y0, x1, y1):  # pragma: no cover - compiled
    """cv2's 8-connected Bresenham line (LineIterator), always walked from the left end."""
    if x1 < x0:
        x0, y0, x1, y1 = x1, y1, x0, y0
    dx = x1 - x0
    dy = y1 - y0
    sy = 1
    if dy < 0:
        dy = -dy
        sy = -1
    x, y = x0, y0
    if dy > dx:  # steep: one row per step
        err = dy - 2 * dx
        for _ in range(dy + 1):
            mask[y, x] = 1
            if err < 0:
                err += 2 * dy - 2 * dx
                x += 1
            else:
                err -= 2 * dx
            y += sy
    else:
        err = dx - 2 * dy
        for _ in range(dx + 1):
            mask[y, x] = 1
            if err < 0:
                err += 2 * dx - 2 * dy
                y += sy
            else:
                err -= 2 * dy
            x += 1


# -- unclip distances --------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _area_length_ratio(pts, starts, ratio):  # pragma: no cover - compiled
    """area × ratio / perimeter of each closed polygon (NaN where the perimeter is 0), both
    summed in the order GEOS (shapely) sums them, so the distances, and so pyclipper's rounded
    offsets, are the classic's bit for bit."""
    n = len(starts) - 1
    out = np.empty(n, np.float64)
    for i in range(n):
        a, b = starts[i], starts[i + 1]
        m = b - a
        x0 = pts[a, 0]  # shoelace relative to the first x, over the closed ring
        s = 0.0
        for k in range(1, m):
            s += (pts[a + k, 0] - x0) * (pts[a + k - 1, 1] - pts[a + (k + 1) % m, 1])
        area = abs(s / 2.0)
        length = 0.0
        for k in range(m):
            j = a + (k + 1) % m
            dx = pts[j, 0] - pts[a + k, 0]
            dy = pts[j, 1] - pts[a + k, 1]
            length += math.sqrt(dx * dx + dy * dy)
        out[i] = area * ratio / length if length > 0 else np.nan
    return out


@numba.njit(cache=True, nogil=True)
def _min_widths(pts, starts):  # pragma: no cover - compiled
    """Minimum width of each integer polygon (`pts[starts[k]:starts[k + 1]]`): the least distance
    between two parallel lines enclosing it, attained with one line along an edge of the convex
    hull (monotone chain). 0 where the points are fewer than 3 or collinear."""
    n = len(starts) - 1
    out = np.zeros(n)
    longest = 1
    for k in range(n):
        longest = max(longest, starts[k + 1] - starts[k])
    hull = np.empty((2 * longest + 1, 2), np.float64)
    for k in range(n):
        p = pts[starts[k] : starts[k + 1]]
        order = np.argsort((p[:, 0].astype(np.int64) << 32) + p[:, 1])  # by x, then y
        m = 0
        for half in range(2):  # lower hull left to right, then upper hull right to left
            base = m
            for r in range(len(order)):
                i = order[r] if half == 0 else order[len(order) - 1 - r]
                x, y = np.float64(p[i, 0]), np.float64(p[i, 1])
                while m >= base + 2 and ((hull[m - 1, 0] - hull[m - 2, 0]) * (y - hull[m - 2, 1])
                                         - (hull[m - 1, 1] - hull[m - 2, 1]) * (x - hull[m - 2, 0])) <= 0:
                    m -= 1
                hull[m, 0] = x
                hull[m, 1] = y
                m += 1
            m -= 1  # each half ends where the other begins
        if m < 3:
            continue
        best = np.inf
        for i in range(m):
            ax, ay = hull[i, 0], hull[i, 1]
            dx, dy = hull[(i + 1) % m, 0] - ax, hull[(i + 1) % m, 1] - ay
            norm = math.sqrt(dx * dx + dy * dy)
            far = 0.0
            for j in range(m):
                far = max(far, abs(dx * (hull[j, 1] - ay) - dy * (hull[j, 0] - ax)) / norm)
            best = min(best, far)
        out[k] = best
    return out


# -- back to original pixels -------------------------------------------------------------------


def _finish(shapes, scores, shape, to_original) -> list[Detection]:
    pts, spans = shapes
    h, w = shape
    pts = pts.astype(np.float64)
    np.clip(pts, 0, [w, h], out=pts)
    if to_original is not None:
        m = to_original
        mapped = pts @ m[:2, :2].T + m[:2, 2]
        if m[2, 0] != 0 or m[2, 1] != 0 or m[2, 2] != 1:  # projective: divide by w
            mapped /= (pts @ m[2, :2] + m[2, 2])[:, None]
        pts = mapped
    return [Detection(pts[a:b], s) for (a, b), s in zip(spans, scores)]

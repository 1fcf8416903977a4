"""DBNet post-processing: probability map → text polygons (or rotated boxes) with scores.

The algorithm is the DBNet authors' `SegDetectorRepresenter` as the seed's code base runs it, and
it returns the same detections (tests/benchmarks/classic_postprocess.py is that reference; the
vectors in tests/fixtures/postprocess/ are its output on 12 SROIE maps):

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
integers. The classic clips too, after its scaling, to [0, dest_width] × [0, dest_height] (the
map's size by default; MhLiao/DB structure/representers/seg_detector_representer.py,
`polygons_from_bitmap`: ``np.clip(np.round(box[:, 0] / width * dest_width), 0, dest_width)``), so
with the identity, polygons equal the classic output exactly, clipped vertices included, and box
corners equal it before its final rounding; with a scale matrix, rounding ours gives the
classic's output for that destination size (tests/test_postprocess_clip.py). The clip is to the
map, not to the image: the canvas padding maps outside the original image, and
`model.predict.on_image` clips detections to the image afterwards.

Speed. The classic spends its time in Python per contour: numpy scalar arithmetic, a fresh mask
per score, shapely objects for one area and one length. Here binarizing (with the extent of the
text, so `findContours` reads only that crop), rasterising and averaging every candidate, the
box corners and the unclip distances are compiled passes over all candidates at once
(`model.postprocess_kernels`; this module keeps the steps and the OpenCV fallbacks). They copy
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

from itertools import chain
from typing import Literal, NamedTuple, Sequence

import cv2
import numpy as np
import pyclipper

# The compiled passes, under the names this module (and its tests: model.postprocess._fill, ...)
# has always used; `_opencv_copies` is looked up here at each call, so a test can replace it.
from model.postprocess_kernels import (
    area_length_ratio as _area_length_ratio,
    binarize as _binarize,
    corners as _corners,
    fill as _fill,  # noqa: F401 - not called here; tests reach it as model.postprocess._fill
    fill_scores as _fill_scores,
    min_widths as _min_widths,
    opencv_copies as _opencv_copies,
    order_corners as _order_corners,
    rect_array as _rect_array,
)

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
    return [
        postprocess(p, to_original=None if matrices is None else matrices[i], **options) for i, p in enumerate(probs)
    ]


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


# -- the compiled copy where it matches the installed OpenCV, else OpenCV -----------------------


def _box_points(rects: np.ndarray) -> np.ndarray:
    """cv2.boxPoints of each (K, 5) rectangle, bit for bit, corners ordered as the authors'
    `get_mini_boxes` orders them: (K, 4, 2) float32."""
    formula = _opencv_copies()[1]
    if formula < 0:  # an OpenCV whose boxPoints we have not copied: ask it, one by one
        raw = np.stack([cv2.boxPoints(((r[0], r[1]), (r[2], r[3]), r[4])) for r in rects.tolist()])
    else:
        raw = _corners(rects, formula)
    return _order_corners(raw)


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

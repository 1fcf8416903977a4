"""The compiled passes of DB post-processing (`model.postprocess`): numba copies of OpenCV's and
GEOS's arithmetic, run over all candidates of a map at once.

Each copy reproduces its original bit for bit, so swapping one for the other changes no output:

* `binarize`: ``prob > thresh`` as uint8, with the extent of the on pixels (so `findContours`
  reads only that crop);
* `fill_scores`, `fill`, `line`: the mean probability inside each polygon as `cv2.fillPoly`
  rasterises it (its 8-connected edges, then its 16.16 fixed-point scanlines);
* `corners`, `order_corners`: `cv2.boxPoints` (OpenCV 4's and 5's formulas) and the DBNet
  authors' `get_mini_boxes` corner order;
* `area_length_ratio`: the unclip distance area × ratio / perimeter, summed in the order GEOS
  (shapely) sums it;
* `min_widths`: a lower bound of a polygon's minimum-area-rectangle sides (no OpenCV
  counterpart; it only decides where OpenCV must be asked).

`opencv_copies` checks once per process that the copies match the installed OpenCV; where one
does not, `model.postprocess` calls OpenCV instead (slower, same output). tests/test_postprocess.py
checks the copies against OpenCV and shapely on thousands of random shapes.
"""

from __future__ import annotations

import functools
import math

import cv2
import numba
import numpy as np

# -- binarize ----------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def binarize(prob, thresh):  # pragma: no cover - compiled
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


# -- scores: cv2.fillPoly and the mean inside ---------------------------------------------------


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})  # reassoc: the sums vectorise
def fill_scores(prob, pts, starts, crop):  # pragma: no cover - compiled
    """Per polygon: rasterise it into a crop-sized mask (`fill`), average `prob` over the mask
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
        fill(sub, xs, ys, work[2:])
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
def fill(mask, xs, ys, work):  # pragma: no cover - compiled
    """cv2.fillPoly(mask, [polygon], 1) for integer vertices inside `mask` (shift 0, LINE_8).

    OpenCV's two steps, copied: every edge drawn as an 8-connected line, then each row y filled
    between consecutive pairs of the crossings of the edges with y0 <= y < y1, computed in 16.16
    fixed point from the upper end (slope truncated towards zero), from ceil(left) to
    floor(right). `work`: (5, len(xs)) int64 scratch.
    """
    n = len(xs)
    for i in range(n):
        j = i - 1 if i > 0 else n - 1
        line(mask, xs[j], ys[j], xs[i], ys[i])
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
def line(mask, x0, y0, x1, y1):  # pragma: no cover - compiled
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


# -- box corners ---------------------------------------------------------------------------------


def rect_array(rects: list) -> np.ndarray:
    """cv2.minAreaRect results → (K, 5) float32: centre x, y, width, height, angle."""
    return np.array([(c[0], c[1], s[0], s[1], a) for c, s, a in rects], np.float32).reshape(-1, 5)


@numba.njit(cache=True, nogil=True)
def corners(rects, formula):  # pragma: no cover - compiled
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
def order_corners(pts):  # pragma: no cover - compiled
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


# -- unclip distances and the size filter --------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def area_length_ratio(pts, starts, ratio):  # pragma: no cover - compiled
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
def min_widths(pts, starts):  # pragma: no cover - compiled
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
                while (
                    m >= base + 2
                    and (
                        (hull[m - 1, 0] - hull[m - 2, 0]) * (y - hull[m - 2, 1])
                        - (hull[m - 1, 1] - hull[m - 2, 1]) * (x - hull[m - 2, 0])
                    )
                    <= 0
                ):
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


# -- are the copies faithful to the installed OpenCV? --------------------------------------------


@functools.cache
def opencv_copies() -> tuple[bool, int]:
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
        mine = np.zeros((h, w + 1), np.uint8)[:, :w]  # a strided view, as `fill_scores` passes
        fill(mine, xs.astype(np.int64), ys.astype(np.int64), np.empty((5, n), np.int64))
        fill_ok = fill_ok and bool((ref == mine).all())
    clouds = [rng.integers(0, 960, (int(rng.integers(3, 12)), 2)).astype(np.int32) for _ in range(200)]
    rects = [cv2.minAreaRect(c) for c in clouds]
    ref = np.stack([cv2.boxPoints(r) for r in rects])
    array = rect_array(rects)
    formula = next((f for f in (0, 1) if np.array_equal(corners(array, f), ref)), -1)
    return fill_ok, formula

"""Voting ensemble of K prediction sets of the same images (the seed's 5-fold plan, docs/design.md §1).

    fused = ensemble([fold0, fold1, fold2, fold3, fold4], min_vote=3, iou=0.5)

Per image, words from all models are clustered by polygon IoU and a cluster supported by at least
`min_vote` models is kept, its coordinates fused. An image missing from a model's predictions
counts as "that model found no words there"; every image seen in any input is in the output.

**Clustering** (greedy, deterministic). Words are processed by descending score (a word without a
score counts 1.0), then model order, then geometry (top, left, bottom, right of the bounding box),
so the input word order never matters. A word joins the existing cluster whose *seed* (its first
word) it overlaps best with IoU >= `iou` and that holds no word of its own model yet; otherwise it
seeds a new cluster. A model's words therefore never merge with each other, and a cluster's vote
count is the number of models in it.

**Speed.** Candidate pairs come from a sort-and-sweep over bounding boxes (x sorted, words of the
same model skipped), so only boxes that overlap are ever compared and memory stays linear in the
number of words. The exact IoU of a candidate pair is computed with Sutherland-Hodgman clipping
against the convex one of the two (numba); only pairs where neither polygon is convex, or a polygon
is not simple, go to shapely (vectorised).

**Fusion.** A member's weight is its model's weight times its score (when present); a cluster whose
weights sum to zero falls back to equal weights. Every polygon is first put in a canonical form:
positive orientation (clockwise on the image, y down) starting at its top-left vertex (least x + y).

- All members with 4 vertices (what the DBNet post-processing and most annotations give): the
  corners are averaged vertex by vertex, so a fused quadrilateral is still a quadrilateral.
- Otherwise (vertex counts differ, or contours): each polygon is sampled along its perimeter at the
  union of all members' vertex positions, as fractions of the perimeter from the canonical start,
  the samples averaged, then vertices that lie within 0.5 px of the line through their neighbours
  dropped. Sampling at every member's own vertices keeps each member's corners (equal-fraction
  resampling would cut them), and unlike fusing min-area rectangles it keeps skewed or curved
  shapes.

Output per image: fused words sorted by top (least y) then left (least x), ids '0001', ...; the
score is the mean of the members' scores (None when no member had one); no transcription.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numba
import numpy as np
import shapely

from model.data.ufo import Images, Word, word_ids
from model.errors import DataError

COLLINEAR_PX = 0.5


def ensemble(
    predictions: Sequence[Mapping[str, Mapping[str, Word]]],
    *,
    min_vote: int = 3,
    iou: float = 0.5,
    weights: Sequence[float] | None = None,
) -> Images:
    """Fuse K prediction sets (UFO `Images`) into one; see the module docstring."""
    k = len(predictions)
    if k == 0:
        raise DataError("ensemble: no prediction sets given")
    if isinstance(min_vote, bool) or not isinstance(min_vote, (int, np.integer)) or not 1 <= min_vote <= k:
        raise DataError(
            f"ensemble: min_vote must be an integer in 1..{k} (the number of prediction sets), got {min_vote!r}"
        )
    if isinstance(iou, bool) or not isinstance(iou, (int, float, np.floating)) or not (0 < float(iou) <= 1):
        raise DataError(f"ensemble: iou must be in (0, 1], got {iou!r}")
    if weights is None:
        model_w = np.ones(k)
    else:
        model_w = np.asarray(list(weights), dtype=np.float64)
        if model_w.shape != (k,):
            raise DataError(f"ensemble: {len(model_w)} weight(s) given for {k} prediction sets")
        if not np.all(np.isfinite(model_w)) or np.any(model_w < 0) or not np.any(model_w > 0):
            raise DataError(f"ensemble: weights must be finite, >= 0 and not all 0, got {model_w.tolist()}")

    names: dict[str, None] = {}
    for pred in predictions:
        names.update(dict.fromkeys(pred))
    out: Images = {}
    for name in names:
        per_model = [pred.get(name) or {} for pred in predictions]
        out[name] = fuse_image(per_model, min_vote=int(min_vote), iou=float(iou), model_weights=model_w, image=name)
    return out


def fuse_image(
    per_model: Sequence[Mapping[str, Word]], *, min_vote: int, iou: float, model_weights: np.ndarray, image: str = ""
) -> dict[str, Word]:
    """One image: K models' words -> fused words (ids '0001', ...)."""
    k = len(per_model)
    polys, model, score, has_score = [], [], [], []
    for m, words in enumerate(per_model):
        for wid, word in words.items():
            pts = np.asarray(word.points, dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.all(np.isfinite(pts)):
                raise DataError(
                    f"ensemble: prediction set {m + 1}: image {image!r}: word {wid!r}: points must be (N >= 3, 2) finite numbers"
                )
            polys.append(pts)
            model.append(m)
            has_score.append(word.score is not None)
            score.append(1.0 if word.score is None else float(word.score))
    n = len(polys)
    if n == 0:
        return {}
    model_a = np.asarray(model, dtype=np.int64)
    score_a = np.asarray(score)
    has_a = np.asarray(has_score)
    counts = np.fromiter((len(p) for p in polys), np.int64, n)
    start = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=start[1:])
    xy, area, convex = _canonical(np.concatenate(polys), start)
    x0 = np.minimum.reduceat(xy[:, 0], start[:-1])
    y0 = np.minimum.reduceat(xy[:, 1], start[:-1])
    x1 = np.maximum.reduceat(xy[:, 0], start[:-1])
    y1 = np.maximum.reduceat(xy[:, 1], start[:-1])

    # Non-convex polygons: clipping needs them simple; the others go to shapely.
    simple = np.ones(n, bool)
    if not convex.all():
        odd = np.flatnonzero(~convex)
        simple[odd] = shapely.is_valid(_polygons(xy, start, odd))

    pi, pj = _candidate_pairs(x0, y0, x1, y1, model_a)
    ious = _pair_iou(xy, start, area, convex, simple, pi, pj, int(counts.max()))
    todo = np.flatnonzero(np.isnan(ious))
    if len(todo):
        ious[todo] = _shapely_iou(xy, start, pi[todo], pj[todo])
    keep = ious >= iou
    a, b, s = pi[keep], pj[keep], ious[keep]
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    sim = np.concatenate([s, s])
    by_src = np.argsort(src, kind="stable")
    nbr_start = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=nbr_start[1:])
    order = np.lexsort((x1, y1, x0, y0, model_a, -score_a))
    cluster, n_clusters = _greedy(order, model_a, k, nbr_start, dst[by_src], sim[by_src])

    votes = np.bincount(cluster, minlength=n_clusters)
    kept = votes >= min_vote
    if not kept.any():
        return {}
    members = np.flatnonzero(kept[cluster])
    members = members[np.lexsort((model_a[members], cluster[members]))]  # by cluster, then model
    mc = cluster[members]
    w = model_weights[model_a[members]] * np.where(has_a[members], score_a[members], 1.0)
    firsts = np.flatnonzero(np.r_[True, mc[1:] != mc[:-1]])
    ids = mc[firsts]
    wsum = np.add.reduceat(w, firsts)
    sizes = np.diff(np.r_[firsts, len(members)])
    zero = np.repeat(wsum <= 0, sizes)
    w = np.where(zero, 1.0, w)
    wsum = np.add.reduceat(w, firsts)

    fused: list[np.ndarray] = [None] * len(ids)  # type: ignore[list-item]
    quad = counts[members] == 4
    all_quad = np.logical_and.reduceat(quad, firsts)
    if all_quad.any():
        sel = np.repeat(all_quad, sizes)
        qm = members[sel]
        pts = xy[start[qm][:, None] + np.arange(4)] * w[sel][:, None, None]
        qfirst = np.flatnonzero(np.r_[True, mc[sel][1:] != mc[sel][:-1]])
        avg = np.add.reduceat(pts, qfirst, axis=0) / wsum[all_quad][:, None, None]
        for slot, p in zip(np.flatnonzero(all_quad), avg):
            fused[slot] = p
    for slot in np.flatnonzero(~all_quad):
        lo, hi = firsts[slot], firsts[slot] + sizes[slot]
        fused[slot] = _fuse_mixed([xy[start[i] : start[i + 1]] for i in members[lo:hi]], w[lo:hi])

    scored = np.add.reduceat(has_a[members].astype(np.int64), firsts)
    score_sum = np.add.reduceat(np.where(has_a[members], score_a[members], 0.0), firsts)
    tops = np.array([p[:, 1].min() for p in fused])
    lefts = np.array([p[:, 0].min() for p in fused])
    out_order = np.lexsort((ids, lefts, tops))
    result = {}
    for wid, slot in zip(word_ids(len(ids)), out_order):
        sc = float(score_sum[slot] / scored[slot]) if scored[slot] else None
        result[wid] = Word(np.ascontiguousarray(fused[slot]), None, sc)
    return result


# ---------------------------------------------------------------------------------------------
# Geometry


@numba.njit(cache=True, nogil=True)
def _canonical(xy, start):
    """Positive orientation, start at the least x + y vertex; areas; convexity (simple, convex)."""
    out = np.empty_like(xy)
    n = len(start) - 1
    area = np.empty(n)
    convex = np.zeros(n, np.bool_)
    for p in range(n):
        s, e = start[p], start[p + 1]
        m = e - s
        twice = 0.0
        for t in range(m):
            u = s + t
            v = s + (t + 1) % m
            twice += xy[u, 0] * xy[v, 1] - xy[v, 0] * xy[u, 1]
        flip = twice < 0
        best, best_v = 0, np.inf
        for t in range(m):
            u = s + (m - 1 - t if flip else t)
            val = xy[u, 0] + xy[u, 1]
            if val < best_v:
                best_v, best = val, t
        for t in range(m):
            q = (best + t) % m
            u = s + (m - 1 - q if flip else q)
            out[s + t, 0] = xy[u, 0]
            out[s + t, 1] = xy[u, 1]
        area[p] = abs(twice) / 2
        # convex: no right turn and total turning of one full circle (rules out stars)
        ok = area[p] > 0
        turning = 0.0
        for t in range(m):
            a, b, c = s + t, s + (t + 1) % m, s + (t + 2) % m
            ex, ey = out[b, 0] - out[a, 0], out[b, 1] - out[a, 1]
            fx, fy = out[c, 0] - out[b, 0], out[c, 1] - out[b, 1]
            cross = ex * fy - ey * fx
            if cross < 0:
                ok = False
            turning += math.atan2(cross, ex * fx + ey * fy)
        convex[p] = ok and abs(turning - 2 * math.pi) < 1e-6
    return out, area, convex


@numba.njit(cache=True, nogil=True)
def _candidate_pairs(x0, y0, x1, y1, model):
    """Pairs (i, j) of words of different models whose bounding boxes overlap: sort and sweep on x."""
    n = len(x0)
    order = np.argsort(x0, kind="mergesort")
    cap = 8 * n + 16
    pi = np.empty(cap, np.int64)
    pj = np.empty(cap, np.int64)
    k = 0
    for a in range(n):
        i = order[a]
        for b in range(a + 1, n):
            j = order[b]
            if x0[j] >= x1[i]:
                break
            if model[i] == model[j] or y0[j] >= y1[i] or y0[i] >= y1[j]:
                continue
            if k == cap:
                cap *= 2
                ni = np.empty(cap, np.int64)
                nj = np.empty(cap, np.int64)
                ni[:k] = pi[:k]
                nj[:k] = pj[:k]
                pi, pj = ni, nj
            pi[k] = min(i, j)
            pj[k] = max(i, j)
            k += 1
    return pi[:k], pj[:k]


@numba.njit(cache=True, nogil=True)
def _clip_area(xy, s0, n0, c0, nc, bin_, bout):
    """Area of polygon xy[s0:s0+n0] ∩ convex polygon xy[c0:c0+nc] (both positive orientation)."""
    m = n0
    for t in range(n0):
        bin_[t, 0] = xy[s0 + t, 0]
        bin_[t, 1] = xy[s0 + t, 1]
    for e in range(nc):
        if m == 0:
            return 0.0
        ax, ay = xy[c0 + e, 0], xy[c0 + e, 1]
        ex = xy[c0 + (e + 1) % nc, 0] - ax
        ey = xy[c0 + (e + 1) % nc, 1] - ay
        k = 0
        px, py = bin_[m - 1, 0], bin_[m - 1, 1]
        pd = ex * (py - ay) - ey * (px - ax)
        for t in range(m):
            qx, qy = bin_[t, 0], bin_[t, 1]
            qd = ex * (qy - ay) - ey * (qx - ax)
            if qd >= 0:
                if pd < 0:
                    r = pd / (pd - qd)
                    bout[k, 0] = px + r * (qx - px)
                    bout[k, 1] = py + r * (qy - py)
                    k += 1
                bout[k, 0] = qx
                bout[k, 1] = qy
                k += 1
            elif pd > 0:
                r = pd / (pd - qd)
                bout[k, 0] = px + r * (qx - px)
                bout[k, 1] = py + r * (qy - py)
                k += 1
            px, py, pd = qx, qy, qd
        bin_, bout = bout, bin_
        m = k
    twice = 0.0
    for t in range(m):
        u = (t + 1) % m
        twice += bin_[t, 0] * bin_[u, 1] - bin_[u, 0] * bin_[t, 1]
    return max(twice / 2, 0.0)


@numba.njit(cache=True, nogil=True)
def _pair_iou(xy, start, area, convex, simple, pi, pj, max_n):
    """IoU per candidate pair by clipping against the convex polygon; NaN where shapely must do it."""
    size = 2 * max_n * (max_n + 1) + 8
    b1 = np.empty((size, 2))
    b2 = np.empty((size, 2))
    out = np.empty(len(pi))
    for q in range(len(pi)):
        i, j = pi[q], pj[q]
        if not (simple[i] and simple[j]):
            out[q] = np.nan
            continue
        if convex[j]:
            inter = _clip_area(xy, start[i], start[i + 1] - start[i], start[j], start[j + 1] - start[j], b1, b2)
        elif convex[i]:
            inter = _clip_area(xy, start[j], start[j + 1] - start[j], start[i], start[i + 1] - start[i], b1, b2)
        else:
            out[q] = np.nan
            continue
        union = area[i] + area[j] - inter
        out[q] = inter / union if union > 0 else 0.0
    return out


def _shapely_iou(xy, start, pi, pj) -> np.ndarray:
    idx = np.unique(np.concatenate([pi, pj]))
    geoms = shapely.make_valid(_polygons(xy, start, idx))
    pos = {int(i): g for i, g in zip(idx, geoms)}
    ga = np.array([pos[int(i)] for i in pi], dtype=object)
    gb = np.array([pos[int(j)] for j in pj], dtype=object)
    inter = shapely.area(shapely.intersection(ga, gb))
    union = shapely.area(ga) + shapely.area(gb) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _polygons(xy, start, idx) -> np.ndarray:
    """Shapely polygons of words `idx`, whatever their vertex counts (a list of arrays of
    different lengths is not an array shapely.polygons accepts)."""
    idx = np.asarray(idx, dtype=np.int64)
    counts = start[idx + 1] - start[idx]
    coords = np.concatenate([xy[start[i] : start[i + 1]] for i in idx])
    return shapely.polygons(shapely.linearrings(coords, indices=np.repeat(np.arange(len(idx)), counts)))


@numba.njit(cache=True, nogil=True)
def _greedy(order, model, k, nbr_start, nbr, nbr_iou):
    """Attach each word (in `order`) to the best-IoU cluster seed lacking its model, else seed one."""
    n = len(order)
    cluster = np.full(n, -1, np.int64)
    seed_of = np.full(n, -1, np.int64)
    has = np.zeros((n, k), np.bool_)
    n_clusters = 0
    for t in range(n):
        w = order[t]
        m = model[w]
        best, best_iou = -1, -1.0
        for q in range(nbr_start[w], nbr_start[w + 1]):
            c = seed_of[nbr[q]]
            if c < 0 or has[c, m]:
                continue
            s = nbr_iou[q]
            if s > best_iou or (s == best_iou and c < best):
                best, best_iou = c, s
        if best < 0:
            best = n_clusters
            n_clusters += 1
            seed_of[w] = best
        cluster[w] = best
        has[best, m] = True
    return cluster, n_clusters


def _fuse_mixed(polys: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    """Weighted mean of canonical polygons sampled at the union of their vertices' perimeter fractions."""
    closed, cums, fracs = [], [], []
    for p in polys:
        c = np.vstack([p, p[:1]])
        seg = np.hypot(*np.diff(c, axis=0).T)
        cum = np.r_[0.0, np.cumsum(seg)]
        total = cum[-1]
        closed.append(c)
        cums.append(cum / total if total > 0 else np.linspace(0, 1, len(c)))
        fracs.append(cums[-1][:-1])
    u = np.unique(np.round(np.concatenate(fracs), 9))
    acc = np.zeros((len(u), 2))
    for c, cum, wt in zip(closed, cums, w):
        acc[:, 0] += wt * np.interp(u, cum, c[:, 0])
        acc[:, 1] += wt * np.interp(u, cum, c[:, 1])
    return _drop_collinear(acc / w.sum())


def _drop_collinear(pts: np.ndarray, tol: float = COLLINEAR_PX) -> np.ndarray:
    """Drop vertices within `tol` px of the line from the last kept vertex to the next one."""
    n = len(pts)
    keep = [0]
    for i in range(1, n):
        a, b, c = pts[keep[-1]], pts[i], pts[(i + 1) % n]
        d = c - a
        length = math.hypot(d[0], d[1])
        dist = abs(d[0] * (b[1] - a[1]) - d[1] * (b[0] - a[0])) / length if length > 0 else math.hypot(*(b - a))
        if dist >= tol:
            keep.append(i)
    return pts[keep] if len(keep) >= 4 else pts

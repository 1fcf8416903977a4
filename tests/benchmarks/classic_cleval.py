"""CLEval detection as the classic evaluators run it: box objects and loops over every pair.

The reference our vectorised `model.metrics` is timed against (and checked with). It follows the
competition baseline's algorithm step by step, one Python loop per matrix, the way the official
package and the baseline are written: a polygon object per box, an intersection per (gt, det)
pair, a point-in-polygon call per (centre, det) pair, Qhull for every minimum-area rectangle.
Exactness rules are the same as ours (see model/metrics.py): integer coordinates, float32
rotating calipers in Qhull's vertex order, GPC's crossing test, even-odd regions.
"""

from __future__ import annotations

import numpy as np
import shapely
from scipy.spatial import ConvexHull

from model.submission import round_half_away

EPS32 = np.finfo(np.float32).eps
AP = 0.3


class Box:
    def __init__(self, points, text=None):
        self.points = [(int(x), int(y)) for x, y in points]
        polygon = shapely.Polygon(self.points)
        self.region = polygon if polygon.is_valid else shapely.make_valid(polygon, method="linework")
        self.dont_care = text == "###"
        self.aspect_ratio = min_rect_aspect_ratio(self.points)
        self.chars = pseudo_chars(self.aspect_ratio) if text is None or self.dont_care else len(text)

    def area(self) -> float:
        twice = 0
        for (x0, y0), (x1, y1) in zip(self.points, self.points[1:] + self.points[:1]):
            twice += (x0 + x1) * (y1 - y0)
        return 0.5 * abs(twice)

    def contains(self, x: float, y: float) -> bool:
        inside = False
        n = len(self.points)
        for i in range(n):
            (xi, yi), (xj, yj) = self.points[i], self.points[i - 1]
            if (yi <= y < yj) or (yj <= y < yi):
                if x < (xj - xi) * (y - yi) / (yj - yi) + xi:
                    inside = not inside
        return inside

    def centres(self) -> list[tuple[float, float]]:
        n = self.chars
        half = len(self.points) // 2
        top, bottom = self.points[:half], self.points[half:][::-1]
        new_top, new_bottom = [], []
        for s in range(half - 1):
            for line, out in ((top, new_top), (bottom, new_bottom)):
                (x0, y0), (x1, y1) = line[s], line[s + 1]
                out.append((x0, y0))
                out += [(int(x0 + (x1 - x0) / n * k), int(y0 + (y1 - y0) / n * k)) for k in range(1, n)]
        new_top.append(top[-1])
        new_bottom.append(bottom[-1])
        step = (len(new_top) - 1) / n
        centres = []
        for c in range(n):
            a, b = int(c * step), int((c + 1) * step)
            xs = new_top[a][0] + new_top[b][0] + new_bottom[a][0] + new_bottom[b][0]
            ys = new_top[a][1] + new_top[b][1] + new_bottom[a][1] + new_bottom[b][1]
            centres.append((xs / 4, ys / 4))
        return centres


def min_rect_aspect_ratio(points) -> np.float32:
    pts = np.array(points, dtype=np.float32)
    try:
        hull = [pts[i] for i in ConvexHull(pts).vertices]
    except Exception:  # flat: no rectangle
        return np.float32(0) / (0 + EPS32)
    best = None
    for p0, p1 in zip(hull, hull[1:] + hull[:1]):
        length = float(np.sqrt(np.float64((p0[0] - p1[0]) ** 2 + (p0[1] - p1[1]) ** 2)))
        u = ((p1[0] - p0[0]) / length, (p1[1] - p0[1]) / length)
        o = (-u[1], u[0])
        along = [u[0] * p[0] + u[1] * p[1] for p in hull]
        across = [o[0] * p[0] + o[1] * p[1] for p in hull]
        width, height = max(along) - min(along), max(across) - min(across)
        if best is None or width * height < best[0]:
            best = (width * height, width, height)
    return min(np.float32(100), best[2] / (best[1] + EPS32))


def pseudo_chars(ar) -> int:
    return int(min(round(0.5 + max(ar, 1 / (ar + EPS32))), 100))


def fp_chars(ar) -> int:
    return int(min(round(0.5 + 1 / (EPS32 + ar)), 100))


def classic_cleval(gt_polygons, det_polygons, gt_texts=None) -> tuple[float, float, float]:
    """(recall, precision, hmean) of one image, float32 values."""
    texts = gt_texts or [None] * len(gt_polygons)
    gts = [Box(np.rint(np.asarray(p, float)), t) for p, t in zip(gt_polygons, texts) if len(p) >= 4]
    dets = [Box(round_half_away(np.asarray(p, float))) for p in det_polygons if len(p) >= 4]
    G, D = len(gts), len(dets)
    dc = {g for g in range(G) if gts[g].dont_care}
    centres = [box.centres() for box in gts]
    for g in dc:  # a don't-care box loses the real boxes it overlaps
        for other in range(G):
            if other not in dc and gts[other].region.intersection(gts[g].region).area > 0:
                gts[g].region = gts[g].region.difference(gts[other].region)

    ap = np.zeros((G, D), np.float32)
    inside = [[[False] * len(centres[g]) for _ in range(D)] for g in range(G)]
    pcc = np.zeros((G, D), np.int64)
    for g in range(G):
        for d in range(D):
            area = dets[d].area()
            if area > 0:
                ap[g, d] = gts[g].region.intersection(dets[d].region).area / area
            for k, (x, y) in enumerate(centres[g]):
                if dets[d].contains(x, y):
                    inside[g][d][k] = True
                    pcc[g, d] += 1
    enough = ap >= np.float32(AP)

    det_dc = set()
    for d in range(D):
        total = np.float32(0)
        for g in dc:
            if enough[g, d]:
                det_dc.add(d)
                break
            if pcc[g, d] > 0:
                total = np.float32(total + ap[g, d])
        if total >= np.float32(AP):
            det_dc.add(d)
    valid_g = [g for g in range(G) if g not in dc]
    valid_d = [d for d in range(D) if d not in det_dc]

    match = np.zeros((G, D), bool)
    partner = enough & (pcc > 0)
    for g in valid_g:
        for d in valid_d:
            if partner[g, d] and partner[g].sum() == 1 and partner[:, d].sum() == 1:
                match[g, d] = True
    for g in valid_g:
        ds = [d for d in valid_d if partner[g, d]]
        if len(ds) >= 2:
            match[g, ds] = True
    for d in valid_d:
        gs = [g for g in valid_g if pcc[g, d] > 0]
        if len(gs) >= 2 and sum(float(ap[g, d]) for g in gs) >= AP:
            match[gs, d] = True

    checked = [[False] * len(c) for c in centres]
    tp = det_chars = 0
    gran_p = gran_r = 0.0
    for d in valid_d:
        gs = np.flatnonzero(match[:, d])
        for g in gs:
            for k in range(len(centres[g])):
                if inside[g][d][k]:
                    det_chars += 1
                    if not checked[g][k]:
                        checked[g][k] = True
                        tp += 1
        gran_p += max(len(gs) - 1, 0)
        if not len(gs):
            det_chars += fp_chars(dets[d].aspect_ratio)
    for g in valid_g:
        gran_r += max(int(match[g].sum()) - 1, 0)
    gt_chars = sum(gts[g].chars for g in valid_g)

    f32 = np.float32
    recall = f32(0) if gt_chars == 0 else f32(max(f32(0), f32(f32(tp) - f32(gran_r))) / f32(gt_chars))
    precision = f32(0) if det_chars == 0 else f32(max(f32(0), f32(f32(tp) - f32(gran_p))) / f32(det_chars))
    hmean = f32(0) if recall + precision == 0 else f32(f32(f32(2 * recall) * precision) / f32(recall + precision))
    return float(recall), float(precision), float(hmean)

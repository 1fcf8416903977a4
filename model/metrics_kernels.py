"""The vectorised geometry behind `model.metrics` (CLEval): integer rings, character counts and
centres, point-in-polygon and area precision, each over all boxes of an image at once.

Every expression here reproduces the competition baseline's arithmetic on purpose (float32 steps,
rounding, the even-odd rules, Qhull's order on ties); `model.metrics`' docstring ("Exactness") says
why each matters, and tests/test_metrics.py checks the whole against the reference vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

MAX_PSEUDO_CHARS = 100
_EPS32 = np.finfo(np.float32).eps


@dataclass(frozen=True)
class Rings:
    """Integer polygons of one image, stored flat: ring i is coords[starts[i]:starts[i] + sizes[i]]."""

    coords: np.ndarray  # (M, 2) int64
    sizes: np.ndarray  # (n,) int64, each >= 4

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.sizes) - self.sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def ring(self, i: int) -> np.ndarray:
        start = int(self.sizes[:i].sum())
        return self.coords[start : start + int(self.sizes[i])]

    def subset(self, index: np.ndarray) -> Rings:
        index = np.asarray(index, dtype=np.int64)
        rows = np.repeat(self.starts[index], self.sizes[index]) + ranks(self.sizes[index])
        return Rings(self.coords[rows], self.sizes[index])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.minimum.reduceat(self.coords, self.starts), np.maximum.reduceat(self.coords, self.starts)

    def next_rows(self) -> np.ndarray:
        """Row of each vertex's successor along its ring (the last one wraps to the first)."""
        rows = np.arange(len(self.coords)) + 1
        ends = np.cumsum(self.sizes)
        rows[ends - 1] = ends - self.sizes
        return rows

    def areas(self) -> np.ndarray:
        """|shoelace| / 2 of each ring as given (exact on integers): a self-intersecting ring's lobes cancel."""
        x, y = self.coords[:, 0], self.coords[:, 1]
        nxt = self.next_rows()
        twice = np.add.reduceat((x + x[nxt]) * (y[nxt] - y), self.starts)
        return 0.5 * np.abs(twice).astype(np.float64)


def ranks(sizes: np.ndarray) -> np.ndarray:
    """0..size-1 for each size, concatenated."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


EMPTY_RINGS = Rings(np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Characters: counts from the minimum-area rectangle, centres along the box


def pseudo_chars(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Ground truth without text: min(round(0.5 + max(AR, 1/(AR + eps))), 100), in float32."""
    ar = _aspect_ratio(width, height)
    inverse = np.float32(1) / (ar + _EPS32)
    longest = np.where(inverse > ar, inverse, ar)  # Python's max(AR, 1/AR): the first unless the second is larger
    return np.minimum(np.rint(np.float32(0.5) + longest), MAX_PSEUDO_CHARS).astype(np.int64)


def false_positive_chars(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """An unmatched detection: min(round(0.5 + 1/(eps + AR)), 100); not symmetric in the sides."""
    ar = _aspect_ratio(width, height)
    return np.minimum(np.rint(np.float32(0.5) + np.float32(1) / (_EPS32 + ar)), MAX_PSEUDO_CHARS).astype(np.int64)


def _aspect_ratio(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """min(100, height / (width + eps)) in float32 (round() of a float32 rounds half to even)."""
    ar = (height / (width + _EPS32)).astype(np.float32)
    return np.where(ar < np.float32(100), ar, np.float32(100))


def min_rect_counts(rings: Rings, count) -> np.ndarray:
    """count(width, height) of each ring's minimum-area rectangle, ties resolved as the baseline."""
    counts = np.empty(len(rings), dtype=np.int64)
    hulls = _convex_hulls(rings)
    # Qhull fails on a flat hull; the baseline then reports a (0, 0) rectangle.
    flat = [i for i, h in enumerate(hulls) if len(h) < 3]
    counts[flat] = count(np.zeros(len(flat), np.float32), np.zeros(len(flat), np.float32))
    by_size: dict[int, list[int]] = {}  # hulls with as many vertices: one (B, K, 2) array
    for i, h in enumerate(hulls):
        if len(h) >= 3:
            by_size.setdefault(len(h), []).append(i)
    for idx in by_size.values():
        width, height, area = _calipers(np.stack([hulls[i] for i in idx]).astype(np.float32))
        rows = np.arange(len(idx))
        best = np.argmin(area, axis=1)  # the first edge of least area, as the baseline's loop
        every = count(width, height)
        chosen = every[rows, best]
        tied = area == area[rows, best][:, None]
        # Tied edges whose sides count differently: the hull's first vertex decides. Ask Qhull.
        for r in np.flatnonzero((tied & (every != chosen[:, None])).any(axis=1)):
            chosen[r] = _count_in_qhull_order(rings.ring(idx[r]), count)
        counts[idx] = chosen
    return counts


def _calipers(hulls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, K, 2) float32 hulls -> per edge: side along it, side across it and area, (B, K) float32.

    The baseline's arithmetic in its NumPy 2 float32 steps: the edge length is a double square root
    of a float32 sum, rounded to float32 for the division; a projection is np.dot of two float32
    pairs, a float32 multiply and add (no fused multiply-add).
    """
    x, y = hulls[..., 0], hulls[..., 1]
    nx, ny = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    dx, dy = x - nx, y - ny
    length = np.sqrt((_square32(dx) + _square32(dy)).astype(np.float64)).astype(np.float32)
    ux, uy = (nx - x) / length, (ny - y) / length
    ox, oy = -uy, ux
    along = ux[:, :, None] * x[:, None, :] + uy[:, :, None] * y[:, None, :]
    across = ox[:, :, None] * x[:, None, :] + oy[:, :, None] * y[:, None, :]
    width = along.max(axis=2) - along.min(axis=2)
    height = across.max(axis=2) - across.min(axis=2)
    return width, height, width * height


def _square32(v: np.ndarray) -> np.ndarray:
    """v ** 2 as the baseline's float32 scalars compute it. The scalar power is libm's powf, which
    rounds an exact tie differently from v * v; ties start past 4096 (a square above 2**24)."""
    out = v * v
    big = np.abs(v) > 4096
    if big.any():
        out[big] = [np.float32(value) ** 2 for value in v[big]]
    return out


def _count_in_qhull_order(ring: np.ndarray, count) -> int:
    from scipy.spatial import ConvexHull  # rare path; scipy.spatial costs ~0.4 s at `receiptflow score` start-up

    points = ring.astype(np.float32)
    width, height, area = _calipers(points[ConvexHull(points).vertices][None])
    best = int(np.argmin(area[0]))
    return int(count(width[:, best], height[:, best])[0])


def _convex_hulls(rings: Rings) -> list[np.ndarray]:
    """Each ring's hull vertices in one turning direction, collinear points dropped (as Qhull), int64."""
    hulls: list = [None] * len(rings)
    quads = np.flatnonzero(rings.sizes == 4)
    if len(quads):
        # The common case, a strictly convex quad, is its own hull: all turns one way.
        q = rings.subset(quads).coords.reshape(-1, 4, 2)
        e = np.roll(q, -1, axis=1) - q
        f = np.roll(e, -1, axis=1)
        turns = e[..., 0] * f[..., 1] - e[..., 1] * f[..., 0]
        convex = (turns > 0).all(axis=1) | (turns < 0).all(axis=1)
        for i, quad in zip(quads[convex].tolist(), q[convex]):
            hulls[i] = quad
    for i, h in enumerate(hulls):
        if h is None:
            hulls[i] = _monotone_chain(rings.ring(i))
    return hulls


def _monotone_chain(ring: np.ndarray) -> np.ndarray:
    points = sorted(set(map(tuple, ring.tolist())))
    if len(points) < 3:
        return np.asarray(points, dtype=np.int64).reshape(-1, 2)

    def chain(seq):
        out: list = []
        for p in seq:
            # pop while the turn is not strictly left: collinear points are not hull vertices
            while (
                len(out) >= 2
                and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])
                <= 0
            ):
                out.pop()
            out.append(p)
        return out

    return np.asarray(chain(points)[:-1] + chain(points[::-1])[:-1], dtype=np.int64).reshape(-1, 2)


def char_centres(gt: Rings, chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-character centres of every box, (K, 2) float64, and the box of each, (K,) sorted.

    The baseline cuts each section of the top line (first half of the vertices) and of the bottom
    line (second half, reversed) into `n` steps, truncating each inner point to an integer, and
    puts centre c at the mean of the points c*S and (c+1)*S of both lines (S sections). After the
    last step come the last top vertex and vertex `half` (the bottom line's end).
    """
    if not len(gt) or chars.sum() == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    points = gt.coords
    owner = np.repeat(np.arange(len(gt)), chars)
    c = ranks(chars)  # character index within its box
    n, size, off = chars[owner], gt.sizes[owner], gt.starts[owner]
    half = size // 2
    sections = half - 1
    ends = []
    for k in (c * sections, (c + 1) * sections):
        s, j = k // n, k % n
        top = _step(points[off + s], points[off + s + 1], n, j)
        bottom = _step(points[off + size - 1 - s], points[off + size - 2 - s], n, j)
        last = k == sections * n
        bottom[last] = points[(off + half)[last]]
        ends.append((top, bottom))
    (t0, b0), (t1, b1) = ends
    return ((t0 + t1 + b0 + b1) / 4).astype(np.float64), owner


def _step(start: np.ndarray, end: np.ndarray, n: np.ndarray, j: np.ndarray) -> np.ndarray:
    """int(start + (end - start) / n * j) per coordinate: float64 as the baseline, truncated toward zero."""
    return np.trunc(start + ((end - start) / n[:, None]) * j[:, None]).astype(np.int64)


def per_box(inside: np.ndarray, owner: np.ndarray, n_gt: int) -> np.ndarray:
    """Sum the (K, D) rows of each box's centres (`owner` sorted): (G, D) int64."""
    out = np.zeros((n_gt, inside.shape[1]), dtype=np.int64)
    if len(owner):
        boxes, starts = np.unique(owner, return_index=True)
        out[boxes] = np.add.reduceat(inside.astype(np.int64), starts, axis=0)
    return out


# ---------------------------------------------------------------------------------------------
# Geometry: centres inside detections, area precision


def centres_inside(centres: np.ndarray, det: Rings) -> np.ndarray:
    """(K, D) bool: the even-odd crossing test of GPC's Polygon.isInside, same expression, same rule.

    A point is tested only against the detections whose bounding box holds it (outside, the test
    is false by construction); every edge of every candidate pair is evaluated in one pass.
    """
    inside = np.zeros((len(centres), len(det)), dtype=bool)
    if not len(centres) or not len(det):
        return inside
    lo, hi = det.bounds()
    x, y = centres[:, 0], centres[:, 1]
    in_box = (x[:, None] >= lo[:, 0]) & (x[:, None] <= hi[:, 0]) & (y[:, None] >= lo[:, 1]) & (y[:, None] <= hi[:, 1])
    k, d = np.nonzero(in_box)
    if not len(k):
        return inside
    reps = det.sizes[d]
    starts = np.cumsum(reps) - reps
    pair = np.repeat(np.arange(len(k)), reps)
    edge = ranks(reps)
    first = det.starts[d][pair]
    vertices = det.coords.astype(np.float64)
    vi = vertices[first + edge]
    vj = vertices[first + np.where(edge == 0, reps[pair] - 1, edge - 1)]  # GPC's loop: j = n - 1, then i - 1
    px, py = x[k][pair], y[k][pair]
    spans = ((vi[:, 1] <= py) & (py < vj[:, 1])) | ((vj[:, 1] <= py) & (py < vi[:, 1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = (vj[:, 0] - vi[:, 0]) * (py - vi[:, 1]) / (vj[:, 1] - vi[:, 1]) + vi[:, 0]
    crossings = np.add.reduceat((spans & (px < cross_x)).astype(np.int64), starts)
    odd = (crossings & 1).astype(bool)
    inside[k[odd], d[odd]] = True
    return inside


def area_precision(gt: Rings, det: Rings, dont_care: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """(G, D) float32: area(g ∩ d) / area(d) where `needed`, 0 elsewhere and where d has no area."""
    ap = np.zeros((len(gt), len(det)), dtype=np.float32)
    if not needed.any():
        return ap
    det_area = det.areas()
    g_lo, g_hi = gt.bounds()
    d_lo, d_hi = det.bounds()
    overlap = ((np.minimum(g_hi[:, None], d_hi[None]) - np.maximum(g_lo[:, None], d_lo[None])) > 0).all(axis=2)
    overlap &= needed & (det_area > 0)[None, :]
    gi, di = np.nonzero(overlap)
    if not len(gi):
        return ap
    g_regions = _regions(gt)
    if dont_care.any():
        g_regions = _subtract_real_boxes(g_regions, dont_care)
    inter = _intersection_areas(g_regions[gi], _regions(det)[di])
    ap[gi, di] = (inter / det_area[di]).astype(np.float32)
    return ap


def _regions(rings: Rings) -> np.ndarray:
    """Each ring's even-odd region as a valid shapely geometry."""
    index = np.repeat(np.arange(len(rings)), rings.sizes)
    polygons = shapely.polygons(shapely.linearrings(rings.coords.astype(np.float64), indices=index))
    bad = ~shapely.is_valid(polygons)
    if bad.any():
        # GEOS' linework repair nodes the ring and keeps the faces an odd number of crossings deep.
        polygons[bad] = shapely.make_valid(polygons[bad], method="linework")
    return polygons


def _subtract_real_boxes(regions: np.ndarray, dont_care: np.ndarray) -> np.ndarray:
    """A don't-care box loses the area of every real box that overlaps it (the baseline's prepare_gt)."""
    regions = regions.copy()
    real = regions[~dont_care]
    for g in np.flatnonzero(dont_care):
        overlaps = real[shapely.area(shapely.intersection(real, regions[g])) > 0]
        if len(overlaps):
            regions[g] = shapely.difference(regions[g], shapely.union_all(overlaps))
    return regions


def _intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return shapely.area(shapely.intersection(a, b))
    except shapely.errors.GEOSException:
        # A robustness failure on a nearly degenerate pair: redo pair by pair, snapping only those.
        out = np.empty(len(a))
        for i, (p, q) in enumerate(zip(a, b)):
            try:
                out[i] = shapely.area(shapely.intersection(p, q))
            except shapely.errors.GEOSException:
                out[i] = shapely.area(shapely.intersection(p, q, grid_size=1e-9))
        return out

"""CLEval detection H-Mean, the competition metric behind `val/hmean` (DESIGN.md §1), exactly.

CLEval (Baek et al., 2020, arXiv:2006.06244) scores detection per character instead of per box. As
the competition's baseline runs it (every box a general polygon, no transcriptions), for one image:

1. **Characters.** A ground-truth box has ``len(transcription)`` characters, or, without one,
   ``min(round(0.5 + max(AR, 1/AR)), 100)`` pseudo-characters, AR = height / width of its
   minimum-area rectangle (capped at 100). ``"###"`` marks a don't-care box. The characters'
   centres (PCCs) lie between the box's top line (its first half of vertices) and its bottom line
   (the second half, reversed), one per equal section.
2. **Area precision** ``ap[g, d] = area(g ∩ d) / area(d)``; "enough" is ``ap >= 0.3``.
3. **PCC inclusion:** which centres of ground truth g lie inside detection d.
4. **Don't care:** a don't-care box loses the area of the real boxes it overlaps; a detection that
   covers one enough (alone, or summed over those it holds a centre of) is ignored.
5. **Matching** (on valid boxes): one-to-one (each the other's only "enough + a centre" partner),
   one-to-many (a box split: two or more detections with enough area and a centre each) and
   many-to-one (boxes merged: a detection holding centres of two or more boxes whose area
   precisions sum to 0.3).
6. **Scores:** true positives are the centres covered by a matched detection; each extra partner of
   a box costs one character (granularity penalty). recall = (TP - split penalty) / GT characters;
   precision = (TP - merge penalty) / (matched centres + false-positive characters), an unmatched
   detection counting ``min(round(0.5 + 1/AR), 100)`` characters. hmean is their harmonic mean.

The dataset value the seed report and Katib use, ``val/hmean``, is the **mean over images** of the
per-image hmean (`EvalResult.hmean`); the counts summed over images give the CLEval dataset numbers.

Exactness (reference vectors: ../shared/data/cleval/). The baseline's numbers hinge on details
that a "clean" implementation would get wrong, so these are reproduced on purpose:

- Coordinates are integers: ground truth rounded as the baseline's loader does (``np.round``),
  detections as our submission CSV writes them (half away from zero).
- The rectangle comes from the baseline's rotating-calipers search over the convex hull's edges in
  float32 (NumPy 2 scalar rules); the first edge of least area wins. That choice decides which side
  is the "width", and a false positive's character count depends on it. Where edges tie (every
  rectangle) with different sides, the order of Qhull's hull (scipy) decides, so Qhull is asked in
  exactly the cases where the tie changes a count.
- Point in polygon is the even-odd crossing test with its half-open rule and its floating-point
  expression, so a centre on an edge counts as it does in the baseline.
- A polygon's area is ``|shoelace|`` of its ring as given; intersections use the ring's even-odd
  region (the GPC clipper's reading of a self-intersecting ring).
- Per-image recall, precision and hmean are float32, computed as the baseline's torch states do.

The official ``cleval`` package (0.1.1) is not used: without transcriptions it raises TypeError, its
torchmetrics path keeps 4 vertices per polygon, its POLY geometry (shapely ``buffer(0)``) and its
false-positive count (capped at 10) differ from the competition's.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import signal
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import shapely
from scipy.spatial import ConvexHull  # imported before any worker forks: each would import it again

from model.errors import DataError
from model.submission import round_half_away

AREA_PRECISION = 0.3  # AREA_PRECISION_CONSTRAINT: "enough" of a detection lies on a box
GRANULARITY_PENALTY = 1.0  # per extra partner, for recall (splits) and precision (merges)
MAX_PSEUDO_CHARS = 100
DONT_CARE = "###"
MIN_POINTS = 4  # the baseline skips polygons with fewer points

_EPS32 = np.finfo(np.float32).eps
_AP32 = np.float32(AREA_PRECISION)


@dataclass(frozen=True)
class ImageScore:
    """One image's CLEval detection scores (float32 values, as the baseline) and the counts behind them."""

    recall: float
    precision: float
    hmean: float
    num_char_gt: int  # characters of the valid (not don't-care) ground truth
    num_char_det: int  # matched centres, with repeats, plus false-positive characters
    num_char_tp: int  # distinct centres covered by a matched detection
    num_char_fp: int  # characters of unmatched detections
    gran_recall: float  # split penalty
    gran_precision: float  # merge penalty
    num_gt: int
    num_det: int
    num_dont_care: int
    num_split: int  # ground-truth boxes matched by two or more detections
    num_merged: int  # detections matched to two or more boxes

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvalResult:
    """Means over images (`hmean` is `val/hmean`), the dataset-level CLEval numbers and every image's score."""

    recall: float
    precision: float
    hmean: float
    dataset_recall: float
    dataset_precision: float
    dataset_hmean: float
    per_image: dict[str, ImageScore] = field(repr=False)

    def to_json(self) -> dict:
        return {
            "hmean": self.hmean,
            "precision": self.precision,
            "recall": self.recall,
            "dataset_hmean": self.dataset_hmean,
            "dataset_precision": self.dataset_precision,
            "dataset_recall": self.dataset_recall,
            "images": len(self.per_image),
            "per_image": {name: s.to_json() for name, s in self.per_image.items()},
        }


# ---------------------------------------------------------------------------------------------
# Public API


def evaluate_image(gt: Sequence[np.ndarray], det: Sequence[np.ndarray], gt_texts: Sequence[str | None] | None = None) -> ImageScore:
    """CLEval detection scores of one image: `gt` and `det` polygons ((N, 2) points, N >= 4).

    `gt_texts[i]` is ground truth i's transcription: None counts pseudo-characters from the aspect
    ratio, ``"###"`` marks it don't care, any other text counts ``len(text)`` characters (CLEval's
    rule; `evaluate` passes only the ``"###"`` marks, as the competition scores without text). An
    empty text counts no characters (the baseline divides by zero there).
    """
    if gt_texts is not None and len(gt_texts) != len(gt):
        raise DataError(f"gt_texts has {len(gt_texts)} entries for {len(gt)} ground-truth polygons")
    gt_rings, kept = _integer_rings(gt, "ground-truth", np.rint)
    det_rings, _ = _integer_rings(det, "detection", round_half_away)
    texts = [None if gt_texts is None else gt_texts[i] for i in kept]
    return _score(gt_rings, texts, det_rings)


def evaluate(gt: Mapping[str, Sequence[np.ndarray] | Mapping], det: Mapping[str, Sequence[np.ndarray] | Mapping], *, workers: int = 0) -> EvalResult:
    """CLEval over a set of images: file -> polygons (or UFO `Images`: file -> word id -> Word).

    Ground-truth images without detections score as no detections; detections for an image that is
    not in `gt` are a DataError. Only a ``"###"`` transcription of the ground truth is used (don't
    care): the competition counts every other box's characters from its shape. `workers` > 1
    scores the images in that many processes, in chunks; the numbers are identical to sequential.
    """
    extra = sorted(set(det) - set(gt))
    if extra:
        shown = ", ".join(repr(n) for n in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise DataError(f"detections for {len(extra)} image(s) not in the ground truth: {shown}")
    jobs = []
    for name, entry in gt.items():
        polygons, texts = _polygons_and_marks(entry)
        found = det.get(name)
        det_polygons = [] if found is None else _polygons_and_marks(found)[0]
        jobs.append((name, polygons, texts, det_polygons))
    if workers > 1 and len(jobs) > 1:
        scores = _score_parallel(jobs, min(workers, len(jobs)))
    else:
        scores = [_score_job(job) for job in jobs]
    return _aggregate(dict(zip((job[0] for job in jobs), scores)))


def polygons_of(images: Mapping[str, Mapping]) -> dict[str, list[np.ndarray]]:
    """UFO `Images` (file -> word id -> Word) -> file -> list of (N, 2) point arrays, in word order."""
    return {name: [word.points for word in words.values()] for name, words in images.items()}


# ---------------------------------------------------------------------------------------------
# Input


def _polygons_and_marks(entry) -> tuple[list[np.ndarray], list[str | None] | None]:
    """An image's polygons and, for words, the don't-care marks (every other text is dropped)."""
    if isinstance(entry, Mapping):
        words = list(entry.values())
        marks = [DONT_CARE if getattr(w, "transcription", None) == DONT_CARE else None for w in words]
        return [w.points for w in words], (marks if DONT_CARE in marks else None)
    return list(entry), None


@dataclass(frozen=True)
class _Rings:
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
        return self.coords[start:start + int(self.sizes[i])]

    def subset(self, index: np.ndarray) -> _Rings:
        index = np.asarray(index, dtype=np.int64)
        rows = np.repeat(self.starts[index], self.sizes[index]) + _ranks(self.sizes[index])
        return _Rings(self.coords[rows], self.sizes[index])

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


def _ranks(sizes: np.ndarray) -> np.ndarray:
    """0..size-1 for each size, concatenated."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


_EMPTY = _Rings(np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))


def _integer_rings(polygons: Sequence, what: str, rounding) -> tuple[_Rings, list[int]]:
    """The polygons with at least 4 points as integer rings, and the indices of those kept."""
    arrays, kept = [], []
    for i, polygon in enumerate(polygons):
        try:
            points = np.asarray(polygon, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{what} polygon {i}: not an array of numbers") from None
        if points.ndim == 1 and points.size % 2 == 0:
            points = points.reshape(-1, 2)  # a flat x1 y1 x2 y2 ... list
        if points.ndim != 2 or points.shape[1] != 2:
            raise DataError(f"{what} polygon {i}: shape {points.shape}; expected (N, 2) points")
        if len(points) >= MIN_POINTS:  # as the baseline: fewer points are not scored
            arrays.append(points)
            kept.append(i)
    if not arrays:
        return _EMPTY, kept
    coords = np.concatenate(arrays)
    if not np.isfinite(coords).all():
        bad = next(i for i, a in zip(kept, arrays) if not np.isfinite(a).all())
        raise DataError(f"{what} polygon {bad}: holds NaN or infinity")
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    return _Rings(rounding(coords).astype(np.int64), sizes), kept


# ---------------------------------------------------------------------------------------------
# One image


def _score(gt: _Rings, texts: list[str | None], det: _Rings) -> ImageScore:
    n_gt, n_det = len(gt), len(det)
    dont_care = np.array([t == DONT_CARE for t in texts], dtype=bool)
    from_shape = np.array([t is None or t == DONT_CARE for t in texts], dtype=bool)
    chars = np.array([0 if shape else len(t) for t, shape in zip(texts, from_shape)], dtype=np.int64)
    if from_shape.any():
        chars[from_shape] = _min_rect_counts(gt.subset(np.flatnonzero(from_shape)), _pseudo_chars)

    centres, owner = _char_centres(gt, chars)
    inside = _centres_inside(centres, det)  # (K, D): centre k inside detection d
    pcc = _per_box(inside, owner, n_gt)  # (G, D): centres of g inside d
    # Area precision decides only pairs sharing a centre, and every pair of a don't-care box.
    ap = _area_precision(gt, det, dont_care, (pcc > 0) | dont_care[:, None])  # (G, D) float32
    enough = ap >= _AP32
    det_dont_care = _dont_care_detections(dont_care, pcc, ap, enough)
    valid_gt, valid_det = ~dont_care, ~det_dont_care
    match = _match(pcc, ap, enough, valid_gt, valid_det)

    # Only centres of matched pairs count; a centre covered by two matched detections counts once
    # for TP, twice in the detections' total (as the baseline).
    tp = int((inside & match[owner]).any(axis=1).sum())
    matched_centres = int((pcc * match).sum())
    gts_per_det, dets_per_gt = match.sum(axis=0), match.sum(axis=1)
    gran_p = float(np.maximum(gts_per_det[valid_det] - 1, 0).sum()) * GRANULARITY_PENALTY
    gran_r = float(np.maximum(dets_per_gt[valid_gt] - 1, 0).sum()) * GRANULARITY_PENALTY
    unmatched = np.flatnonzero(valid_det & (gts_per_det == 0))
    fp = int(_min_rect_counts(det.subset(unmatched), _false_positive_chars).sum()) if len(unmatched) else 0
    num_gt_chars = int(chars[valid_gt].sum())
    num_det_chars = matched_centres + fp
    recall, precision, hmean = _float32_scores(tp, gran_r, gran_p, num_gt_chars, num_det_chars)
    return ImageScore(
        recall=recall, precision=precision, hmean=hmean,
        num_char_gt=num_gt_chars, num_char_det=num_det_chars, num_char_tp=tp, num_char_fp=fp,
        gran_recall=gran_r, gran_precision=gran_p,
        num_gt=n_gt, num_det=n_det, num_dont_care=int(dont_care.sum()),
        num_split=int((dets_per_gt[valid_gt] > 1).sum()), num_merged=int((gts_per_det[valid_det] > 1).sum()),
    )


def _match(pcc: np.ndarray, ap: np.ndarray, enough: np.ndarray, valid_gt: np.ndarray, valid_det: np.ndarray) -> np.ndarray:
    """(G, D) bool: the union of one-to-one, one-to-many and many-to-one matches (all on the same input)."""
    partner = enough & (pcc > 0)
    # One-to-one: the only partner of each other, counted over all boxes (don't-care ones too).
    one = partner & (partner.sum(axis=1) == 1)[:, None] & (partner.sum(axis=0) == 1)[None, :]
    valid = valid_gt[:, None] & valid_det[None, :]
    match = one & valid
    # One-to-many (split): a box with two or more valid partners.
    split = partner & valid
    match |= split & (split.sum(axis=1) >= 2)[:, None]
    # Many-to-one (merged): a detection holding centres of two or more boxes whose area precisions,
    # float32 values summed in float64 (numba in the baseline), reach the constraint.
    holds = (pcc > 0) & valid
    ap_sum = np.where(holds, ap.astype(np.float64), 0.0).sum(axis=0)
    match |= holds & ((holds.sum(axis=0) >= 2) & (ap_sum >= AREA_PRECISION))[None, :]
    return match


def _dont_care_detections(dont_care: np.ndarray, pcc: np.ndarray, ap: np.ndarray, enough: np.ndarray) -> np.ndarray:
    """Detections that cover a don't-care box enough, alone or summed over those they hold a centre of."""
    n_det = pcc.shape[1]
    ignored = np.zeros(n_det, dtype=bool)
    if not dont_care.any():
        return ignored
    # The baseline walks a Python set of indices and sums in float32: same order, same rounding.
    dc: set[int] = set()
    for g in np.flatnonzero(dont_care).tolist():
        dc.add(g)
    for d in range(n_det):
        total = np.float32(0)
        for g in dc:
            if enough[g, d]:
                ignored[d] = True
                break
            if pcc[g, d] > 0:
                total = np.float32(total + ap[g, d])
        if total >= _AP32:
            ignored[d] = True
    return ignored


def _float32_scores(tp: int, gran_r: float, gran_p: float, n_gt: int, n_det: int) -> tuple[float, float, float]:
    """recall, precision, hmean in float32, operation by operation as the baseline's torch code."""
    f32 = np.float32

    def ratio(penalty: float, total: int) -> np.float32:
        if total == 0:
            return f32(0.0)
        kept = f32(f32(tp) - f32(penalty))
        return f32(max(f32(0.0), kept) / f32(total))

    r, p = ratio(gran_r, n_gt), ratio(gran_p, n_det)
    h = f32(0.0) if f32(r + p) == 0 else f32(f32(f32(f32(2) * r) * p) / f32(r + p))
    return float(r), float(p), float(h)


# ---------------------------------------------------------------------------------------------
# Characters: counts from the minimum-area rectangle, centres along the box


def _pseudo_chars(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Ground truth without text: min(round(0.5 + max(AR, 1/(AR + eps))), 100), in float32."""
    ar = _aspect_ratio(width, height)
    inverse = np.float32(1) / (ar + _EPS32)
    longest = np.where(inverse > ar, inverse, ar)  # Python's max(AR, 1/AR): the first unless the second is larger
    return np.minimum(np.rint(np.float32(0.5) + longest), MAX_PSEUDO_CHARS).astype(np.int64)


def _false_positive_chars(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """An unmatched detection: min(round(0.5 + 1/(eps + AR)), 100); not symmetric in the sides."""
    ar = _aspect_ratio(width, height)
    return np.minimum(np.rint(np.float32(0.5) + np.float32(1) / (_EPS32 + ar)), MAX_PSEUDO_CHARS).astype(np.int64)


def _aspect_ratio(width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """min(100, height / (width + eps)) in float32 (round() of a float32 rounds half to even)."""
    ar = (height / (width + _EPS32)).astype(np.float32)
    return np.where(ar < np.float32(100), ar, np.float32(100))


def _min_rect_counts(rings: _Rings, count) -> np.ndarray:
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
    points = ring.astype(np.float32)
    width, height, area = _calipers(points[ConvexHull(points).vertices][None])
    best = int(np.argmin(area[0]))
    return int(count(width[:, best], height[:, best])[0])


def _convex_hulls(rings: _Rings) -> list[np.ndarray]:
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
            while len(out) >= 2 and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) <= 0:
                out.pop()
            out.append(p)
        return out

    return np.asarray(chain(points)[:-1] + chain(points[::-1])[:-1], dtype=np.int64).reshape(-1, 2)


def _char_centres(gt: _Rings, chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    c = _ranks(chars)  # character index within its box
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


def _per_box(inside: np.ndarray, owner: np.ndarray, n_gt: int) -> np.ndarray:
    """Sum the (K, D) rows of each box's centres (`owner` sorted): (G, D) int64."""
    out = np.zeros((n_gt, inside.shape[1]), dtype=np.int64)
    if len(owner):
        boxes, starts = np.unique(owner, return_index=True)
        out[boxes] = np.add.reduceat(inside.astype(np.int64), starts, axis=0)
    return out


# ---------------------------------------------------------------------------------------------
# Geometry: centres inside detections, area precision


def _centres_inside(centres: np.ndarray, det: _Rings) -> np.ndarray:
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
    edge = _ranks(reps)
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


def _area_precision(gt: _Rings, det: _Rings, dont_care: np.ndarray, needed: np.ndarray) -> np.ndarray:
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


def _regions(rings: _Rings) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# Many images


def _score_job(job) -> ImageScore:
    name, gt, texts, det = job
    try:
        return evaluate_image(gt, det, texts)
    except DataError as exc:
        raise DataError(f"image {name!r}: {exc}") from None


def _chunks(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) ranges that shrink as they go (guided scheduling): few messages at
    first, single images at the end, so the processes finish within an image of each other."""
    chunks, start = [], 0
    while start < n:
        size = max(1, (n - start) // (2 * workers))
        chunks.append((start, start + size))
        start += size
    return chunks


def _score_parallel(jobs: list, workers: int) -> list[ImageScore]:
    """Score `jobs` in `workers` processes: this one and `workers` - 1 forked from it.

    Every process takes the next chunk from a shared counter until none is left, so all stay busy
    to the end whatever the images cost. The forked ones read the jobs from the memory they
    inherit and send back only their scores; results are put back in job order, so the numbers
    and their order are those of a sequential run. This process working too saves a fork and the
    per-chunk messages of a multiprocessing.Pool: on 2 cores, 1.8x faster than sequential instead
    of 1.7x (tests/benchmarks/bench_metrics.py).
    """
    chunks = _chunks(len(jobs), workers)
    if "fork" not in multiprocessing.get_all_start_methods():  # spawn: a pool, the jobs pickled
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_score_jobs, [jobs[a:b] for a, b in chunks], chunksize=1)
        return [score for part in parts for score in part]
    counter = multiprocessing.get_context("fork").Value("i", 0)

    def work() -> list[tuple[int, list[ImageScore]]]:
        done = []
        while True:
            with counter.get_lock():
                i = counter.value
                counter.value += 1
            if i >= len(chunks):
                return done
            a, b = chunks[i]
            done.append((i, [_score_job(job) for job in jobs[a:b]]))

    children: list[tuple[int, int]] = []
    # Keep the collector off the objects that exist now, in every process: scanning them would
    # write to pages the processes share and make the kernel copy them.
    gc.freeze()
    try:
        for _ in range(workers - 1):
            children.append(_fork_worker(work))
        results = dict(work())
        while children:
            pid, fd = children.pop(0)
            results.update(_collect(pid, fd))
    finally:
        gc.unfreeze()
        for pid, fd in children:  # interrupted: do not leave workers behind
            os.close(fd)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return [score for i in range(len(chunks)) for score in results[i]]


def _fork_worker(work) -> tuple[int, int]:
    """Fork a process that runs `work()` and writes its pickled result (or error) to a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        try:
            try:
                payload = pickle.dumps((True, work()))
            except BaseException as exc:  # noqa: BLE001 -- every failure goes back to the parent
                error = exc if isinstance(exc, DataError) else RuntimeError(f"{type(exc).__name__}: {exc}")
                payload = pickle.dumps((False, error))
            with os.fdopen(write_fd, "wb") as f:
                f.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def _collect(pid: int, fd: int) -> list[tuple[int, list[ImageScore]]]:
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"metric worker {pid} died without a result (wait status {status})")
    ok, payload = pickle.loads(data)
    if not ok:
        raise payload
    return payload


def _score_jobs(jobs: list) -> list[ImageScore]:
    return [_score_job(job) for job in jobs]


def _aggregate(per_image: dict[str, ImageScore]) -> EvalResult:
    scores = list(per_image.values())

    def mean(key: str) -> float:
        # float64 mean of the float32 per-image values, as the reference vectors' summary
        return float(np.mean([getattr(s, key) for s in scores])) if scores else 0.0

    tp = sum(s.num_char_tp for s in scores)
    n_gt = sum(s.num_char_gt for s in scores)
    n_det = sum(s.num_char_det for s in scores)
    recall = max(0.0, tp - sum(s.gran_recall for s in scores)) / n_gt if n_gt else 0.0
    precision = max(0.0, tp - sum(s.gran_precision for s in scores)) / n_det if n_det else 0.0
    hmean = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return EvalResult(
        recall=mean("recall"), precision=mean("precision"), hmean=mean("hmean"),
        dataset_recall=recall, dataset_precision=precision, dataset_hmean=hmean,
        per_image=per_image,
    )

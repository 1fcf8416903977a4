"""CLEval detection H-Mean, the competition metric behind `val/hmean` (docs/design.md §1), exactly.

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

Exactness (reference vectors: tests/fixtures/cleval/, copied from ../shared/data/cleval/). The
baseline's numbers hinge on details that a "clean" implementation would get wrong, so these are
reproduced on purpose:

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

Where it lives: this module is the pipeline of steps above and the API; the vectorised geometry and
character kernels are in `model.metrics_kernels`, the worker processes of ``evaluate(workers=N)``
in `model.metrics_pool`.

The official ``cleval`` package (0.1.1) is not used: without transcriptions it raises TypeError, its
torchmetrics path keeps 4 vertices per polygon, its POLY geometry (shapely ``buffer(0)``) and its
false-positive count (capped at 10) differ from the competition's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from model.data.ufo import DONT_CARE
from model.errors import DataError
from model.metrics_kernels import (
    EMPTY_RINGS,
    MAX_PSEUDO_CHARS,  # noqa: F401 -- part of this module's API
    Rings,
    area_precision,
    centres_inside,
    char_centres,
    false_positive_chars,
    min_rect_counts,
    per_box,
    pseudo_chars,
)
from model.submission import round_half_away

AREA_PRECISION = 0.3  # AREA_PRECISION_CONSTRAINT: "enough" of a detection lies on a box
GRANULARITY_PENALTY = 1.0  # per extra partner, for recall (splits) and precision (merges)
MIN_POINTS = 4  # the baseline skips polygons with fewer points

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


def evaluate_image(
    gt: Sequence[np.ndarray], det: Sequence[np.ndarray], gt_texts: Sequence[str | None] | None = None
) -> ImageScore:
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


def evaluate(
    gt: Mapping[str, Sequence[np.ndarray] | Mapping],
    det: Mapping[str, Sequence[np.ndarray] | Mapping],
    *,
    workers: int = 0,
) -> EvalResult:
    """CLEval over a set of images: file -> polygons (or UFO `Images`: file -> word id -> Word).

    Ground-truth images without detections score as no detections; detections for an image that is
    not in `gt` are a DataError. Only a ``"###"`` transcription of the ground truth is used (don't
    care): the competition counts every other box's characters from its shape. `workers` > 1
    scores the images in that many processes (`model.metrics_pool`: a forkserver pool kept for the
    life of this process, safe inside a training that uses CUDA and threads), in chunks; the
    numbers are identical to sequential.
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
        from model.metrics_pool import map_chunks  # not before it is needed: a plain score stays light

        scores = map_chunks(_score_jobs, [(name, _pack(g), texts, _pack(d)) for name, g, texts, d in jobs], workers)
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
        marks = [DONT_CARE if getattr(w, "dont_care", False) else None for w in words]
        return [w.points for w in words], (marks if DONT_CARE in marks else None)
    return list(entry), None


def _integer_rings(polygons: Sequence, what: str, rounding) -> tuple[Rings, list[int]]:
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
        return EMPTY_RINGS, kept
    coords = np.concatenate(arrays)
    if not np.isfinite(coords).all():
        bad = next(i for i, a in zip(kept, arrays) if not np.isfinite(a).all())
        raise DataError(f"{what} polygon {bad}: holds NaN or infinity")
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    return Rings(rounding(coords).astype(np.int64), sizes), kept


# ---------------------------------------------------------------------------------------------
# One image


def _score(gt: Rings, texts: list[str | None], det: Rings) -> ImageScore:
    n_gt, n_det = len(gt), len(det)
    dont_care = np.array([t == DONT_CARE for t in texts], dtype=bool)
    from_shape = np.array([t is None or t == DONT_CARE for t in texts], dtype=bool)
    chars = np.array([0 if shape else len(t) for t, shape in zip(texts, from_shape)], dtype=np.int64)
    if from_shape.any():
        chars[from_shape] = min_rect_counts(gt.subset(np.flatnonzero(from_shape)), pseudo_chars)

    centres, owner = char_centres(gt, chars)
    inside = centres_inside(centres, det)  # (K, D): centre k inside detection d
    pcc = per_box(inside, owner, n_gt)  # (G, D): centres of g inside d
    # Area precision decides only pairs sharing a centre, and every pair of a don't-care box.
    ap = area_precision(gt, det, dont_care, (pcc > 0) | dont_care[:, None])  # (G, D) float32
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
    fp = int(min_rect_counts(det.subset(unmatched), false_positive_chars).sum()) if len(unmatched) else 0
    num_gt_chars = int(chars[valid_gt].sum())
    num_det_chars = matched_centres + fp
    recall, precision, hmean = _float32_scores(tp, gran_r, gran_p, num_gt_chars, num_det_chars)
    return ImageScore(
        recall=recall,
        precision=precision,
        hmean=hmean,
        num_char_gt=num_gt_chars,
        num_char_det=num_det_chars,
        num_char_tp=tp,
        num_char_fp=fp,
        gran_recall=gran_r,
        gran_precision=gran_p,
        num_gt=n_gt,
        num_det=n_det,
        num_dont_care=int(dont_care.sum()),
        num_split=int((dets_per_gt[valid_gt] > 1).sum()),
        num_merged=int((gts_per_det[valid_det] > 1).sum()),
    )


def _match(
    pcc: np.ndarray, ap: np.ndarray, enough: np.ndarray, valid_gt: np.ndarray, valid_det: np.ndarray
) -> np.ndarray:
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
# Many images


def _pack(polygons: list) -> list | tuple[np.ndarray, np.ndarray]:
    """An image's polygons as one (M, 2) float64 array and their sizes, for a worker process: a quarter
    of the pickling cost of the separate arrays (on 2 cores it was a quarter of the scoring time).
    Anything `evaluate_image` would refuse or reshape goes as it is, for the worker to report."""
    try:
        arrays = [np.asarray(p, dtype=np.float64) for p in polygons]
    except (TypeError, ValueError):
        return polygons
    if not arrays or not all(a.ndim == 2 and a.shape[1] == 2 for a in arrays):
        return polygons
    return np.concatenate(arrays), np.array([len(a) for a in arrays], dtype=np.int64)


def _unpack(polygons: list | tuple[np.ndarray, np.ndarray]) -> list:
    if isinstance(polygons, tuple):
        coords, sizes = polygons
        return np.split(coords, np.cumsum(sizes)[:-1])
    return polygons


def _score_job(job) -> ImageScore:
    name, gt, texts, det = job
    gt, det = _unpack(gt), _unpack(det)
    try:
        return evaluate_image(gt, det, texts)
    except DataError as exc:
        raise DataError(f"image {name!r}: {exc}") from None


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
        recall=mean("recall"),
        precision=mean("precision"),
        hmean=mean("hmean"),
        dataset_recall=recall,
        dataset_precision=precision,
        dataset_hmean=hmean,
        per_image=per_image,
    )

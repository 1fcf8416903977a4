"""Choosing how to combine K fold models, on labelled images none of them trained on.

    cands = plan(labels, fold_words, thresh=0.29, box_thresh=0.25)      # ranks the folds first
    found = candidate_predictions(cands, fold_words, map_folders)       # every candidate's words
    scored = score_candidates(cands, labels, found)                     # CLEval per candidate
    best = choose(scored)                                               # highest hmean
    fused, = candidate_predictions([best.candidate], test_words, test_map_folders)  # on test

The candidates (`candidates`), in this order:

- **maps**: map fusion (`model.fusion`, equal weights) of the best k folds on the calibration set,
  for k = K (every fold) down to 2, each post-processed over a small grid of `thresh` x
  `box_thresh` around the run's own (offsets THRESH_STEPS, BOX_THRESH_STEPS), centre first;
- **boxes**: box voting (`model.ensemble`) of all K folds for every `min_vote` in 1..K and each
  IoU of IOUS;
- **fold**: each fold model alone (its own words, as predicted).

Why subsets: folds differ (the demo's range 0.86-0.90 on test), and averaging in the weakest ones
can cost more than the averaging gains; leaving out the folds that score worst on calibration is
ensemble selection (Caruana et al., ICML 2004), measured on the demo and on SROIE before it was
added (docs/performance.md, "Ensemble: chosen on held-out labels"). Only the k best *by calibration hmean* are tried (K - 1 subsets, not
2^K), which keeps the candidates few enough for an 18-image calibration set not to pick noise.
The box_thresh grid starts at the run's own and goes up: below `thresh` it changes nothing (a
contour of pixels above `thresh` has a mean above it), as the demo's table showed.

A single fold is a candidate, so the chosen method is never worse than the best fold *on the
calibration set*; whether that carries over to the test set is measured and reported, never
assumed. Ties go to the earlier candidate in the order above: an ensemble before a single model,
more folds before fewer, since averaging more models varies less from one image set to another.

Map fusion averages each image's maps once per subset and post-processes that mean for every grid
point (`fold_maps` decodes each stored map once). The stored maps are 8-bit, exact at the `thresh`
predict ran with; at the grid's other thresholds a pixel within 1/510 of it may flip (measured:
fused hmean moves by at most 0.0005, see model/probmaps.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.data.ufo import Images
from model.ensemble import ensemble
from model.errors import DataError
from model.fusion import fold_maps, fuse_maps, postprocess_settings
from model.metrics import evaluate
from model.predict import image_detections, to_ufo

THRESH_STEPS = (0.0, -0.06, -0.03, 0.03, 0.06)
BOX_THRESH_STEPS = (0.0, 0.05, 0.1)
IOUS = (0.3, 0.5, 0.7)
METHODS = ("maps", "boxes", "fold")


@dataclass(frozen=True)
class Candidate:
    """One way to turn K models' predictions into one set of words."""

    method: str  # "maps", "boxes" or "fold"
    settings: tuple[tuple[str, object], ...]  # e.g. (("folds", (0, 1, 2)), ("thresh", 0.29), ("box_thresh", 0.25))

    @property
    def options(self) -> dict:
        return dict(self.settings)

    @property
    def label(self) -> str:
        """Short, unique, no spaces (a KFP metric name part): 'maps_f0+1+2_t0.29_b0.25' (folds by
        position), 'boxes_v3_iou0.5', 'fold_2'."""
        o = self.options
        if self.method == "maps":
            return f"maps_f{'+'.join(map(str, o['folds']))}_t{o['thresh']:g}_b{o['box_thresh']:g}"
        if self.method == "boxes":
            return f"boxes_v{o['min_vote']}_iou{o['iou']:g}"
        return f"fold_{o['fold']}"

    def describe(self, folds: Sequence | None = None) -> str:
        """Human wording for reports: what the method does with which settings."""
        o = self.options
        name = (lambda i: folds[i]) if folds is not None else (lambda i: i)
        if self.method == "maps":
            which = f"folds {', '.join(str(name(i)) for i in o['folds'])}"
            return f"map fusion of {which} (thresh {o['thresh']:g}, box_thresh {o['box_thresh']:g})"
        if self.method == "boxes":
            return f"box voting, min_vote {o['min_vote']}, iou {o['iou']:g}"
        return f"fold {name(o['fold'])} alone"


def maps(folds: Sequence[int], thresh: float, box_thresh: float) -> Candidate:
    """Map fusion of the folds at positions `folds` (kept in the order given: best first)."""
    return Candidate("maps", (("folds", tuple(int(i) for i in folds)), ("thresh", thresh), ("box_thresh", box_thresh)))


def boxes(min_vote: int, iou: float) -> Candidate:
    return Candidate("boxes", (("min_vote", int(min_vote)), ("iou", float(iou))))


def fold(index: int) -> Candidate:
    return Candidate("fold", (("fold", int(index)),))


def candidates(k: int, thresh: float, box_thresh: float, *, ranking: Sequence[int] | None = None) -> list[Candidate]:
    """The candidates for K folds around the run's post-processing `thresh` / `box_thresh`
    (grid points outside (0, 1) left out), in the order ties are broken. `ranking`: fold
    positions best first (`rank_folds`); map fusion of the best k folds for k = K..2 (without
    it: of all K only)."""
    if k < 1:
        raise DataError("calibration: no fold models to combine")
    order = list(range(k)) if ranking is None else [int(i) for i in ranking]
    if sorted(order) != list(range(k)):
        raise DataError(f"calibration: ranking {order} is not an order of the {k} folds")
    grid = [(round(thresh + dt, 4), round(box_thresh + db, 4)) for dt in THRESH_STEPS for db in BOX_THRESH_STEPS]
    grid = [(t, b) for t, b in grid if 0 < t < 1 and 0 < b < 1]
    sizes = range(k, 1, -1) if ranking is not None else [k] if k > 1 else []
    out = [maps(order[:n], t, b) for n in sizes for t, b in grid]
    out += [boxes(v, iou) for v in range(1, k + 1) for iou in IOUS]
    out += [fold(i) for i in range(k)]
    return out


def deployment(chosen: Mapping, members: Sequence[str]) -> dict:
    """How to fuse the published models as the run did, for models/ensemble.json: `chosen` is the ensemble
    artifact's metadata (the chosen candidate's method and options, folds by position), `members` the fold models'
    folders in position order."""
    o = dict(chosen)
    method = o.get("method")
    if method == "maps":
        picked, settings = [members[int(i)] for i in o["folds"]], {"thresh": o["thresh"], "box_thresh": o["box_thresh"]}
        unclip = ""
        if o.get("unclip_ratio") is not None:  # the members tuned different ones: the run used their median
            settings["unclip_ratio"] = o["unclip_ratio"]
            unclip = f" --unclip-ratio {o['unclip_ratio']:g}"
        how = (
            f"map fusion: each member's probability map on the same canvas (`receiptflow predict MEMBER IMAGES -o "
            f"P.json --maps DIR`), averaged with equal weights and post-processed once: `receiptflow ensemble --mode "
            f"maps --thresh {o['thresh']:g} --box-thresh {o['box_thresh']:g}{unclip} -o OUT.json DIR...`"
        )
    elif method == "boxes":
        picked, settings = list(members), {"min_vote": o["min_vote"], "iou": o["iou"]}
        how = (
            f"box voting: every member's words (`receiptflow predict MEMBER IMAGES -o P.json`), kept where "
            f"{o['min_vote']} agree at IoU {o['iou']:g}: `receiptflow ensemble --min-vote {o['min_vote']} "
            f"--iou {o['iou']:g} -o OUT.json P...`"
        )
    elif method == "fold":
        picked, settings = [members[int(o["fold"])]], {}
        how = "one model alone: `receiptflow predict MEMBER IMAGES -o OUT.json`"
    else:
        raise DataError(f"the ensemble's metadata names no method this receiptflow knows: {o}")
    return {
        "method": method,
        "members": [f"{m}/model.onnx" for m in picked],
        "settings": settings,
        "chosen_on": o.get("calibration"),
        "how": how,
    }


def rank_folds(scored: Sequence["Scored"]) -> list[int]:
    """Fold positions by calibration hmean, best first (ties: lower position first)."""
    singles = [(s.candidate.options["fold"], s.hmean) for s in scored if s.candidate.method == "fold"]
    return [i for i, _ in sorted(singles, key=lambda f: (-f[1], f[0]))]


def plan(
    labels: Images, fold_words: Sequence[Images], thresh: float, box_thresh: float, *, workers: int = 0
) -> list[Candidate]:
    """The candidates for these folds: each fold is scored alone on `labels` first, to rank them
    for the map-fusion subsets."""
    singles = [fold(i) for i in range(len(fold_words))]
    ranking = rank_folds(score_candidates(singles, labels, list(fold_words), workers=workers))
    return candidates(len(fold_words), thresh, box_thresh, ranking=ranking)


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    hmean: float
    precision: float
    recall: float
    words: int = 0


def candidate_predictions(
    cands: Sequence[Candidate], fold_words: Sequence[Images], map_folders: Sequence[str | Path] | None = None
) -> list[Images]:
    """Every candidate's words (UFO `Images`, scores kept) on one image set: `fold_words[i]` is
    fold i's predictions there, `map_folders[i]` its stored maps (needed for "maps" candidates)."""
    k = len(fold_words)
    out: list[Images | None] = [None] * len(cands)
    grid = [(i, c) for i, c in enumerate(cands) if c.method == "maps"]
    if grid:
        if not map_folders or len(map_folders) != k:
            raise DataError(
                f"calibration: map fusion needs the stored maps of all {k} folds "
                f"({0 if not map_folders else len(map_folders)} folder(s) given)"
            )
        per = {i: {} for i, _ in grid}
        sources = [str(f) for f in map_folders]
        subsets = {c.options["folds"] for _, c in grid}
        if any(not 0 <= j < k for subset in subsets for j in subset):
            raise DataError(f"calibration: a map-fusion candidate names a fold beyond the {k} given")
        for name, stored in fold_maps(map_folders):
            first = stored[0]
            for subset in subsets:  # each subset's mean once per image, post-processed per grid point
                prob = fuse_maps(stored, [1.0 if j in subset else 0.0 for j in range(k)], sources=sources)
                for i, c in grid:
                    if c.options["folds"] == subset:
                        given = {"thresh": c.options["thresh"], "box_thresh": c.options["box_thresh"]}
                        options = postprocess_settings(
                            stored, {**given, "unclip_ratio": fused_unclip_ratio(stored)}, sources
                        )
                        per[i][name] = image_detections(prob, first.to_original, first.original_size, options)
        for i, _ in grid:
            out[i] = to_ufo(per[i], scores=True)
    for i, c in enumerate(cands):
        if c.method == "boxes":
            out[i] = ensemble(fold_words, **c.options)
        elif c.method == "fold":
            if not 0 <= c.options["fold"] < k:
                raise DataError(f"calibration: {c.label}: there are only {k} fold models")
            out[i] = fold_words[c.options["fold"]]
        elif c.method not in METHODS:
            raise DataError(f"calibration: unknown method {c.method!r}; known: {', '.join(METHODS)}")
    return out  # type: ignore[return-value]


def fused_unclip_ratio(maps) -> float | None:
    """The unclip ratio a fused map is post-processed with: the members' own when they agree (None: as
    recorded), else their median. Each fold model may have tuned its own (model/tune.py); a fused map
    is one new map, and the grid varies only thresh and box_thresh."""
    values = [float(v) for m in maps if (v := (m.postprocess or {}).get("unclip_ratio")) is not None]
    return statistics.median(values) if len(set(values)) > 1 else None


def score_candidates(
    cands: Sequence[Candidate], labels: Images, found: Sequence[Images], *, workers: int = 0
) -> list[Scored]:
    """CLEval (`model.metrics.evaluate`: mean over images, as val/hmean) of each candidate's words."""
    if not labels:
        raise DataError("calibration: the calibration set has no labelled images")
    out = []
    for c, images in zip(cands, found, strict=True):
        r = evaluate(labels, images, workers=workers)
        out.append(Scored(c, r.hmean, r.precision, r.recall, sum(len(w) for w in images.values())))
    return out


def choose(scored: Sequence[Scored]) -> Scored:
    """The candidate with the highest hmean; the earliest of equals (see the module docstring). Anything
    with an `hmean` will do: `model.tune` chooses one model's grid point with it."""
    if not scored:
        raise DataError("calibration: no candidates scored")
    best = scored[0]
    for s in scored[1:]:
        if s.hmean > best.hmean:
            best = s
    return best


def candidate_rows(
    scored: Sequence[Scored],
    chosen: Candidate,
    test: Mapping[Candidate, float] | None = None,
    folds: Sequence | None = None,
    *,
    top: int | None = None,
) -> tuple[tuple[str, ...], list[tuple]]:
    """The candidate table (header, rows) sorted by calibration hmean, best first, the choice marked;
    with `test`, a column of each candidate's test hmean (shown, never used to choose). `top`: only
    the `top` best, plus every single fold and the best of each method (what a reader compares the
    choice with); the rest are left out."""
    header = ("", "method", "calibration hmean", "precision", "recall", "words")
    if test is not None:
        header += ("test hmean",)
    order = sorted(range(len(scored)), key=lambda i: (-scored[i].hmean, i))
    if top is not None:
        best_of = {}
        for i in order:
            best_of.setdefault(scored[i].candidate.method, i)
        keep = (
            set(order[:top]) | set(best_of.values()) | {i for i, s in enumerate(scored) if s.candidate.method == "fold"}
        )
        order = [i for i in order if i in keep]
    rows = []
    for i in order:
        s = scored[i]
        row = (
            "**chosen**" if s.candidate == chosen else "",
            s.candidate.describe(folds),
            s.hmean,
            s.precision,
            s.recall,
            s.words,
        )
        rows.append(row + ((test[s.candidate],) if test is not None else ()))
    return header, rows

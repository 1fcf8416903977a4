"""The voting ensemble on five noisy copies of the SROIE ground truth: ours against the classic.

Each copy (seeded): every vertex jittered by up to ±3 px (uniform), 5 % of the words dropped, 3 %
false positives added (random small boxes on the image). Reported: ms/image of ours and the classic,
the ratio, the fraction of ground-truth words recovered at min_vote 3 (a fused word with IoU >= 0.5),
and the CLEval mean hmean of the ensemble against the mean over the five copies.
"""

from __future__ import annotations

import numpy as np
import shapely

from model.data.ufo import DatasetRoot, Word, word_ids
from model.ensemble import ensemble
from model.metrics import evaluate
from tests.benchmarks.classic_ensemble import classic_ensemble

FOLDS = 5
JITTER = 3.0
DROP = 0.05
FALSE_POSITIVES = 0.03


def noisy_copies(images, sizes, k: int = FOLDS, seed: int = 0) -> list[dict]:
    """`k` noisy copies of ground-truth `Images` (see the module docstring), copy i seeded seed + i."""
    copies = []
    for i in range(k):
        rng = np.random.default_rng(seed + i)
        copy = {}
        for name, words in images.items():
            w, h = sizes[name]
            out = []
            for word in words.values():
                if rng.random() < DROP:
                    continue
                out.append(word.points + rng.uniform(-JITTER, JITTER, word.points.shape))
            for _ in range(rng.binomial(len(words), FALSE_POSITIVES)):
                bw, bh = rng.uniform(10, 60), rng.uniform(8, 20)
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                out.append(np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]]))
            copy[name] = {wid: Word(p) for wid, p in zip(word_ids(len(out)), out)}
        copies.append(copy)
    return copies


def recovered(gt, fused, threshold: float = 0.5) -> float:
    """Fraction of ground-truth words with a fused word of IoU >= threshold."""
    found = total = 0
    for name, words in gt.items():
        # one Polygon per word: shapely.polygons() needs equal vertex counts, words may mix 4 and more
        g = shapely.make_valid(np.array([shapely.Polygon(w.points) for w in words.values()], dtype=object))
        total += len(g)
        det = list((fused.get(name) or {}).values())
        if not det or not len(g):
            continue
        d = shapely.make_valid(np.array([shapely.Polygon(w.points) for w in det], dtype=object))
        tree = shapely.STRtree(d)
        gi, di = tree.query(g, predicate="intersects")
        inter = shapely.area(shapely.intersection(g[gi], d[di]))
        iou = inter / (shapely.area(g[gi]) + shapely.area(d[di]) - inter)
        found += len(np.unique(gi[iou >= threshold]))
    return found / total


def quality(gt, copies, min_vote: int = 3) -> dict:
    fused = ensemble(copies, min_vote=min_vote)
    copy_hmeans = [evaluate(gt, c).hmean for c in copies]
    return {
        "recovered": recovered(gt, fused),
        "hmean_ensemble": evaluate(gt, fused).hmean,
        "hmean_copies_mean": float(np.mean(copy_hmeans)),
        "hmean_copies": copy_hmeans,
    }


def run(root) -> dict:
    import time

    split = DatasetRoot(root).load("train", decode=False)
    gt = split.images
    copies = noisy_copies(gt, split.sizes)
    names = list(gt)
    per_image = [[{n: c[n]} for c in copies] for n in names]
    ensemble(per_image[0], min_vote=3)  # warm-up: numba
    start = time.perf_counter()
    for _ in range(3):
        for p in per_image:
            ensemble(p, min_vote=3)
    ours_ms = (time.perf_counter() - start) / (3 * len(names)) * 1e3
    start = time.perf_counter()
    classic = classic_ensemble(copies, min_vote=3, iou=0.5)
    classic_ms = (time.perf_counter() - start) / len(names) * 1e3
    q = quality(gt, copies)
    classic75 = classic_ensemble(copies, min_vote=3, iou=0.75)
    return {
        "images": len(names),
        "words_per_image_per_copy": round(sum(len(c[n]) for c in copies for n in names) / (FOLDS * len(names)), 1),
        "classic_ms": round(classic_ms, 2),
        "ours_ms": round(ours_ms, 3),
        "ratio": round(classic_ms / ours_ms, 1),
        "recovered_ours_iou0.5": round(q["recovered"], 4),
        "recovered_classic_iou0.5": round(recovered(gt, classic), 4),
        "recovered_classic_iou0.75": round(recovered(gt, classic75), 4),
        "hmean_ensemble": round(q["hmean_ensemble"], 4),
        "hmean_copies_mean": round(q["hmean_copies_mean"], 4),
        "hmean_classic_iou0.5": round(evaluate(gt, classic).hmean, 4),
    }

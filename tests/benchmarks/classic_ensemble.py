"""The classic voting ensemble (as the seed's scripts/ensemble_kfold.py does it): the reference.

Per image, every word of every model becomes a shapely Polygon; every pair of words from different
models gets its IoU, pairwise, in Python; then greedy clustering in input order: an unassigned word
seeds a cluster and takes every unassigned word with IoU >= the threshold (several words of one
model included); a cluster with at least `min_vote` members is kept, its points the plain mean
(the first member's where vertex counts differ). Weights and scores are ignored.
"""

from __future__ import annotations

import numpy as np
from shapely.geometry import Polygon

from model.data.ufo import Word, word_ids


def classic_ensemble(predictions, *, min_vote: int = 3, iou: float = 0.5) -> dict:
    names = []
    for pred in predictions:
        names += [n for n in pred if n not in names]
    return {name: classic_image([pred.get(name, {}) for pred in predictions], min_vote, iou) for name in names}


def classic_image(per_model, min_vote: int, iou: float) -> dict:
    words, models = [], []
    for m, ws in enumerate(per_model):
        for w in ws.values():
            words.append(np.asarray(w.points, float))
            models.append(m)
    polys = [Polygon(p).buffer(0) for p in words]
    n = len(polys)
    ious = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if models[i] == models[j]:
                continue
            if not polys[i].intersects(polys[j]):
                continue
            inter = polys[i].intersection(polys[j]).area
            union = polys[i].union(polys[j]).area
            ious[i, j] = ious[j, i] = inter / union if union > 0 else 0.0
    used = [False] * n
    fused = []
    for i in range(n):
        if used[i]:
            continue
        used[i] = True
        members = [i]
        for j in range(n):
            if not used[j] and ious[i, j] >= iou:
                used[j] = True
                members.append(j)
        if len(members) >= min_vote:
            shapes = {words[j].shape for j in members}
            fused.append(np.mean([words[j] for j in members], axis=0) if len(shapes) == 1 else words[i])
    return {wid: Word(p) for wid, p in zip(word_ids(len(fused)), fused)}

"""DB target generation at 960 px on the SROIE sample: ours against the classic reference."""

from __future__ import annotations

import warnings

import numpy as np

from model.data.targets import make_targets
from model.data.transforms import eval_transform
from model.data.ufo import DatasetRoot
from tests.benchmarks.classic_targets import classic_targets
from tests.benchmarks.common import per_item_ms

SIZE = 960


def run(root) -> dict:
    split = DatasetRoot(root).load("train", decode=False)
    transform = eval_transform(SIZE)
    items = []
    for name, words in split.images.items():
        w, h = split.sizes[name]
        items.append(transform(np.zeros((h, w, 3), np.uint8), [wd.points for wd in words.values()]).polygons)

    ours_ms = per_item_ms(lambda p: make_targets(SIZE, SIZE, p), items, repeat=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the classic code warns on degenerate distances
        classic_ms = per_item_ms(lambda p: classic_targets(SIZE, SIZE, p, [False] * len(p)), items)
        max_delta, other_maps_delta, nan_pixels = 0.0, 0.0, 0
        for polys in items:
            nan = np.zeros((SIZE, SIZE), bool)
            ref = classic_targets(SIZE, SIZE, polys, [False] * len(polys), nan_pixels=nan)
            ours = make_targets(SIZE, SIZE, polys)
            for field, mine, theirs in zip(ours._fields, ours, ref):
                delta = float(np.abs(mine.astype(np.float32) - theirs)[~nan].max())
                if field == "thresh":
                    max_delta = max(max_delta, delta)
                else:  # prob and the two masks
                    other_maps_delta = max(other_maps_delta, delta)
            nan_pixels += int(nan.sum())
    return {
        "images": len(items),
        "words_per_image": round(sum(map(len, items)) / len(items), 1),
        "classic_ms": round(classic_ms, 2),
        "ours_ms": round(ours_ms, 2),
        "ratio": round(classic_ms / ours_ms, 1),
        "max_abs_delta": max_delta,  # the threshold map (tests/test_targets.py: THRESH_TOL)
        "max_abs_delta_prob_and_masks": other_maps_delta,
        "classic_nan_pixels_per_image": round(nan_pixels / len(items), 1),
    }

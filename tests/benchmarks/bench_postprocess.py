"""DB post-processing of 960-px SROIE probability maps: ours against the classic reference.

The maps are the reference vectors (tests/fixtures/postprocess/, a copy of
../shared/data/postprocess: 12 receipts, probability = PNG / 255), run in both settings of
expected.json: `polygon` (the seed's: thresh 0.29, box_thresh 0.25, 600 candidates, unclip 2.0)
and `box` (DBNet's defaults: 0.3 / 0.7 / 1000, rotated boxes, unclip 1.5). Times are ms per map on one core, the best of a few alternating
rounds, so that a busy machine slows both sides alike and the ratio stays honest. Agreement is
checked on every map against the classic and the recorded vectors.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from model.postprocess import postprocess
from tests.benchmarks.classic_postprocess import classic_postprocess
from tests.benchmarks.common import POSTPROCESS_VECTORS, per_item_ms

VECTORS = POSTPROCESS_VECTORS  # shipped with the repository
ROUNDS = 5


def load_vectors():
    """[(name, prob)], {(name, mode): case} from tests/fixtures/postprocess."""
    cases = json.loads((VECTORS / "expected.json").read_text())["cases"]
    names = sorted({c["map"] for c in cases})
    maps = [(n, cv2.imread(str(VECTORS / n), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255) for n in names]
    return maps, {(c["map"], c["mode"]): c for c in cases}


def options(params: dict) -> dict:
    """expected.json's params → `postprocess` keywords."""
    return {
        "thresh": params["thresh"],
        "box_thresh": params["box_thresh"],
        "max_candidates": params["max_candidates"],
        "unclip_ratio": params["unclip_ratio"],
        "mode": "polygon" if params["use_polygon"] else "box",
    }


def run(root=None) -> dict:
    """`root` (the SROIE dataset root the other benchmarks use) is not needed: the maps are
    the reference vectors."""
    maps, cases = load_vectors()
    result: dict = {"maps": len(maps)}
    for mode in ("polygon", "box"):
        params = cases[(maps[0][0], mode)]["params"]
        ours_kw = options(params)
        classic_kw = dict(params)  # thresh, box_thresh, max_candidates, unclip_ratio, use_polygon
        probs = [p for _, p in maps]
        classic_ms = ours_ms = float("inf")
        for _ in range(ROUNDS):
            classic_ms = min(classic_ms, per_item_ms(lambda p: classic_postprocess(p, **classic_kw), probs))
            ours_ms = min(ours_ms, per_item_ms(lambda p: postprocess(p, **ours_kw), probs, repeat=3))
        detections, mismatched, max_vertex, max_score = 0, 0, 0.0, 0.0
        for name, prob in maps:
            mine = postprocess(prob, **ours_kw)
            boxes, scores = classic_postprocess(prob, **classic_kw)
            case = cases[(name, mode)]
            detections += len(mine)
            for ref_points, ref_scores in ((boxes, scores), (case["polygons"], case["scores"])):
                shapes_differ = any(np.shape(r) != d.points.shape for r, d in zip(ref_points, mine))
                if len(ref_points) != len(mine) or shapes_differ:
                    mismatched += 1
                    continue
                for r, s, d in zip(ref_points, ref_scores, mine):
                    max_vertex = max(max_vertex, float(np.abs(d.points - np.asarray(r)).max()))
                    max_score = max(max_score, abs(d.score - s))
        result.update(
            {
                f"{mode}_detections_per_map": round(detections / len(maps), 1),
                f"{mode}_classic_ms": round(classic_ms, 2),
                f"{mode}_ours_ms": round(ours_ms, 2),
                f"{mode}_ratio": round(classic_ms / ours_ms, 1),
                f"{mode}_count_mismatches": mismatched,  # (map, reference) pairs
                f"{mode}_max_vertex_delta_px": max_vertex,
                f"{mode}_max_score_delta": max_score,
            }
        )
    return result


if __name__ == "__main__":
    from tests.benchmarks.common import one_core

    one_core()
    print(json.dumps(run(), indent=1))

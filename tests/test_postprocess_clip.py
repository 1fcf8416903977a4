"""Text cut by the border of the map: `postprocess` clips the unclipped shapes to the map, as the
classic clips its output to its destination size, so the two agree there too (identity: equal;
a scale matrix: equal after rounding). The shared SROIE vectors have no such case (their text
stays away from the border); these maps are made of nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from model.postprocess import postprocess
from tests.benchmarks.classic_postprocess import classic_postprocess

H, W = 200, 300
PAD = 40  # more than any unclip distance below: the padded map shows the unclipped shapes


def border_map() -> np.ndarray:
    """Text blocks cut by each side of the map, and one well inside it."""
    prob = np.zeros((H, W), np.float32)
    prob[0:14, 20:120] = 0.9  # top
    prob[186:200, 150:260] = 0.8  # bottom
    prob[60:75, 0:90] = 0.95  # left
    prob[110:126, 200:300] = 0.85  # right
    prob[0:12, 280:300] = 0.9  # top-right corner
    prob[90:104, 110:180] = 0.9  # inside: never clipped
    return prob


def unclipped(prob: np.ndarray, **options) -> list[np.ndarray]:
    """The detections' points before the clip: the same map inside a zero border of PAD pixels
    has the same contours, scores and offsets, none reaching the border, shifted by PAD."""
    return [d.points - PAD for d in postprocess(np.pad(prob, PAD), **options)]


def test_polygons_past_the_border_are_clipped_exactly_as_the_classic_clips_them():
    prob = border_map()
    dets = postprocess(prob)
    raw = unclipped(prob)
    assert len(dets) == len(raw) == 6
    outside = [((p < 0) | (p > [W, H])).any() for p in raw]
    assert sum(outside) == 5  # the unclip offset reaches past every side: the clip matters here
    for det, p in zip(dets, raw):
        np.testing.assert_array_equal(det.points, np.clip(p, 0, [W, H]))  # the clip is all that differs
    boxes, scores = classic_postprocess(prob)
    assert len(boxes) == len(dets)
    for det, box, score in zip(dets, boxes, scores):
        np.testing.assert_array_equal(det.points, box)  # vertices on 0, W and H included
        assert det.score == pytest.approx(score, abs=1e-6)


def test_boxes_past_the_border_are_clipped_as_the_classic_clips_them():
    options = dict(thresh=0.3, box_thresh=0.7, max_candidates=1000, unclip_ratio=1.5)
    prob = border_map()
    dets = postprocess(prob, mode="box", **options)
    boxes, _ = classic_postprocess(prob, use_polygon=False, **options)
    assert len(dets) == len(boxes) == 6
    assert sum(((d.points == 0) | (d.points == [W, H])).any() for d in dets) == 5
    for det, box in zip(dets, boxes):  # the classic rounds its corners; ours are not rounded
        np.testing.assert_array_equal(np.round(det.points), box)


def test_a_scale_matrix_rounded_gives_the_classic_output_at_that_size():
    # the classic maps to a destination size by x / width * dest_width, rounds, then clips to
    # [0, dest]; ours clips to the map, then maps. For a scale the clip commutes with the map.
    # (×1.6 and ×0.8 never land an integer on .5, so both sides round the same way.)
    prob = border_map()
    sx, sy = 1.6, 0.8
    dets = postprocess(prob, to_original=np.diag([sx, sy, 1.0]))
    boxes, _ = classic_postprocess(prob, dest_width=round(W * sx), dest_height=round(H * sy))
    assert len(dets) == len(boxes) == 6
    assert any((d.points != np.round(d.points)).any() for d in dets)  # ours is not rounded
    for det, box in zip(dets, boxes):
        np.testing.assert_array_equal(np.round(det.points), box)
    assert max(d.points[:, 0].max() for d in dets) == W * sx  # clipped at the destination's edge

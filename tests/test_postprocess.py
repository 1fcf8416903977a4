"""DB post-processing: the classic's detections (reference vectors, random maps), its coordinate
convention, its options, and the compiled copies of OpenCV's arithmetic it relies on."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

import model.postprocess as pp
from model.data.targets import make_targets
from model.postprocess import Detection, postprocess, postprocess_batch
from tests.benchmarks.classic_postprocess import _order_points, classic_postprocess
from tests.benchmarks.common import POSTPROCESS_VECTORS, SHARED_DATA, file_digest, provenance

MODES = {  # expected.json's two settings
    "polygon": dict(thresh=0.29, box_thresh=0.25, max_candidates=600, unclip_ratio=2.0, mode="polygon"),
    "box": dict(thresh=0.3, box_thresh=0.7, max_candidates=1000, unclip_ratio=1.5, mode="box"),
}


def classic(prob, mode="polygon", **kw):
    opts = {**MODES[mode], **kw}
    use_polygon = opts.pop("mode") == "polygon"
    return classic_postprocess(prob, use_polygon=use_polygon, **opts)


@pytest.fixture(scope="module")
def vectors():
    """The classic's output on 12 SROIE maps, shipped in tests/fixtures/postprocess/ (PROVENANCE.md)."""
    root = POSTPROCESS_VECTORS
    cases = json.loads((root / "expected.json").read_text())["cases"]
    maps = {
        name: cv2.imread(str(root / name), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
        for name in {c["map"] for c in cases}
    }
    return maps, cases


def assert_same_detections(dets, polygons, scores, *, vertex_tol=1.0, score_tol=1e-3, where=""):
    """Same count; each expected polygon paired with the unused detection nearest its centroid;
    paired polygons have the same vertex count, every vertex within `vertex_tol`, score within
    `score_tol`."""
    assert len(dets) == len(polygons), f"{where}: {len(dets)} detections, expected {len(polygons)}"
    free = list(range(len(dets)))
    for i, (ref, score) in enumerate(zip(polygons, scores)):
        ref = np.asarray(ref, np.float64)
        j = min(free, key=lambda k: np.linalg.norm(dets[k].points.mean(0) - ref.mean(0)))
        free.remove(j)
        got = dets[j].points
        assert got.shape == ref.shape, f"{where} #{i}: {got.shape} vertices vs {ref.shape}"
        assert np.abs(got - ref).max() <= vertex_tol, f"{where} #{i}: {got.tolist()} vs {ref.tolist()}"
        assert abs(dets[j].score - score) <= score_tol, f"{where} #{i}: score {dets[j].score} vs {score}"


# -- the reference vectors: 12 SROIE maps × 2 settings ------------------------------------------


def test_fixture_files_match_their_provenance():
    folder = POSTPROCESS_VECTORS
    recorded = provenance(folder)
    assert len(recorded) == 14 and sorted(recorded) == sorted(
        p.name for p in folder.iterdir() if p.name != "PROVENANCE.md"
    )
    for name, (size, sha) in recorded.items():
        assert file_digest(folder / name) == (size, sha), f"{folder / name} differs from PROVENANCE.md"
        shared = SHARED_DATA / "postprocess" / name
        if shared.is_file():  # the team's copy: a change there must be copied here (and recorded)
            assert file_digest(shared) == (size, sha), f"{shared} changed; copy it to {folder} and update PROVENANCE.md"


@pytest.mark.parametrize("mode", ["polygon", "box"])
def test_reproduces_the_classic_vectors(vectors, mode):
    maps, cases = vectors
    mine = [c for c in cases if c["mode"] == mode]
    assert len(mine) == 12
    for case in mine:
        params = dict(case["params"])
        params["mode"] = "polygon" if params.pop("use_polygon") else "box"
        assert params == MODES[mode]
        dets = postprocess(maps[case["map"]], **MODES[mode])
        assert all(isinstance(d, Detection) and d.points.dtype == np.float64 for d in dets)
        assert_same_detections(dets, case["polygons"], case["scores"], where=f"{case['map']} {mode}")
        if mode == "box":
            assert all(d.points.shape == (4, 2) for d in dets)


def test_defaults_are_the_seed_settings(vectors):
    maps, cases = vectors
    case = next(c for c in cases if c["mode"] == "polygon")
    assert_same_detections(postprocess(maps[case["map"]]), case["polygons"], case["scores"])


def test_fallbacks_to_opencv_give_the_same_detections(vectors, monkeypatch):
    # as on an OpenCV whose fillPoly / boxPoints the compiled copies do not match
    monkeypatch.setattr(pp, "_opencv_copies", lambda: (False, -1))
    maps, cases = vectors
    for case in cases[:4]:
        dets = postprocess(maps[case["map"]], **MODES[case["mode"]])
        assert_same_detections(dets, case["polygons"], case["scores"], where=f"{case['map']} {case['mode']}")


# -- random maps: holes, noise, text cut by the border --------------------------------------------


def random_map(rng, size=192):
    prob = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 10))):
        centre = rng.uniform(-8, size + 8, 2)
        box = cv2.boxPoints((tuple(centre), (rng.uniform(4, 90), rng.uniform(3, 24)), rng.uniform(-40, 40)))
        cv2.fillPoly(prob, [np.round(box).astype(np.int32)], float(rng.uniform(0.35, 1.0)))
    if rng.random() < 0.5:  # a ring: an outer contour and a hole
        cv2.circle(
            prob,
            tuple(int(v) for v in rng.integers(20, size - 20, 2)),
            int(rng.integers(8, 20)),
            float(rng.uniform(0.5, 1.0)),
            thickness=int(rng.integers(3, 6)),
        )
    prob = cv2.GaussianBlur(prob, (0, 0), float(rng.uniform(0.6, 2.0)))
    prob += rng.normal(0, 0.04, prob.shape).astype(np.float32)  # speckle: tiny contours to drop
    return np.clip(prob, 0, 1)


@pytest.mark.parametrize("mode", ["polygon", "box"])
def test_equal_to_classic_on_random_maps(mode):
    rng = np.random.default_rng(7)
    total = 0
    for k in range(25):
        prob = random_map(rng)
        boxes, scores = classic(prob, mode, box_thresh=0.5)
        dets = postprocess(prob, **{**MODES[mode], "box_thresh": 0.5})
        total += len(dets)
        # polygons are the classic's integers; box corners the classic's before its rounding
        assert_same_detections(
            dets, boxes, scores, vertex_tol=0 if mode == "polygon" else 0.5 + 1e-3, score_tol=1e-6, where=f"map {k}"
        )
    assert total > 50


# -- options and conventions --------------------------------------------------------------------


def rectangle_map(h=100, w=200, x0=50, y0=40, x1=149, y1=59, value=0.9):
    prob = np.zeros((h, w), np.float32)
    prob[y0 : y1 + 1, x0 : x1 + 1] = value
    return prob


def test_single_rectangle_gives_one_unclipped_polygon():
    # pixels 50..149 × 40..59: contour 99 × 19, A = 1881, L = 236, D = A × 2.0 / L = 15.94
    (det,) = postprocess(rectangle_map())
    assert det.score == pytest.approx(0.9, abs=1e-6)
    xs, ys = det.points[:, 0], det.points[:, 1]
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (34, 165, 24, 75)  # 50 - 15.94 → 34, ...


def test_box_mode_returns_rotated_4_point_boxes_around_the_text():
    # unclip 1.5: D = 1881 × 1.5 / 236 = 11.96, so the box is 50 - 11.96 ... 149 + 11.96
    (det,) = postprocess(rectangle_map(), **MODES["box"])
    assert det.points.shape == (4, 2)
    np.testing.assert_allclose(det.points, [[38, 28], [161, 28], [161, 71], [38, 71]], atol=1e-3)
    # a rotated one: corners from the top-left, clockwise, as the classic orders them
    prob = np.zeros((200, 300), np.float32)
    corners = cv2.boxPoints(((150, 100), (160, 30), 20))
    cv2.fillPoly(prob, [np.round(corners).astype(np.int32)], 0.95)
    (det,) = postprocess(prob, **MODES["box"])
    (ref,), _ = classic(prob, "box")
    assert np.abs(det.points - ref).max() <= 0.5 + 1e-3
    top_left, top_right, bottom_right, bottom_left = det.points
    assert top_left[0] < top_right[0] and bottom_left[0] < bottom_right[0]
    assert top_left[1] < bottom_left[1] and top_right[1] < bottom_right[1]


def test_training_targets_map_back_without_half_pixel_shift():
    # a word drawn by make_targets (edge coordinates [50, 150] × [50, 70]) is found centred on
    # itself: contour vertices are used as coordinates as they are, no + 0.5
    word = np.array([[50, 50], [150, 50], [150, 70], [50, 70]], float)
    t = make_targets(128, 200, [word])
    (det,) = postprocess(t.prob.astype(np.float32))
    lo, hi = det.points.min(0), det.points.max(0)
    np.testing.assert_array_equal((lo + hi) / 2, [100, 60])


def test_to_original_maps_the_points_exactly():
    prob = rectangle_map()
    canvas = postprocess(prob)
    to_original = np.array([[0.5, 0, 10], [0, 0.5, -3], [0, 0, 1]])
    (det,) = postprocess(prob, to_original=to_original)
    np.testing.assert_array_equal(det.points, canvas[0].points * 0.5 + [10, -3])
    assert det.score == canvas[0].score
    # the batch form takes torch tensors, as Batch carries them
    batch = postprocess_batch(
        torch.from_numpy(np.stack([prob, np.zeros_like(prob)])), torch.from_numpy(np.stack([to_original, np.eye(3)]))
    )
    assert len(batch) == 2 and batch[1] == []
    np.testing.assert_array_equal(batch[0][0].points, det.points)
    (plain,) = postprocess_batch(prob[None, None])  # (N, 1, H, W), no matrix: canvas pixels
    np.testing.assert_array_equal(plain[0].points, canvas[0].points)


def test_empty_maps_give_nothing():
    assert postprocess(np.zeros((64, 64), np.float32)) == []
    assert postprocess(np.full((64, 64), 0.2, np.float32)) == []  # all below thresh
    assert postprocess(np.zeros((0, 0), np.float32)) == []
    assert postprocess(np.zeros((64, 64), np.float32), mode="box") == []
    assert postprocess(rectangle_map(), max_candidates=0) == []


def test_max_candidates_caps_the_contours_considered():
    prob = np.zeros((120, 400), np.float32)
    for i in range(8):
        prob[20 + (i % 2) * 50 : 45 + (i % 2) * 50, 10 + 48 * i : 50 + 48 * i] = 0.9
    assert len(postprocess(prob)) == 8
    for mode in ("polygon", "box"):
        dets = postprocess(prob, **{**MODES[mode], "max_candidates": 3})
        boxes, scores = classic(prob, mode, max_candidates=3)
        assert len(dets) == 3
        assert_same_detections(dets, boxes, scores, vertex_tol=0.5 + 1e-3, score_tol=1e-6)


def test_thresholds_and_min_size_filter():
    prob = rectangle_map(value=0.5)
    assert len(postprocess(prob, thresh=0.49)) == 1
    assert postprocess(prob, thresh=0.5) == []  # on where prob > thresh, strictly
    assert postprocess(prob, box_thresh=0.51) == []  # score 0.5 < box_thresh
    sliver = rectangle_map(y0=40, y1=41)  # 2 px tall: its box is shorter than min_size
    assert postprocess(sliver, **{**MODES["box"], "box_thresh": 0.5}) == []
    assert len(postprocess(sliver, **{**MODES["box"], "box_thresh": 0.5, "min_size": 1})) == 1


def test_rejects_what_it_cannot_read():
    with pytest.raises(ValueError, match="mode"):
        postprocess(rectangle_map(), mode="quad")
    with pytest.raises(ValueError, match="float"):
        postprocess((rectangle_map() * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="shape"):
        postprocess(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="3, 3"):
        postprocess(rectangle_map(), to_original=np.eye(2))


# -- the compiled copies of OpenCV's and GEOS's arithmetic ---------------------------------------


def random_rect(rng, within, largest):
    """A cv2 RotatedRect: centre inside `within` (w, h), sides up to `largest`, any angle."""
    centre = (rng.uniform(0, within[0]), rng.uniform(0, within[1]))
    return centre, (rng.uniform(1, largest[0]), rng.uniform(1, largest[1])), rng.uniform(-90, 90)


def test_fill_copy_equals_cv2_fillpoly():
    rng = np.random.default_rng(3)
    for _ in range(3000):
        n, h, w = int(rng.integers(3, 14)), int(rng.integers(2, 60)), int(rng.integers(2, 120))
        if rng.random() < 0.5:  # self-intersecting scribbles
            xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
        else:  # truncated rotated boxes, as box mode scores them
            box = cv2.boxPoints(random_rect(rng, (w, h), (w, h)))
            xs, ys = np.clip(np.trunc(box[:, 0]), 0, w - 1), np.clip(np.trunc(box[:, 1]), 0, h - 1)
        ref = np.zeros((h, w), np.uint8)
        cv2.fillPoly(ref, [np.stack([xs, ys], axis=1).astype(np.int32)], 1)
        mine = np.zeros((h, w + 1), np.uint8)[:, :w]  # strided, as the scores pass it
        pp._fill(mine, xs.astype(np.int64), ys.astype(np.int64), np.empty((5, len(xs)), np.int64))
        np.testing.assert_array_equal(mine, ref)


def test_box_points_copy_equals_cv2_in_the_authors_order():
    rng = np.random.default_rng(4)
    clouds = [rng.integers(0, 960, (int(rng.integers(3, 30)), 2)).astype(np.int32) for _ in range(3000)]
    rects = [cv2.minAreaRect(c) for c in clouds] + [random_rect(rng, (960, 960), (300, 300)) for _ in range(3000)]
    mine = pp._box_points(pp._rect_array(rects))
    ref = np.stack([np.array(_order_points(cv2.boxPoints(r))) for r in rects])
    np.testing.assert_array_equal(mine, ref)
    assert pp._opencv_copies() != (False, -1)  # the fast path is the one that runs here


def test_unclip_distance_equals_shapely_bit_for_bit():
    rng = np.random.default_rng(5)
    polys = [rng.integers(0, 500, (int(rng.integers(4, 20)), 2)).astype(np.float64) for _ in range(500)]
    polys += [cv2.boxPoints(random_rect(rng, (900, 900), (300, 60))).astype(np.float64) for _ in range(500)]
    starts = np.cumsum([0] + [len(p) for p in polys])
    mine = pp._area_length_ratio(np.concatenate(polys), starts, 1.5)
    ref = [Polygon(p).area * 1.5 / Polygon(p).length for p in polys]
    np.testing.assert_array_equal(mine, ref)


def test_min_width_never_exceeds_the_min_area_rect_side():
    # what lets polygon mode skip cv2.minAreaRect when the width alone clears min_size + 2
    rng = np.random.default_rng(6)
    polys = [rng.integers(-5, int(rng.integers(2, 400)), (int(rng.integers(1, 40)), 2)) for _ in range(3000)]
    starts = np.cumsum([0] + [len(p) for p in polys])
    widths = pp._min_widths(np.concatenate(polys).astype(np.int32), starts)
    sides = np.array([min(cv2.minAreaRect(p.astype(np.int32))[1]) for p in polys])
    assert (widths <= sides + 1e-3).all()
    assert np.median(sides - widths) < 1  # and it is a close bound, so the shortcut bites

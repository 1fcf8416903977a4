"""The voting ensemble (model/ensemble.py) and `receiptflow ensemble`."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from model.cli import main
from model.data.ufo import DatasetRoot, Word, read_ufo, write_ufo
from model.ensemble import ensemble
from model.errors import DataError


def quad(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def preds_of(*per_model):
    """Each argument: list of point arrays (or (points, score)) of image a.jpg for one model."""
    out = []
    for words in per_model:
        ws = {}
        for i, w in enumerate(words):
            pts, score = w if isinstance(w, tuple) else (w, None)
            ws[f"{i + 1:04d}"] = Word(pts, None, score)
        out.append({"a.jpg": ws})
    return out


def test_quality_on_noisy_receipts(synth_root):
    """Five noisy copies of the ground truth of 16 synthetic receipts (~1,100 words, dense lines and
    columns): voting recovers nearly every word and beats the copies."""
    from tests.benchmarks.bench_ensemble import noisy_copies, quality

    split = DatasetRoot(synth_root).load("train", decode=False)
    gt = split.images  # every word, the 5-vertex ones clipped at the image border included
    copies = noisy_copies(gt, split.sizes, seed=7)
    q = quality(gt, copies, min_vote=3)
    assert q["recovered"] >= 0.98
    assert q["hmean_ensemble"] > q["hmean_copies_mean"]


def test_weights_change_the_result():
    preds = preds_of([quad(0, 0, 10, 10)], [quad(1, 0, 11, 10)], [quad(2, 0, 12, 10)])
    equal = ensemble(preds, min_vote=3)["a.jpg"]["0001"].points
    heavy = ensemble(preds, min_vote=3, weights=[0, 0, 1])["a.jpg"]["0001"].points
    np.testing.assert_allclose(equal, quad(1, 0, 11, 10))
    np.testing.assert_allclose(heavy, quad(2, 0, 12, 10))
    # scores weigh too
    scored = preds_of([(quad(0, 0, 10, 10), 0.9)], [(quad(2, 0, 12, 10), 0.1)])
    fused = ensemble(scored, min_vote=2)["a.jpg"]["0001"]
    np.testing.assert_allclose(fused.points, quad(0.2, 0, 10.2, 10))
    assert fused.score == pytest.approx(0.5)


def test_one_word_per_model_per_cluster():
    # model 0 has two overlapping words; with min_vote 2 they must not vote for each other
    preds = preds_of([quad(0, 0, 10, 10), quad(1, 0, 11, 10)], [])
    assert ensemble(preds, min_vote=2)["a.jpg"] == {}
    assert len(ensemble(preds, min_vote=1)["a.jpg"]) == 2
    # with a second model, one cluster gets the pair (one word of each), the other word stays alone
    preds = preds_of([quad(0, 0, 10, 10), quad(1, 0, 11, 10)], [quad(0, 0, 10, 10)])
    assert len(ensemble(preds, min_vote=2)["a.jpg"]) == 1
    assert len(ensemble(preds, min_vote=1)["a.jpg"]) == 2


def test_min_vote():
    w = quad(0, 0, 10, 10)
    common = quad(50, 50, 60, 60)
    preds = preds_of([w, common], [w + 0.5, common], [common], [common], [common])
    assert len(ensemble(preds, min_vote=3)["a.jpg"]) == 1
    assert len(ensemble(preds, min_vote=2)["a.jpg"]) == 2
    assert len(ensemble(preds, min_vote=5)["a.jpg"]) == 1
    for bad in (0, 6):
        with pytest.raises(DataError, match="min_vote"):
            ensemble(preds, min_vote=bad)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(DataError, match="iou"):
            ensemble(preds, iou=bad)
    with pytest.raises(DataError, match="weight"):
        ensemble(preds, weights=[1, 1])


def test_missing_images_count_as_no_words():
    preds = [{"a.jpg": {"1": Word(quad(0, 0, 10, 10))}}, {"b.jpg": {}}, {"a.jpg": {"1": Word(quad(0, 0, 10, 10))}}]
    out = ensemble(preds, min_vote=2)
    assert set(out) == {"a.jpg", "b.jpg"} and len(out["a.jpg"]) == 1 and out["b.jpg"] == {}


def test_deterministic_under_shuffled_word_order():
    rng = np.random.default_rng(0)
    base = [quad(x, y, x + 30, y + 12) for x in range(0, 300, 40) for y in range(0, 200, 20)]
    models = [[b + rng.uniform(-3, 3, (4, 2)) for b in base if rng.random() > 0.1] for _ in range(5)]
    ref = ensemble(preds_of(*models), min_vote=3)["a.jpg"]
    for seed in range(3):
        shuffled = [random.Random(seed).sample(m, len(m)) for m in models]
        out = ensemble(preds_of(*shuffled), min_vote=3)["a.jpg"]
        assert list(out) == list(ref)
        for wid in ref:
            np.testing.assert_allclose(out[wid].points, ref[wid].points, atol=1e-9)
    # output sorted by top then left
    tops = [(w.points[:, 1].min(), w.points[:, 0].min()) for w in ref.values()]
    assert tops == sorted(tops)


def test_different_vertex_counts_fuse():
    octagon = np.array([[0, 0], [5, 0], [10, 0], [10, 5], [10, 10], [5, 10], [0, 10], [0, 5]], float)
    reversed_quad = quad(1, 1, 11, 11)[::-1].copy()  # counter-clockwise, other start vertex
    out = ensemble(preds_of([octagon], [reversed_quad]), min_vote=2)["a.jpg"]
    pts = out["0001"].points
    np.testing.assert_allclose(pts, quad(0.5, 0.5, 10.5, 10.5), atol=1e-9)  # collinear midpoints dropped
    # a curved (non-convex) contour and a quadrilateral
    bent = np.array([[0, 0], [10, 0], [20, 0], [20, 10], [10, 7], [0, 10]], float)
    out = ensemble(preds_of([bent], [quad(0, 0, 20, 10)]), min_vote=2, iou=0.5)["a.jpg"]
    pts = out["0001"].points
    assert len(pts) >= 4
    assert pts[:, 0].min() == pytest.approx(0) and pts[:, 0].max() == pytest.approx(20)
    import shapely

    cut = shapely.intersection(shapely.Polygon(pts), shapely.LineString([(10, -5), (10, 20)]))
    assert 7.5 < cut.bounds[3] < 9.5  # the dent, about halfway between 7 and 10


def test_cli(tmp_path, capsys):
    paths = []
    for m in range(3):
        p = tmp_path / f"fold{m}.json"
        words = {"0001": Word(quad(m, 0, 10 + m, 10), None, 0.9)}
        if m < 2:
            words["0002"] = Word(quad(100, 100, 120, 110))
        write_ufo({"x.jpg": words}, p)
        paths.append(str(p))
    out = tmp_path / "ens.json"
    assert main(["ensemble", "--min-vote", "3", "--weights", "1,1,2", "-o", str(out), *paths]) == 0
    images, _ = read_ufo(out)
    assert list(images["x.jpg"]) == ["0001"]
    np.testing.assert_allclose(images["x.jpg"]["0001"].points, quad(1.25, 0, 11.25, 10))
    printed = capsys.readouterr().out
    assert "kept: 1 words" in printed and "images: 1" in printed
    assert main(["ensemble", "--min-vote", "4", "-o", str(out), *paths]) == 2
    assert "min_vote" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["images"]["x.jpg"]["words"]["0001"]["score"] == pytest.approx(0.9)


def test_several_non_convex_words_with_different_vertex_counts():
    """Real predictions: many contours per image, non-convex, each with its own vertex count
    (the first demo run crashed here building them as one shapely array)."""
    bent6 = np.array([[0, 0], [10, 0], [20, 0], [20, 10], [10, 7], [0, 10]], float)
    bent7 = np.array([[0, 0], [10, 0], [20, 0], [20, 10], [15, 8], [10, 7], [0, 10]], float)
    far = bent6 + [100, 0]
    out = ensemble(preds_of([bent6, far], [bent7, far + 0.5], [bent6 + 0.25]), min_vote=2)["a.jpg"]
    assert len(out) == 2
    assert sorted(round(float(w.points[:, 0].min())) for w in out.values()) == [0, 100]

"""CLEval detection H-Mean: the competition's numbers (reference vectors), its rules, parallel runs, the CLI."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

import model.cli
from model.data.ufo import Word, word_ids, write_ufo
from model.errors import DataError
from model.metrics import EvalResult, ImageScore, evaluate, evaluate_image, polygons_of
from model.submission import write_submission
from tests.benchmarks.common import CLEVAL_VECTORS, SHARED_DATA, file_digest, provenance

TOL = 1e-6


@pytest.fixture(scope="module")
def vectors() -> dict:
    """The competition's CLEval numbers on 280 cases, shipped in tests/fixtures/cleval/ (PROVENANCE.md)."""
    return json.loads(CLEVAL_VECTORS.read_text())


def test_fixture_files_match_their_provenance():
    folder = CLEVAL_VECTORS.parent
    recorded = provenance(folder)
    assert sorted(recorded) == sorted(p.name for p in folder.iterdir() if p.name != "PROVENANCE.md")
    for name, (size, sha) in recorded.items():
        assert file_digest(folder / name) == (size, sha), f"{folder / name} differs from PROVENANCE.md"
        shared = SHARED_DATA / "cleval" / name
        if shared.is_file():  # the team's copy: a change there must be copied here (and recorded)
            assert file_digest(shared) == (size, sha), f"{shared} changed; copy it to {folder} and update PROVENANCE.md"


def case_name(case: dict) -> str:
    return f"{case['variant']}/{case['image']}"


def as_arrays(polygons) -> list[np.ndarray]:
    return [np.asarray(p, dtype=np.float64) for p in polygons]


@pytest.fixture(scope="module")
def sequential(vectors) -> EvalResult:
    """All 280 cases as one set of images, scored in this process."""
    gt = {case_name(c): as_arrays(c["gt"]) for c in vectors["cases"]}
    det = {case_name(c): as_arrays(c["det"]) for c in vectors["cases"]}
    return evaluate(gt, det)


def rect(x, y, w, h) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


def densify(polygon: np.ndarray, per_edge: int) -> np.ndarray:
    """The same ring with `per_edge` - 1 extra points on every edge (same geometry, more vertices)."""
    out = []
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0)):
        out += [a + (b - a) * t for t in np.arange(per_edge) / per_edge]
    return np.array(out)


# --- the competition's numbers -------------------------------------------------------------


def test_every_reference_case(vectors, sequential):
    assert len(vectors["cases"]) == 280
    wrong = []
    for case in vectors["cases"]:
        got = sequential.per_image[case_name(case)]
        want = case["expected"]
        delta = max(abs(got.recall - want["det_r"]), abs(got.precision - want["det_p"]), abs(got.hmean - want["det_h"]))
        if delta > TOL:
            wrong.append(f"{case_name(case)}: got {got.recall}, {got.precision}, {got.hmean}; want {want}")
    assert not wrong, f"{len(wrong)} case(s) differ:\n" + "\n".join(wrong[:10])


def test_summary_means_per_variant(vectors):
    by_variant = defaultdict(list)
    for case in vectors["cases"]:
        by_variant[case["variant"]].append(case)
    assert set(by_variant) == set(vectors["summary"])
    for variant, cases in by_variant.items():
        result = evaluate(
            {c["image"]: as_arrays(c["gt"]) for c in cases}, {c["image"]: as_arrays(c["det"]) for c in cases}
        )
        summary = vectors["summary"][variant]
        assert len(result.per_image) == summary["images"]
        assert result.hmean == pytest.approx(summary["mean_det_h"], abs=TOL), variant


def test_parallel_equals_sequential(vectors, sequential):
    gt = {case_name(c): as_arrays(c["gt"]) for c in vectors["cases"]}
    det = {case_name(c): as_arrays(c["det"]) for c in vectors["cases"]}
    parallel = evaluate(gt, det, workers=2)
    assert list(parallel.per_image) == list(sequential.per_image)  # same order
    assert parallel.per_image == sequential.per_image  # same numbers, exactly
    assert (parallel.hmean, parallel.precision, parallel.recall) == (
        sequential.hmean,
        sequential.precision,
        sequential.recall,
    )
    assert parallel.dataset_hmean == sequential.dataset_hmean


def test_parallel_reports_a_worker_error():
    gt = {f"{i}.jpg": [rect(0, 0, 90, 20)] for i in range(40)}
    gt["bad.jpg"] = [rect(0, 0, 90, 20), np.array([[0, 0], [1, 0], [1, np.inf], [0, 1]])]
    with pytest.raises(DataError, match="image 'bad.jpg': ground-truth polygon 1: holds NaN or infinity"):
        evaluate(gt, {}, workers=2)
    assert evaluate({n: p for n, p in gt.items() if n != "bad.jpg"}, {}, workers=3).recall == 0.0


def test_mean_over_images_is_the_recorded_mean(vectors, sequential):
    # val/hmean over all 280 cases: the mean of the competition's recorded per-image det_h
    assert sequential.hmean == pytest.approx(np.mean([c["expected"]["det_h"] for c in vectors["cases"]]), abs=TOL)


def test_dataset_values_pool_the_characters_of_every_image():
    """Worked by hand (a 90 x 20 box: 5 pseudo-characters; see the rules below):
    a.jpg found exactly (TP 5 of 5 GT, 5 matched); b.jpg one of two boxes found (TP 5 of 10 GT,
    5 matched); c.jpg two boxes merged into one detection (TP 10 of 10 GT, 10 matched, merge
    penalty 1). Dataset recall = (5 + 5 + 10) / (5 + 10 + 10) = 0.8, precision = (20 - 1) / 20 =
    0.95, hmean = 2 * 0.8 * 0.95 / 1.75; per image the hmeans are 1, 2/3 and 2 * 0.9 / 1.9."""
    box, right = rect(10, 10, 90, 20), rect(110, 10, 90, 20)
    gt = {"a.jpg": [box], "b.jpg": [box, right], "c.jpg": [box, right]}
    det = {"a.jpg": [box], "b.jpg": [box], "c.jpg": [rect(10, 10, 190, 20)]}
    result = evaluate(gt, det)
    assert result.dataset_recall == pytest.approx(0.8, abs=1e-12)
    assert result.dataset_precision == pytest.approx(0.95, abs=1e-12)
    assert result.dataset_hmean == pytest.approx(1.52 / 1.75, abs=1e-12)
    # per image the baseline computes in float32 (its recorded det_h are float32 values too)
    assert [s.hmean for s in result.per_image.values()] == pytest.approx([1.0, 2 / 3, 1.8 / 1.9], abs=TOL)
    assert result.hmean == pytest.approx((1 + 2 / 3 + 1.8 / 1.9) / 3, abs=TOL)
    assert result.recall == pytest.approx((1 + 0.5 + 1) / 3, abs=TOL) and result.precision == pytest.approx(
        (1 + 1 + 0.9) / 3, abs=TOL
    )


# --- the metric's rules, on boxes small enough to count by hand ------------------------------
# A 90 x 20 box has round(0.5 + 90/20) = 5 pseudo-characters.


def test_perfect_detection_scores_one():
    gt = [rect(10, 10, 90, 20), rect(10, 40, 60, 20), rect(120, 10, 200, 30)]
    s = evaluate_image(gt, [g.copy() for g in gt])
    assert (s.recall, s.precision, s.hmean) == (1.0, 1.0, 1.0)
    assert s.num_char_tp == s.num_char_gt == s.num_char_det and s.num_char_fp == 0


def test_no_detections_score_zero():
    s = evaluate_image([rect(10, 10, 90, 20)], [])
    assert (s.recall, s.precision, s.hmean) == (0.0, 0.0, 0.0)
    assert s.num_char_gt == 5 and s.num_char_det == 0
    # An image of the ground truth with no detections at all counts the same way.
    result = evaluate(
        {"a.jpg": [rect(10, 10, 90, 20)], "b.jpg": [rect(10, 10, 90, 20)]}, {"a.jpg": [rect(10, 10, 90, 20)]}
    )
    assert result.per_image["b.jpg"].recall == 0.0 and result.per_image["b.jpg"].hmean == 0.0
    assert result.hmean == 0.5 and result.dataset_recall == 0.5


def test_split_and_merge_pay_the_granularity_penalty():
    box = rect(10, 10, 90, 20)
    split = evaluate_image([box], [rect(10, 10, 45, 20), rect(55, 10, 45, 20)])
    assert (split.num_char_tp, split.gran_recall, split.num_split) == (5, 1.0, 1)
    assert split.recall == pytest.approx(4 / 5) and split.precision == 1.0
    merged = evaluate_image([box, rect(110, 10, 90, 20)], [rect(10, 10, 190, 20)])
    assert (merged.num_char_tp, merged.gran_precision, merged.num_merged) == (10, 1.0, 1)
    assert merged.recall == 1.0 and merged.precision == pytest.approx(9 / 10)


def test_false_positive_characters_lower_precision():
    box = rect(10, 10, 90, 20)
    s = evaluate_image([box], [box, rect(300, 300, 90, 20)])
    assert s.recall == 1.0 and s.num_char_fp > 0
    assert s.precision == pytest.approx(5 / (5 + s.num_char_fp))


def test_dont_care_ground_truth():
    care, dont = rect(10, 10, 90, 20), rect(10, 50, 90, 20)
    # A detection on the "###" box is neither a hit nor a false positive, and the box is not counted.
    s = evaluate_image([care, dont], [care, dont], ["ABC", "###"])
    assert (s.recall, s.precision) == (1.0, 1.0)
    assert s.num_dont_care == 1 and s.num_char_gt == 3  # len("ABC"); the don't-care box counts nothing
    missed = evaluate_image([care, dont], [dont], [None, "###"])
    assert (missed.recall, missed.precision, missed.num_char_fp) == (0.0, 0.0, 0)
    # Without the mark the same box is ordinary ground truth: found by the second detection.
    plain = evaluate_image([care, dont], [care, dont])
    assert plain.num_char_gt == 10 and plain.hmean == 1.0
    # evaluate() reads "###" from UFO words and counts every other box from its shape, text or not.
    gt = {"r.jpg": {"0001": Word(care, "TOTAL 12.00"), "0002": Word(dont, "###")}}
    result = evaluate(gt, {"r.jpg": {"0001": Word(care)}})
    assert result.per_image["r.jpg"].num_char_gt == 5 and result.hmean == 1.0


def test_many_vertex_polygon_scores_like_its_quad():
    gt = [rect(10, 10, 90, 20), rect(120, 10, 150, 24), rect(10, 60, 40, 18)]
    quads = [rect(12, 11, 88, 20), rect(118, 12, 155, 22), rect(200, 200, 60, 20)]  # the last one is a false positive
    dense = [densify(q, 5) for q in quads]  # 20 vertices, same rings
    a, b = evaluate_image(gt, quads), evaluate_image(gt, dense)
    assert (b.recall, b.precision, b.hmean) == (a.recall, a.precision, a.hmean)
    assert (b.num_char_tp, b.num_char_det) == (a.num_char_tp, a.num_char_det)
    assert 0 < a.hmean < 1
    # A many-vertex detection of every box is a perfect detection (no 4-vertex truncation).
    perfect = evaluate_image(gt, [densify(g, 7) for g in gt])
    assert perfect.hmean == 1.0


def test_float_coordinates_are_rounded_as_the_competition_scores_them():
    box = rect(10, 10, 90, 20)
    # Detections as the submission CSV writes them (half away from zero): 9.5 -> 10.
    assert evaluate_image([box], [box - 0.5]) == evaluate_image([box], [box])


def test_bad_input_is_a_data_error():
    with pytest.raises(DataError, match="detection polygon 1: holds NaN"):
        evaluate_image([rect(0, 0, 10, 10)], [rect(0, 0, 10, 10), np.full((4, 2), np.nan)])
    with pytest.raises(DataError, match=r"image 'x.jpg': ground-truth polygon 0: shape \(4, 3\)"):
        evaluate({"x.jpg": [np.zeros((4, 3))]}, {})
    with pytest.raises(DataError, match="not in the ground truth: 'extra.jpg'"):
        evaluate({"a.jpg": [rect(0, 0, 10, 10)]}, {"a.jpg": [], "extra.jpg": []})
    # Fewer than 4 points: skipped, as the baseline does.
    assert evaluate_image([rect(0, 0, 90, 20)], [rect(0, 0, 90, 20), np.zeros((3, 2))]).hmean == 1.0


def test_polygons_of_ufo_images():
    images = {"a.jpg": {"0001": Word(rect(0, 0, 10, 10), "A"), "0002": Word(rect(20, 0, 10, 10))}, "b.jpg": {}}
    polygons = polygons_of(images)
    assert list(polygons) == ["a.jpg", "b.jpg"] and polygons["b.jpg"] == []
    assert [p.tolist() for p in polygons["a.jpg"]] == [rect(0, 0, 10, 10).tolist(), rect(20, 0, 10, 10).tolist()]
    assert isinstance(evaluate(images, polygons).per_image["a.jpg"], ImageScore)


# --- receiptflow score ------------------------------------------------------------------------


def ufo_images(cases: list[dict], key: str) -> dict[str, dict[str, Word]]:
    return {c["image"]: dict(zip(word_ids(len(c[key])), (Word(np.asarray(p, float)) for p in c[key]))) for c in cases}


@pytest.mark.parametrize("kind", ["ufo", "csv"])
def test_score_command(vectors, tmp_path, capsys, kind):
    cases = [c for c in vectors["cases"] if c["variant"] == "jitter4_drop10_fp5"][:2]
    cases += [c for c in vectors["cases"] if c["variant"] == "merge15"][2:3]
    write_ufo(ufo_images(cases, "gt"), tmp_path / "gt.json")
    pred = tmp_path / ("pred.json" if kind == "ufo" else "pred.csv")
    if kind == "ufo":
        write_ufo(ufo_images(cases, "det"), pred)
    else:
        write_submission(ufo_images(cases, "det"), pred)

    assert model.cli.main(["score", str(tmp_path / "gt.json"), str(pred), "--json", "--workers", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["per_image"]) == {c["image"] for c in cases}
    for c in cases:
        got = out["per_image"][c["image"]]
        assert got["recall"] == pytest.approx(c["expected"]["det_r"], abs=TOL)
        assert got["precision"] == pytest.approx(c["expected"]["det_p"], abs=TOL)
        assert got["hmean"] == pytest.approx(c["expected"]["det_h"], abs=TOL)
    assert out["hmean"] == pytest.approx(np.mean([c["expected"]["det_h"] for c in cases]), abs=TOL)
    assert {"precision", "recall", "dataset_hmean", "dataset_precision", "dataset_recall"} <= set(out)

    assert model.cli.main(["score", str(tmp_path / "gt.json"), str(pred)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["file", "recall", "precision", "hmean"]
    assert [line.split()[0] for line in table[1:]] == [c["image"] for c in cases] + ["mean", "dataset"]
    assert float(table[-2].split()[3]) == pytest.approx(out["hmean"], abs=5e-5)


def test_score_command_errors(tmp_path, capsys):
    write_ufo({"a.jpg": {"0001": Word(rect(0, 0, 90, 20))}}, tmp_path / "gt.json")
    assert model.cli.main(["score", str(tmp_path / "gt.json"), str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: submission file is missing" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert model.cli.main(["score", str(tmp_path / "gt.json"), str(tmp_path / "bad.json")]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
    write_ufo({"b.jpg": {}}, tmp_path / "other.json")
    assert model.cli.main(["score", str(tmp_path / "gt.json"), str(tmp_path / "other.json")]) == 2
    assert "not in the ground truth: 'b.jpg'" in capsys.readouterr().err

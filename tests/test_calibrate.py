"""Choosing the ensemble's method on held-out labels (model/calibrate.py, components/ensemble.py).

Constructed cases: K=3 "fold models" whose words and probability maps are drawn from known
boxes, so which candidate is best is known before scoring; CLEval and map post-processing run
for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model import calibrate
from model.data.ufo import Word, read_ufo, word_ids, write_ufo
from model.errors import DataError
from model.probmaps import write_map

PP = {"thresh": 0.29, "box_thresh": 0.25, "max_candidates": 600, "unclip_ratio": 2.0, "mode": "box"}
SIZE = (320, 240)  # original = canvas (identity matrix): width, height
IMAGES = ("a.jpg", "b.jpg", "c.jpg")


def box(x: int, y: int, w: int = 60, h: int = 20) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)


TRUE = [box(20 + 100 * (i % 3), 20 + 50 * (i // 3)) for i in range(6)]  # six words per image
FALSE = [box(30, 190, 80, 24), box(200, 190, 70, 22)]  # where no word is


def words(boxes) -> dict[str, Word]:
    return {wid: Word(b, None, 0.9) for wid, b in zip(word_ids(len(boxes)), boxes)}


def prob_map(boxes, p: float = 0.9) -> np.ndarray:
    """A map as DBNet draws it: each box shrunk by D = A(1 - 0.4²)/L at probability p."""
    prob = np.zeros(SIZE[::-1], np.float32)
    for b in boxes:
        (x0, y0), (x1, y1) = b.min(0), b.max(0)
        d = (x1 - x0) * (y1 - y0) * (1 - 0.4**2) / (2 * (x1 - x0 + y1 - y0))
        prob[int(round(y0 + d)) : int(round(y1 - d)), int(round(x0 + d)) : int(round(x1 - d))] = p
    return prob


def folds_of(per_fold_boxes, tmp: Path, tag: str) -> tuple[list, list[Path]]:
    """K folds that found `per_fold_boxes[k]` on every image: their UFO words and map folders."""
    sets, dirs = [], []
    for k, boxes in enumerate(per_fold_boxes):
        folder = tmp / f"{tag}_maps_{k}"
        for name in IMAGES:
            write_map(folder, name, prob_map(boxes), np.eye(3), SIZE, PP)
        sets.append({name: words(boxes) for name in IMAGES})
        dirs.append(folder)
    return sets, dirs


LABELS = {name: {wid: Word(w.points) for wid, w in words(TRUE).items()} for name in IMAGES}


def run_calibration(per_fold_boxes, tmp):
    sets, dirs = folds_of(per_fold_boxes, tmp, "cal")
    cands = calibrate.plan(LABELS, sets, PP["thresh"], PP["box_thresh"])
    scored = calibrate.score_candidates(cands, LABELS, calibrate.candidate_predictions(cands, sets, dirs))
    return scored, calibrate.choose(scored)


def test_a_fold_that_beats_every_ensemble_is_chosen(tmp_path):
    """Folds 1 and 2 agree on two false words and miss half the true ones; fold 0 is exact: no
    vote or map average can match fold 0 alone, so calibration must pick it."""
    scored, best = run_calibration([TRUE, TRUE[:3] + FALSE, TRUE[:3] + FALSE], tmp_path)
    assert best.candidate == calibrate.fold(0) and best.hmean == 1.0
    others = [s.hmean for s in scored if s.candidate != best.candidate]
    assert max(others) < best.hmean  # the case is what it claims: fold 0 is the unique best
    assert {s.candidate.method for s in scored} == {"maps", "boxes", "fold"} and len(scored) == 15 * 2 + 9 + 3
    # fold 0 ranks first: the map-fusion subsets are {0, 1, 2} and the best two, {0, 1}
    assert {s.candidate.options["folds"] for s in scored if s.candidate.method == "maps"} == {(0, 1, 2), (0, 1)}


def test_an_ensemble_that_beats_every_fold_is_chosen(tmp_path):
    """Each fold misses a different word and adds a false one of its own: two votes of three
    recover every word and drop every false one; no single fold is exact."""
    per_fold = [[b for j, b in enumerate(TRUE) if j != k] + [FALSE[0] + 40 * k] for k in range(3)]
    scored, best = run_calibration(per_fold, tmp_path)
    folds = [s.hmean for s in scored if s.candidate.method == "fold"]
    assert best.hmean == max(s.hmean for s in scored) == 1.0 > max(folds)
    assert best.candidate.method in ("maps", "boxes")
    by = {s.candidate: s.hmean for s in scored}
    assert (
        by[calibrate.boxes(2, 0.5)] == 1.0 and by[calibrate.boxes(1, 0.5)] < 1.0 and by[calibrate.boxes(3, 0.5)] < 1.0
    )
    # the fused map's missed words sit at 0.6 and false ones at 0.3: thresh 0.32 and above keeps just the words
    assert by[calibrate.maps((0, 1, 2), 0.35, 0.25)] == 1.0 and by[calibrate.maps((0, 1, 2), 0.23, 0.25)] < 1.0
    # two folds' mean holds one fold's false word and one fold's missed word at the same 0.45
    assert by[calibrate.maps((0, 1), 0.35, 0.25)] < 1.0


def test_ties_go_to_the_earliest_candidate_ensembles_before_single_folds(tmp_path):
    scored, best = run_calibration([TRUE, TRUE, TRUE], tmp_path)
    assert all(s.hmean == 1.0 for s in scored)
    assert best.candidate == calibrate.maps((0, 1, 2), 0.29, 0.25)  # all folds at the run's own settings come first
    made = [
        calibrate.Scored(calibrate.fold(0), 0.8, 0, 0),
        calibrate.Scored(calibrate.boxes(1, 0.5), 0.9, 0, 0),
        calibrate.Scored(calibrate.fold(1), 0.9, 0, 0),
    ]
    assert calibrate.choose(made).candidate == calibrate.boxes(1, 0.5)


def test_candidate_grid_stays_inside_0_1_and_labels_are_unique():
    cands = calibrate.candidates(5, 0.29, 0.25, ranking=[3, 1, 4, 0, 2])
    assert len(cands) == 15 * 4 + 15 + 5 and len({c.label for c in cands}) == len(cands)
    assert cands[0] == calibrate.maps((3, 1, 4, 0, 2), 0.29, 0.25) and cands[-1] == calibrate.fold(4)
    assert [c.label for c in cands[:2]] == ["maps_f3+1+4+0+2_t0.29_b0.25", "maps_f3+1+4+0+2_t0.29_b0.3"]
    assert [c.options["folds"] for c in cands[::15][:4]] == [(3, 1, 4, 0, 2), (3, 1, 4, 0), (3, 1, 4), (3, 1)]
    assert len(calibrate.candidates(5, 0.29, 0.25)) == 15 + 15 + 5  # unranked: all folds only
    edge = calibrate.candidates(2, 0.05, 0.95)
    assert all(0 < c.options["thresh"] < 1 and 0 < c.options["box_thresh"] < 1 for c in edge if c.method == "maps")
    assert (
        len([c for c in edge if c.method == "maps"]) == 4 * 1
    )  # thresh 0.05 - 0.06 and box_thresh 0.95 + 0.05 fall outside (0, 1)
    with pytest.raises(DataError, match=r"ranking \[0, 0\] is not an order of the 2 folds"):
        calibrate.candidates(2, 0.29, 0.25, ranking=[0, 0])
    made = [calibrate.Scored(calibrate.fold(i), h, 0, 0) for i, h in enumerate([0.8, 0.9, 0.8, 0.95])]
    assert calibrate.rank_folds(made) == [3, 1, 0, 2]


def test_map_candidates_need_every_folds_maps(tmp_path):
    sets, dirs = folds_of([TRUE, TRUE], tmp_path, "x")
    with pytest.raises(DataError, match="map fusion needs the stored maps of all 2 folds"):
        calibrate.candidate_predictions([calibrate.maps((0, 1), 0.29, 0.25)], sets, dirs[:1])
    with pytest.raises(DataError, match="no labelled images"):
        calibrate.score_candidates([calibrate.fold(0)], {}, [sets[0]])


# ------------------------------------------------------------------------ the ensemble component


def _artifact(cls, path: Path, metadata: dict | None = None):
    artifact = cls(name=path.name, uri=str(path), metadata=metadata or {})
    artifact.path = str(path)
    return artifact


def component_inputs(tmp: Path, per_fold=(FALSE, TRUE, FALSE)) -> dict:
    """A dataset root whose val and test images carry TRUE's words, and folds that found
    `per_fold[k]` there (by default: fold 1 exact, folds 0 and 2 agreeing on false words only)."""
    import cv2
    from kfp.dsl import Artifact, Dataset

    root = tmp / "data"
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        names = [f"{split}{i}.png" for i in range(2)]
        for name in names:
            cv2.imwrite(str(root / "images" / split / name), np.full(SIZE[::-1] + (3,), 255, np.uint8))
        write_ufo(
            {n: {wid: Word(w.points) for wid, w in words(TRUE).items()} for n in names},
            root / "jsons" / f"{split}.json",
        )
    inputs = {}
    for split, key in (("test", ""), ("val", "calibration_")):
        names = [f"{split}{i}.png" for i in range(2)]
        preds, maps = [], []
        for k, boxes in enumerate(per_fold):
            path = tmp / f"{split}_pred_{k}.json"
            write_ufo({n: words(boxes) for n in names}, path)
            folder = tmp / f"{split}_maps_{k}"
            for n in names:
                write_map(folder, n, prob_map(boxes), np.eye(3), SIZE, PP)
            preds.append(_artifact(Artifact, path, {"fold": k}))
            maps.append(_artifact(Artifact, folder, {"fold": k}))
        inputs[f"{key}predictions"], inputs[f"{key}maps"] = preds, maps
    return inputs | {"dataset": _artifact(Dataset, root)}


def run_component(func, inputs: dict, out: Path, calibration: str = "val", **fan_in):
    from kfp.dsl import HTML, Artifact, Markdown, Metrics

    out.mkdir()
    o = {
        "fused": _artifact(Artifact, out / "fused.json"),
        "metrics": _artifact(Metrics, out / "metrics"),
        "report": _artifact(Markdown, out / "report.md"),
        "view": _artifact(HTML, out / "view.html"),
    }
    chosen = func(
        **inputs, calibration=calibration, min_vote=2, iou=0.5, thresh=PP["thresh"], box_thresh=PP["box_thresh"], **o
    )
    return chosen, o


def test_the_ensemble_component_applies_the_calibration_choice_to_the_test_set(tmp_path):
    from components.ensemble import ensemble

    inputs = component_inputs(tmp_path)
    chosen, o = run_component(ensemble.python_func, inputs, tmp_path / "out")
    assert chosen == "fold 1 alone"
    fused, _ = read_ufo(o["fused"].path)
    test_fold_1, _ = read_ufo(inputs["predictions"][1].path)
    assert {n: [w.points.tolist() for w in ws.values()] for n, ws in fused.items()} == {
        n: [w.points.tolist() for w in ws.values()] for n, ws in test_fold_1.items()
    }
    m = o["metrics"].metadata
    assert (
        m["calibration/hmean/fold_1"] == m["calibration/hmean_chosen"] == 1.0 > m["calibration/hmean/boxes_v2_iou0.5"]
    )
    assert len([k for k in m if k.startswith("calibration/hmean/")]) == 15 * 2 + 9 + 3
    assert m["test/hmean_ensemble"] == m["test/hmean_best_fold"] == m["test/hmean_fold_1"] == 1.0
    assert m["test/hmean_fold_mean"] == pytest.approx(1 / 3) and m["test/ensemble_gain"] == 0.0
    report = Path(o["report"].path).read_text()
    assert "Method: **fold 1 alone**, chosen on the val split" in report
    assert "| **chosen** | fold 1 alone | 1.0000 |" in report
    assert "best first: the 10 best, every single fold and the best box voting of 42" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "method" not in line]
    assert all(f"| fold {k} alone |" in report for k in range(3)) and report.count("| box voting, min_vote") >= 1
    assert 10 < len(rows) <= 10 + 3 + 2
    assert "fold mean 0.3333" in report and o["fused"].metadata["method"] == "fold"


def test_calibration_none_is_the_fixed_vote(tmp_path):
    from components.ensemble import ensemble

    inputs = component_inputs(tmp_path)
    chosen, o = run_component(ensemble.python_func, inputs, tmp_path / "out", calibration="none")
    assert chosen == "box voting, min_vote 2, iou 0.5"
    assert not [k for k in o["metrics"].metadata if k.startswith("calibration/")]
    assert o["metrics"].metadata["test/hmean_ensemble"] < 1.0  # folds 0 and 2 outvote the exact fold
    assert "fixed (no calibration set: `calibration=none`)" in Path(o["report"].path).read_text()


def test_unrolled_ensemble_gives_what_the_real_one_gives(tmp_path):
    """The kfp-2.5 wrapper calls components.ensemble with its per-fold inputs as lists: same words,
    metrics and report."""
    from components.ensemble import ensemble
    from pipelines import unrolled

    inputs = component_inputs(tmp_path, [FALSE, TRUE, FALSE, TRUE[:3], FALSE])
    real = run_component(ensemble.python_func, inputs, tmp_path / "real")
    per_fold = {
        f"{key}_{i}": a
        for key in ("predictions", "maps", "calibration_predictions", "calibration_maps")
        for i, a in enumerate(inputs.pop(key))
    }
    wrapped = run_component(unrolled.ensemble.python_func, inputs | per_fold, tmp_path / "wrapped")

    def seen(result):
        chosen, o = result
        return (
            chosen,
            Path(o["fused"].path).read_text(),
            dict(o["metrics"].metadata),
            Path(o["report"].path).read_text(),
            Path(o["view"].path).read_text(),
        )

    # fold 3 holds half of fold 1's words and nothing else: the two folds' mean finds every word, and
    # ties go to map fusion before a single fold
    assert seen(wrapped) == seen(real) and real[0] == "map fusion of folds 1, 3 (thresh 0.29, box_thresh 0.25)"


def test_the_deployment_plan_names_the_chosen_members_and_how_to_fuse_them():
    """models/ensemble.json (published by the pipeline): folds by position become the members' model files."""
    from model.calibrate import deployment

    tasks = ["fold_0", "fold_1", "fold_2"]
    plan = deployment(
        {"method": "maps", "folds": [2, 0], "thresh": 0.26, "box_thresh": 0.3, "calibration": "val"}, tasks
    )
    assert plan["members"] == ["fold_2/model.onnx", "fold_0/model.onnx"]
    assert plan["settings"] == {"thresh": 0.26, "box_thresh": 0.3} and plan["chosen_on"] == "val"
    assert "--mode maps --thresh 0.26 --box-thresh 0.3" in plan["how"]
    plan = deployment({"method": "boxes", "min_vote": 2, "iou": 0.5, "calibration": "none"}, tasks)
    assert plan["members"] == [f"{t}/model.onnx" for t in tasks] and "--min-vote 2 --iou 0.5" in plan["how"]
    assert deployment({"method": "fold", "fold": 1}, tasks)["members"] == ["fold_1/model.onnx"]
    with pytest.raises(DataError, match="names no method"):
        deployment({}, tasks)


def test_folds_that_tuned_different_unclip_ratios_fuse_with_their_median_and_the_plan_says_so():
    """Each fold model may carry its own post-processing (model/tune.py); a fused map is post-processed once."""
    from model.calibrate import deployment, fused_unclip_ratio
    from model.probmaps import ProbMap

    def m(unclip):
        return ProbMap(
            "r.jpg", np.zeros((4, 4)), np.eye(3), (4, 4), None if unclip is None else {"unclip_ratio": unclip}
        )

    assert fused_unclip_ratio([m(2.0), m(2.0), m(None)]) is None  # they agree: as recorded
    assert fused_unclip_ratio([m(1.75), m(2.0), m(2.25), m(2.25)]) == 2.125
    plan = deployment(
        {
            "method": "maps",
            "folds": [1, 0],
            "thresh": 0.26,
            "box_thresh": 0.3,
            "unclip_ratio": 2.125,
            "calibration": "val",
        },
        ["fold_0", "fold_1"],
    )
    assert plan["settings"]["unclip_ratio"] == 2.125 and "--box-thresh 0.3 --unclip-ratio 2.125 -o" in plan["how"]

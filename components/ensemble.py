"""ensemble: the fold models' test predictions combined by the method that scores best on the
calibration images (`model.calibrate`), scored against the test annotations when the dataset has
them, and an HTML view of a few test images."""

from typing import List

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from components import component


@component
def ensemble(
    predictions: Input[List[Artifact]],
    maps: Input[List[Artifact]],
    calibration_predictions: Input[List[Artifact]],
    calibration_maps: Input[List[Artifact]],
    dataset: Input[Dataset],
    calibration: str,
    min_vote: int,
    iou: float,
    thresh: float,
    box_thresh: float,
    fused: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    view: Output[HTML],
) -> str:
    """Choose how to combine the folds on the `calibration` split (every single fold, box voting
    over min_vote 1..K and a few IoUs, map fusion of the best k folds for k = K..2 over a
    thresh/box_thresh grid around `thresh`, `box_thresh`; highest CLEval hmean wins;
    `model.calibrate`) and apply it to the test predictions. "none": no
    calibration, box voting with `min_vote` and `iou`. Returns the chosen method.

    Metrics: calibration/hmean/<candidate> of every candidate, and with jsons/test.json in the
    dataset test/hmean of every fold, the best and the mean fold, the chosen method
    (test/hmean_ensemble), every candidate, and the gain (chosen - best fold). `report`: the
    candidate table for summary.md."""
    import os

    from model import calibrate

    top_rows = 10  # summary.md lists this many candidates (plus each single fold and the best vote)
    from model.data.ufo import DatasetRoot, read_ufo, write_ufo
    from model.fusion import fold_maps
    from model.metrics import evaluate
    from model.report import predictions_html, table

    sets = [read_ufo(p.path)[0] for p in predictions]
    folds = [int(p.metadata.get("fold", i)) for i, p in enumerate(predictions)]
    map_dirs = [p.path for p in maps]
    workers = min(4, os.cpu_count() or 1)
    root = DatasetRoot(dataset.path)

    scored = None
    if calibration == "none":
        chosen = calibrate.boxes(min_vote, iou)
        print(f"no calibration set: {chosen.describe(folds)} (the fixed method)", flush=True)
    else:
        labels = root.load(calibration, strict=False).images
        cal_sets = [read_ufo(p.path)[0] for p in calibration_predictions]
        cands = calibrate.plan(labels, cal_sets, thresh, box_thresh, workers=workers)
        found = calibrate.candidate_predictions(cands, cal_sets, [p.path for p in calibration_maps])
        scored = calibrate.score_candidates(cands, labels, found, workers=workers)
        best = calibrate.choose(scored)
        chosen = best.candidate
        for s in scored:
            metrics.log_metric(f"calibration/hmean/{s.candidate.label}", s.hmean)
        metrics.log_metric("calibration/hmean_chosen", best.hmean)
        metrics.log_metric("calibration/hmean_best_fold", max(s.hmean for s in scored if s.candidate.method == "fold"))
        print(
            f"calibration on {len(labels)} {calibration} images, {len(cands)} candidates: chose {chosen.describe(folds)} "
            f"(hmean {best.hmean:.4f})",
            flush=True,
        )

    (result,) = calibrate.candidate_predictions([chosen], sets, map_dirs)
    write_ufo(result, fused.path)
    words = sum(len(w) for w in result.values())
    fused.metadata.update({"method": chosen.method, **chosen.options, "calibration": calibration})
    if chosen.method == "maps":  # the folds may have tuned different unclip ratios: the fused map's, for deployment
        unclip = calibrate.fused_unclip_ratio(next(iter(fold_maps(map_dirs)))[1])
        if unclip is not None:
            fused.metadata["unclip_ratio"] = unclip
    metrics.log_metric("folds", len(sets))
    metrics.log_metric("words", words)
    print(
        f"ensemble of {len(sets)} fold(s), {chosen.describe(folds)}: {words} words on {len(result)} images", flush=True
    )

    lines = ["# Ensemble", ""]
    lines.append(
        f"Method: **{chosen.describe(folds)}**, "
        + (
            f"chosen on the {calibration} split (images no fold model trained on) among {len(scored)} candidates."
            if scored
            else "fixed (no calibration set: `calibration=none`)."
        )
    )
    test = root.load("test", strict=False)
    test_of = None
    if root.json_path("test").is_file() and test.images:

        def score(images) -> float:
            return evaluate(test.images, images, workers=workers).hmean

        per_fold = [score(s) for s in sets]
        for f, value in zip(folds, per_fold):
            metrics.log_metric(f"test/hmean_fold_{f}", value)
        best_fold, mean_fold, together = max(per_fold), sum(per_fold) / len(per_fold), score(result)
        metrics.log_metric("test/hmean_best_fold", best_fold)
        metrics.log_metric("test/hmean_fold_mean", mean_fold)
        metrics.log_metric("test/hmean_ensemble", together)
        metrics.log_metric("test/ensemble_gain", together - best_fold)
        if scored:
            cands = [s.candidate for s in scored]
            test_of = dict(zip(cands, (score(i) for i in calibrate.candidate_predictions(cands, sets, map_dirs))))
            for c, value in test_of.items():
                metrics.log_metric(f"test/hmean/{c.label}", value)
        lines += [
            "",
            f"test/hmean: ensemble **{together:.4f}** vs best single fold {best_fold:.4f} ({together - best_fold:+.4f}), "
            f"fold mean {mean_fold:.4f}.",
        ]
        print(
            f"test/hmean: ensemble {together:.4f} vs best single fold {best_fold:.4f} ({together - best_fold:+.4f}), "
            f"fold mean {mean_fold:.4f}",
            flush=True,
        )
    else:
        lines += ["", "The test split has no annotations: the ensemble's gain is not measured."]
        print("test split has no annotations (jsons/test.json): ensemble gain not measured", flush=True)
    if scored:
        header, rows = calibrate.candidate_rows(scored, chosen, test_of, folds, top=top_rows)
        shown = f"the {top_rows} best, every single fold and the best box voting" if len(rows) < len(scored) else "all"
        lines += [
            "",
            f"Candidates on the {calibration} split, best first: {shown} of {len(scored)} (every one's "
            "calibration/hmean is in the Metrics artifact)"
            + ("; test hmean shown for comparison, never used to choose:" if test_of else ":"),
            "",
            table(header, rows),
        ]
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(view.path, "w", encoding="utf-8") as f:
        f.write(
            predictions_html(
                f"Ensemble ({chosen.describe(folds)}) on test images", {n: test.path(n) for n in test.sizes}, result
            )
        )
    return chosen.describe(folds)

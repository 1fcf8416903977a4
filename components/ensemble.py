"""ensemble: the fold models' test predictions fused by IoU voting (`model.ensemble`), scored
against the test annotations when the dataset has them, and an HTML view of a few test images."""

from typing import List

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components import component


@component
def ensemble(
    predictions: Input[List[Artifact]],
    dataset: Input[Dataset],
    min_vote: int,
    iou: float,
    fused: Output[Artifact],
    metrics: Output[Metrics],
    view: Output[HTML],
) -> int:
    """Keep a word when >= min_vote fold models agree (IoU >= iou); returns the words kept.

    With jsons/test.json in the dataset, Metrics holds test/hmean of every fold, of the best
    single fold and of the ensemble, and the gain (ensemble - best fold)."""
    from model.data.ufo import DatasetRoot, read_ufo, write_ufo
    from model.ensemble import ensemble as fuse
    from model.metrics import evaluate
    from model.report import predictions_html

    sets = [read_ufo(p.path)[0] for p in predictions]
    folds = [p.metadata.get("fold", i) for i, p in enumerate(predictions)]
    result = fuse(sets, min_vote=min_vote, iou=iou)
    write_ufo(result, fused.path)
    words = sum(len(w) for w in result.values())
    metrics.log_metric("folds", len(sets))
    metrics.log_metric("words", words)
    print(f"ensemble of {len(sets)} fold(s), min_vote {min_vote}, iou {iou}: {words} words on {len(result)} images", flush=True)

    root = DatasetRoot(dataset.path)
    test = root.load("test", strict=False)
    if root.json_path("test").is_file() and test.images:
        def score(images) -> float:
            found = {name: [w.points for w in images.get(name, {}).values()] for name in test.images}
            return evaluate(test.images, found).hmean

        per_fold = [score(s) for s in sets]
        for fold, value in zip(folds, per_fold):
            metrics.log_metric(f"test/hmean_fold_{int(fold)}", value)
        best, together = max(per_fold), score(result)
        metrics.log_metric("test/hmean_best_fold", best)
        metrics.log_metric("test/hmean_ensemble", together)
        metrics.log_metric("test/ensemble_gain", together - best)
        print(f"test/hmean: best single fold {best:.4f}, ensemble {together:.4f} ({together - best:+.4f})", flush=True)
    else:
        print("test split has no annotations (jsons/test.json): ensemble gain not measured", flush=True)
    with open(view.path, "w", encoding="utf-8") as f:
        f.write(predictions_html(f"Ensemble (min_vote {min_vote}) on test images", {n: test.path(n) for n in test.sizes}, result))
    return words

"""evaluate: CLEval of a trained model on a split (the replication's val/hmean that the decision uses)."""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import component


@component
def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    folds: Input[Artifact],
    fold: int,
    split: str,
    metrics: Output[Metrics],
) -> NamedTuple("Scores", [("hmean", float), ("precision", float), ("recall", float)]):
    """Score best.pt on `split` ("val": the training's validation images, fold -1 the root's own;
    "test" needs jsons/test.json), independently of the numbers training printed."""
    from collections import namedtuple

    import torch
    from omegaconf import OmegaConf

    from components.common import split_overrides
    from model.data.splits import load_split
    from model.evaluate import validate
    from model.predict import eval_loader, load_model

    # tuned=False: the config's post-processing as trained. The decision compares this score with the seed's
    # bar, measured with fixed settings, and best.pt's tuned ones were chosen on this very val split.
    net, cfg = load_model(f"{model.path}/best.pt", split_overrides(dataset.path, folds.path, fold), tuned=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_split(cfg.dataset, split)
    result = validate(
        net.to(device),
        eval_loader(data, cfg),
        data,
        device,
        postprocess_options=OmegaConf.to_container(cfg.models.head.postprocess),
        workers=cfg.trainer.eval_workers,
    )
    for key in ("hmean", "precision", "recall"):
        metrics.log_metric(f"{split}/{key}", getattr(result, key))
    metrics.log_metric("images", len(data.images))
    print(
        f"{split}/hmean={result.hmean!r} {split}/precision={result.precision!r} {split}/recall={result.recall!r} "
        f"({len(data.images)} images)",
        flush=True,
    )
    return namedtuple("Scores", ["hmean", "precision", "recall"])(result.hmean, result.precision, result.recall)

"""train: one DBNet training (the replication, or one fold) → Model artifact + Metrics."""

from typing import List, NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import component


@component
def train(
    dataset: Input[Dataset],
    folds: Input[Artifact],
    fold: int,
    preset: str,
    lr: float,
    weight_decay: float,
    t_max: int,
    eta_min: float,
    epochs: int,
    thresh: float,
    box_thresh: float,
    max_candidates: int,
    overrides: List[str],
    output_uri: str,
    run_id: str,
    job_id: str,
    model: Output[Model],
    metrics: Output[Metrics],
    init_from: str = "",  # last, with a default: callers from before it (tests, other pipelines) still fit
) -> NamedTuple("TrainResult", [("hmean", float), ("best_epoch", int)]):
    """Train `preset` with the given hyperparameters; fold -1 is the replication (the root's own
    train/val split), fold i trains on fold i of `folds`. `init_from` (a checkpoint URI, "" none):
    the weights the training starts from (model/train.py; a resumed retry takes its checkpoint).

    The run's checkpoints are mirrored to <output_uri>/runs/<run>/checkpoints/<task>/ after every
    epoch: a retried (preempted) pod resumes from there. The Model artifact holds best.pt (weights
    and config, no optimizer state), metrics.jsonl and summary.json; Metrics the best epoch's
    val/hmean, val/precision, val/recall and the learning curve.
    """
    import shutil
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from components.common import run_prefix, split_overrides, task_name, training_args
    from components.trained import export_model
    from model.config import load_config
    from model.train import train as run_training

    name = task_name(fold)
    work = Path(tempfile.mkdtemp(prefix=f"receiptflow-{name}-"))
    mirror = f"{run_prefix(output_uri, run_id, job_id)}/checkpoints/{name}"
    cfg = load_config(
        training_args(
            preset,
            lr,
            weight_decay,
            t_max,
            eta_min,
            epochs,
            thresh,
            box_thresh,
            max_candidates,
            [
                *split_overrides(dataset.path, folds.path, fold),
                f"exp_name={name}",
                f"output_dir={work}",
                "resume=auto",
                f"checkpoint_mirror={mirror}",
                *overrides,
            ],
            init_from,
        )
    )
    run_training(cfg)

    best = export_model(
        work,
        model,
        metrics,
        {
            "task": name,
            "fold": int(fold),
            "preset": preset,
            "lr": lr,
            "weight_decay": weight_decay,
            "T_max": t_max,
            "eta_min": eta_min,
            "epochs": epochs,
        },
    )
    shutil.rmtree(work, ignore_errors=True)
    return namedtuple("TrainResult", ["hmean", "best_epoch"])(best["val/hmean"], best["epoch"])

"""`sweep-then-train`: the Katib sweep, its best trial by absolute metric, then run8-kfold with
that trial as the replication config (the seed's §5 lesson applied end to end).

    run_katib_experiment → select_best_trial → run8_kfold(run8_* = the best trial's values)

The Experiment is the one `receiptflow sweep render` writes (pipelines/sweep.py), embedded at
compile time with placeholders for the run's dataset and output URIs and MinIO Secret
(`minio_secret` reaches every trial pod's secretKeyRefs); each run creates its own copy, named
after the run, so a retried task attaches to it. `namespace` empty (the default): the run's own
namespace, from the pod's service account. The pipeline's service account needs RBAC for
Experiments and Trials there (manifests/base/rbac.yaml).
"""

from typing import List

from kfp import dsl

from components.run_katib_experiment import run_katib_experiment
from components.select_best_trial import select_best_trial
from pipelines.run8_kfold import MINIO_SECRET, RUN3, run8_kfold
from pipelines.sweep import experiment

NAME = "sweep-then-train"


@dsl.pipeline(
    name=NAME,
    description="Katib Bayesian sweep (median stop) → best trial by absolute val/hmean, early-stopped "
    "ones included → run8-kfold with it as the replication config",
)
def sweep_then_train(
    dataset_uri: str = "s3://receiptflow/datasets/receipts",
    output_uri: str = "s3://receiptflow",
    namespace: str = "",
    sweep_timeout_minutes: int = 24 * 60,
    preset: str = "efficientnet_b4_lr_optimized",
    epochs: int = 22,
    run3_lr: float = RUN3["lr"],
    run3_weight_decay: float = RUN3["weight_decay"],
    run3_t_max: int = RUN3["t_max"],
    run3_eta_min: float = RUN3["eta_min"],
    folds: int = 5,
    calibration: str = "val",
    min_vote: int = 3,
    overrides: List[str] = [],
    minio_secret: str = MINIO_SECRET,
    node_selector: dict = {},
    tolerations: list = [],
) -> str:
    # filled in per run by run_katib_experiment (components/katib/experiments.py)
    template = experiment(dataset_uri="@DATASET_URI@", output_uri="@OUTPUT_URI@", minio_secret="@MINIO_SECRET@")
    sweep = run_katib_experiment(
        experiment=template,
        namespace=namespace,
        dataset_uri=dataset_uri,
        output_uri=output_uri,
        minio_secret=minio_secret,
        name_suffix=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        timeout_minutes=sweep_timeout_minutes,
        poll_seconds=60,
    )
    sweep.set_display_name("Katib sweep").set_caching_options(False)
    best = select_best_trial(
        experiment_name=sweep.outputs["name"], namespace=sweep.outputs["namespace"], objective="val/hmean"
    )
    best.set_display_name("best trial (absolute val/hmean)")
    train = run8_kfold(
        dataset_uri=dataset_uri,
        output_uri=output_uri,
        preset=preset,
        epochs=epochs,
        run8_lr=best.outputs["lr"],
        run8_weight_decay=best.outputs["weight_decay"],
        run8_t_max=best.outputs["t_max"],
        run8_eta_min=best.outputs["eta_min"],
        run3_lr=run3_lr,
        run3_weight_decay=run3_weight_decay,
        run3_t_max=run3_t_max,
        run3_eta_min=run3_eta_min,
        folds=folds,
        calibration=calibration,
        min_vote=min_vote,
        overrides=overrides,
        minio_secret=minio_secret,
        node_selector=node_selector,
        tolerations=tolerations,
    )
    train.set_display_name("run8-kfold with the best trial")
    return train.output

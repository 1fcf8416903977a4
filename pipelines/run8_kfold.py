"""The seed's plan as one Kubeflow pipeline (DESIGN.md §1, §4): `run8-kfold`.

    validate_run → prepare_dataset → split_folds → train replication (Run 8) → evaluate → choose_config
      → ParallelFor folds: train + predict test → ensemble (Collected) → make_submission → publish

Parameters default to the seed's values (full precision). On a cluster every training and
prediction requests one `nvidia.com/gpu`, mounts a memory-backed /dev/shm for DataLoader
workers, reads MinIO credentials from a Secret and retries on failure; a retried training
resumes from the checkpoint it mirrors under ``<output_uri>/runs/<run id>/checkpoints/``.
`kfp.local` runs the same function on a laptop (it ignores the Kubernetes settings, retries and
caching, which the compiled spec still carries).
"""

from typing import List

from kfp import dsl, kubernetes

from components.choose_config import choose_config
from components.ensemble import ensemble
from components.evaluate import evaluate
from components.make_submission import make_submission
from components.predict import predict
from components.prepare_dataset import prepare_dataset
from components.publish import publish
from components.split_folds import split_folds
from components.train import train
from components.validate_run import validate_run

NAME = "run8-kfold"
DEFAULT_FOLDS = 5  # ParallelFor parallelism is fixed at compile time: one pod per fold of the default

# The seed's sweep (report §3.2 and §7): Run 8, the replication config, and Run 3, the fallback.
RUN8 = {"lr": 0.0005134333170096499, "weight_decay": 6.797303101020006e-05, "t_max": 24, "eta_min": 6.388390006720873e-06}
RUN3 = {"lr": 0.0003845588887231477, "weight_decay": 0.00013939498132089153, "t_max": 22, "eta_min": 1.8596851896215065e-05}

# Kubernetes settings of the tasks (requests; memory limits at 1.5x)
MINIO_SECRET = "receiptflow-minio"
MINIO_SECRET_KEYS = {  # Secret data key -> environment variable that model.storage reads
    "MINIO_ENDPOINT": "MINIO_ENDPOINT",
    "MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY": "MINIO_SECRET_KEY",
    "MINIO_SECURE": "MINIO_SECURE",
}
GPU = "nvidia.com/gpu"
GPU_TASK = {"cpu": "8", "memory": "32Gi", "shm": "16Gi"}
CPU_TASK = {"cpu": "2", "memory": "8Gi"}
TRAIN_RETRIES = 3


def _cpu(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    task.set_display_name(name)
    task.set_cpu_request(CPU_TASK["cpu"]).set_memory_request(CPU_TASK["memory"])
    return task.set_memory_limit(_times(CPU_TASK["memory"], 1.5))


def _gpu(task: dsl.PipelineTask, name: str, node_selector, tolerations) -> dsl.PipelineTask:
    """One GPU, CPU and memory for the DataLoader workers, /dev/shm in memory, placement."""
    task.set_display_name(name)
    task.set_accelerator_type(GPU).set_accelerator_limit(1)
    task.set_cpu_request(GPU_TASK["cpu"]).set_memory_request(GPU_TASK["memory"])
    task.set_memory_limit(_times(GPU_TASK["memory"], 1.5))
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=GPU_TASK["shm"])
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


def _storage(task: dsl.PipelineTask, secret) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=MINIO_SECRET_KEYS)


def _times(quantity: str, factor: float) -> str:
    return f"{int(int(quantity.removesuffix('Gi')) * factor)}Gi"


@dsl.pipeline(name=NAME, description="Run 8 replication → Run 3 fallback gate → K-fold training → voting ensemble → "
              "submission CSV → MinIO (the seed's plan)")
def run8_kfold(
    dataset_uri: str = "s3://receiptflow/datasets/receipts",
    output_uri: str = "s3://receiptflow",
    run_id: str = "",
    preset: str = "efficientnet_b4_lr_optimized",
    epochs: int = 22,
    thresh: float = 0.29,
    box_thresh: float = 0.25,
    max_candidates: int = 600,
    run8_lr: float = RUN8["lr"],
    run8_weight_decay: float = RUN8["weight_decay"],
    run8_t_max: int = RUN8["t_max"],
    run8_eta_min: float = RUN8["eta_min"],
    run3_lr: float = RUN3["lr"],
    run3_weight_decay: float = RUN3["weight_decay"],
    run3_t_max: int = RUN3["t_max"],
    run3_eta_min: float = RUN3["eta_min"],
    success_hmean: float = 0.966,
    acceptable_hmean: float = 0.965,
    folds: int = DEFAULT_FOLDS,
    fold_seed: int = 42,
    min_vote: int = 3,
    ensemble_iou: float = 0.5,
    strict: bool = False,
    overrides: List[str] = [],
    minio_secret: str = MINIO_SECRET,
    node_selector: dict = {},
    tolerations: list = [],
) -> str:
    """The seed's plan; `overrides` are extra `key=value` config overrides for every training.
    Returns the prefix the results were published under."""
    job_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    checked = _storage(_cpu(validate_run(
        dataset_uri=dataset_uri, preset=preset, epochs=epochs, thresh=thresh, box_thresh=box_thresh,
        max_candidates=max_candidates, run8_lr=run8_lr, run8_weight_decay=run8_weight_decay, run8_t_max=run8_t_max,
        run8_eta_min=run8_eta_min, run3_lr=run3_lr, run3_weight_decay=run3_weight_decay, run3_t_max=run3_t_max,
        run3_eta_min=run3_eta_min, folds=folds, min_vote=min_vote, ensemble_iou=ensemble_iou, overrides=overrides,
    ), "check parameters"), minio_secret)
    data = _storage(_cpu(prepare_dataset(dataset_uri=dataset_uri, strict=strict), "prepare dataset"), minio_secret)
    data.after(checked)
    split = _cpu(split_folds(dataset=data.outputs["dataset"], k=folds, seed=fold_seed), "split folds")
    common = dict(dataset=data.outputs["dataset"], folds=split.outputs["folds"], preset=preset, epochs=epochs, thresh=thresh,
                  box_thresh=box_thresh, max_candidates=max_candidates, overrides=overrides, output_uri=output_uri,
                  run_id=run_id, job_id=job_id)

    replication = train(fold=-1, lr=run8_lr, weight_decay=run8_weight_decay, t_max=run8_t_max, eta_min=run8_eta_min, **common)
    _storage(_gpu(replication, "train replication (Run 8)", node_selector, tolerations), minio_secret)
    replication.set_retry(num_retries=TRAIN_RETRIES, backoff_duration="60s", backoff_factor=2.0)
    scored = _gpu(evaluate(model=replication.outputs["model"], dataset=data.outputs["dataset"], folds=split.outputs["folds"],
                           fold=-1, split="val"), "evaluate replication", node_selector, tolerations)
    chosen = _cpu(choose_config(
        hmean=scored.outputs["hmean"], success_hmean=success_hmean, acceptable_hmean=acceptable_hmean,
        run8_lr=run8_lr, run8_weight_decay=run8_weight_decay, run8_t_max=run8_t_max, run8_eta_min=run8_eta_min,
        run3_lr=run3_lr, run3_weight_decay=run3_weight_decay, run3_t_max=run3_t_max, run3_eta_min=run3_eta_min,
        folds=folds,
    ), "choose config (Run 8 or Run 3)")

    # The loop iterates over the decision's plan (fold index + chosen hyperparameters) rather than
    # reading choose_config's scalar outputs inside it: kfp.local 2.17 hands a loop body the
    # loop item in place of any upstream task's parameter output.
    with dsl.ParallelFor(items=chosen.outputs["Output"], parallelism=DEFAULT_FOLDS) as item:
        fold_model = train(fold=item.fold, lr=item.lr, weight_decay=item.weight_decay, t_max=item.t_max,
                           eta_min=item.eta_min, **common)
        _storage(_gpu(fold_model, "train fold", node_selector, tolerations), minio_secret)
        fold_model.set_retry(num_retries=TRAIN_RETRIES, backoff_duration="60s", backoff_factor=2.0)
        fold_pred = _gpu(predict(model=fold_model.outputs["model"], dataset=data.outputs["dataset"], split="test"),
                         "predict test", node_selector, tolerations)

    fused = _cpu(ensemble(predictions=dsl.Collected(fold_pred.outputs["predictions"]), dataset=data.outputs["dataset"],
                          min_vote=min_vote, iou=ensemble_iou), "voting ensemble")
    csv = _cpu(make_submission(fused=fused.outputs["fused"], dataset=data.outputs["dataset"]), "submission CSV")
    published = _cpu(publish(
        submission=csv.outputs["submission"], fused=fused.outputs["fused"], replication=replication.outputs["model"],
        models=dsl.Collected(fold_model.outputs["model"]), decision=chosen.outputs["decision"],
        data_report=data.outputs["report"],
        ensemble_metrics=fused.outputs["metrics"], output_uri=output_uri, run_id=run_id, job_id=job_id,
    ), "publish to MinIO")
    _storage(published, minio_secret).set_caching_options(False)
    return published.outputs["Output"]

"""The seed's plan as one Kubeflow pipeline (docs/design.md §1, §4): `run8-kfold`.

    validate_run → prepare_dataset → split_folds (val held out) → train replication (Run 8) → evaluate
      → choose_config → ParallelFor folds: train + predict test and val → ensemble (Collected: method
      chosen on val) → make_submission → publish

Parameters default to the seed's values (full precision). On a cluster every training and
prediction requests one `nvidia.com/gpu`, mounts a memory-backed /dev/shm for DataLoader
workers, reads MinIO credentials from a Secret and retries on failure; a retried training
resumes from the checkpoint it mirrors under ``<output_uri>/runs/<run id>/checkpoints/``. Tasks
that read the dataset or the output store are never cached (a re-pushed dataset keeps its URI).
`kfp.local` runs the same function on a laptop (it ignores the Kubernetes settings and caching,
which the compiled spec still carries, and honours the retry policy).

Two builds (pipelines/compile.py, backend versions in pipelines/backends.py): `run8_kfold` needs
a KFP 2.14+ backend (`dsl.Collected`, Secret name and placement as parameters);
`run8_kfold_kfp25()` runs on 2.5.0 (Kubeflow 1.10.1+): the DEFAULT_FOLDS folds unrolled into
root-DAG tasks, the fan-in through pipelines/unrolled.py, Secret and placement fixed at compile time.
"""

import inspect
from dataclasses import dataclass, field
from typing import Callable, List

from kfp import dsl, kubernetes

from components import IMAGE, pods
from components.choose_config import choose_config
from components.ensemble import ensemble
from components.evaluate import evaluate
from components.make_submission import make_submission
from components.predict import predict
from components.prepare_dataset import prepare_dataset
from components.publish import publish
from components.run_training_job import train_job
from components.split_folds import split_folds
from components.train import train
from components.validate_run import validate_run
from pipelines import unrolled as unrolled_components

NAME = "run8-kfold"
DESCRIPTION = (
    "Run 8 replication → Run 3 fallback gate → K-fold training → ensemble chosen on held-out labels → "
    "submission CSV → MinIO (the seed's plan)"
)
DEFAULT_FOLDS = 5  # ParallelFor parallelism is fixed at compile time: one pod per fold of the default

# The seed's sweep (report §3.2 and §7): Run 8, the replication config, and Run 3, the fallback.
RUN8 = {
    "lr": 0.0005134333170096499,
    "weight_decay": 6.797303101020006e-05,
    "t_max": 24,
    "eta_min": 6.388390006720873e-06,
}
RUN3 = {
    "lr": 0.0003845588887231477,
    "weight_decay": 0.00013939498132089153,
    "t_max": 22,
    "eta_min": 1.8596851896215065e-05,
}

# Kubernetes settings of the tasks (requests; memory limits at 1.5x)
MINIO_SECRET = "receiptflow-minio"
MINIO_SECRET_KEYS = pods.MINIO_SECRET_KEYS  # Secret data key -> environment variable that model.storage reads
GPU = pods.GPU
GPU_TASK = {"cpu": "8", "memory": "32Gi", "shm": pods.SHM}
CPU_TASK = {"cpu": "2", "memory": "8Gi"}
# the trainings' retry policy: 3 retries after 60 s, 120 s, 240 s (`retried`)
TRAIN_RETRIES = 3
TRAIN_BACKOFF = "60s"
TRAIN_BACKOFF_FACTOR = 2.0
# run8_kfold_trainjob: every training a multi-node job (components/run_training_job.py, docs/distributed.md)
JOB_DEFAULTS = {
    "training_backend": "trainjob",
    "num_nodes": 1,
    "gpus_per_node": 4,
    "training_runtime": "TrainingRuntime/receiptflow-torch",
    "namespace": "",
    "job_timeout_minutes": 2880,
}
JOB_POLL_SECONDS = 30
PREDICTED = (
    "predictions",
    "maps",
    "calibration_predictions",
    "calibration_maps",
)  # predict's outputs the ensemble takes


@dataclass(frozen=True)
class Fixed:
    """What the kfp-2.5 build fixes at compile time. 2.5.0 would also resolve them as parameters (PR
    #11770; 2.4.1 drops those fields and sends an empty Secret name), but literals are read by every
    2.x backend, which leaves `{{$.pipeline_job_uuid}}` the build's only 2.5.0 dependency."""

    minio_secret: str = MINIO_SECRET
    node_selector: dict = field(default_factory=dict)  # label -> value, e.g. {"gpu": "a100"}
    tolerations: tuple = ()  # Kubernetes tolerations: {"key", "operator", "value", "effect", "tolerationSeconds"}


def _cpu(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    task.set_display_name(name)
    task.set_cpu_request(CPU_TASK["cpu"]).set_memory_request(CPU_TASK["memory"])
    return task.set_memory_limit(_times(CPU_TASK["memory"], 1.5))


def _gpu(task: dsl.PipelineTask, name: str, place) -> dsl.PipelineTask:
    """One GPU, CPU and memory for the DataLoader workers, /dev/shm in memory, placement."""
    task.set_display_name(name)
    task.set_accelerator_type(GPU).set_accelerator_limit(1)
    task.set_cpu_request(GPU_TASK["cpu"]).set_memory_request(GPU_TASK["memory"])
    task.set_memory_limit(_times(GPU_TASK["memory"], 1.5))
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=GPU_TASK["shm"]
    )
    place(task)
    return task


def _placed_by_parameters(node_selector, tolerations):
    """kfp-2.14: node selector and tolerations are run parameters (nodeSelectorJson, tolerationJson)."""

    def place(task):
        kubernetes.add_node_selector_json(task, node_selector)
        kubernetes.add_toleration_json(task, tolerations)

    return place


def _placed_at_compile_time(fixed: Fixed):
    """kfp-2.5: literal nodeSelector / tolerations (none when `fixed` has none)."""

    def place(task):
        for label, value in fixed.node_selector.items():
            kubernetes.add_node_selector(task, label_key=label, label_value=value)
        for t in fixed.tolerations:
            kubernetes.add_toleration(
                task,
                key=t.get("key"),
                operator=t.get("operator", "Equal"),
                value=t.get("value"),
                effect=t.get("effect"),
                toleration_seconds=t.get("tolerationSeconds"),
            )

    return place


def retried(task: dsl.PipelineTask, backoff: str = TRAIN_BACKOFF) -> dsl.PipelineTask:
    """The trainings' retry policy. kfp.local honours it as clusters do: kfp 2.17.3
    kfp/local/orchestrator/task_executor.py:124-175 retries a failed task max_retry_count times,
    sleeping backoff_duration * backoff_factor**attempt (tests/test_pipeline.py runs it with a 1 s backoff)."""
    return task.set_retry(num_retries=TRAIN_RETRIES, backoff_duration=backoff, backoff_factor=TRAIN_BACKOFF_FACTOR)


def _storage(task: dsl.PipelineTask, secret) -> dsl.PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=MINIO_SECRET_KEYS)


def _external(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Never cached: the task reads the dataset or the output store, which can change under the same URI
    (a re-pushed dataset, checkpoints of an earlier attempt); KFP's cache key sees only the URI."""
    return task.set_caching_options(False)


def _times(quantity: str, factor: float) -> str:
    return f"{int(int(quantity.removesuffix('Gi')) * factor)}Gi"


def _plan(p: dict, secret, place, unrolled: bool, jobs: bool = False):
    """The pipeline's tasks from its parameters `p`; returns the published prefix.

    `jobs`: each training is a TrainJob or PyTorchJob of p["num_nodes"] x p["gpus_per_node"] GPUs,
    launched and awaited by a CPU task (components/run_training_job.py) with the same outputs as
    the one-GPU train task, so everything downstream is the same.

    `unrolled`: the kfp-2.5 build, DEFAULT_FOLDS fold trainings as separate root-DAG tasks feeding
    the one-input-per-fold ensemble and publish of pipelines/unrolled.py, instead of a ParallelFor
    over choose_config's plan and `dsl.Collected` (backend >= 2.14, PR #11725)."""
    job_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER  # resolved by the backend from 2.5.0 (driver.go:1648-1650, PR #11599)
    checked = _external(
        _storage(
            _cpu(
                validate_run(
                    dataset_uri=p["dataset_uri"],
                    preset=p["preset"],
                    epochs=p["epochs"],
                    thresh=p["thresh"],
                    box_thresh=p["box_thresh"],
                    max_candidates=p["max_candidates"],
                    run8_lr=p["run8_lr"],
                    run8_weight_decay=p["run8_weight_decay"],
                    run8_t_max=p["run8_t_max"],
                    run8_eta_min=p["run8_eta_min"],
                    run3_lr=p["run3_lr"],
                    run3_weight_decay=p["run3_weight_decay"],
                    run3_t_max=p["run3_t_max"],
                    run3_eta_min=p["run3_eta_min"],
                    folds=p["folds"],
                    calibration=p["calibration"],
                    min_vote=p["min_vote"],
                    ensemble_iou=p["ensemble_iou"],
                    overrides=p["overrides"],
                    init_from=p["init_from"],
                ),
                "check parameters",
            ),
            secret,
        )
    )
    data = _external(
        _storage(_cpu(prepare_dataset(dataset_uri=p["dataset_uri"], strict=p["strict"]), "prepare dataset"), secret)
    )
    data.after(checked)
    # its inputs are upstream artifacts: a fresh prepare_dataset artifact is a cache miss
    split = _cpu(
        split_folds(dataset=data.outputs["dataset"], k=p["folds"], seed=p["fold_seed"], hold_out=p["calibration"]),
        "split folds",
    )
    common = dict(
        dataset=data.outputs["dataset"],
        folds=split.outputs["folds"],
        preset=p["preset"],
        epochs=p["epochs"],
        thresh=p["thresh"],
        box_thresh=p["box_thresh"],
        max_candidates=p["max_candidates"],
        overrides=p["overrides"],
        init_from=p["init_from"],
        output_uri=p["output_uri"],
        run_id=p["run_id"],
        job_id=job_id,
    )

    def training(fold, hyper: dict, name: str) -> dsl.PipelineTask:
        if (
            jobs
        ):  # a retry or resumed run attaches to a running or succeeded job of its name, else makes the next attempt
            task = _external(
                _storage(
                    _cpu(
                        train_job(
                            fold=fold,
                            **hyper,
                            **common,
                            training_backend=p["training_backend"],
                            num_nodes=p["num_nodes"],
                            gpus_per_node=p["gpus_per_node"],
                            training_runtime=p["training_runtime"],
                            minio_secret=secret,
                            image=IMAGE,
                            cpu_per_gpu=GPU_TASK["cpu"],
                            memory_per_gpu_gi=int(GPU_TASK["memory"].removesuffix("Gi")),
                            namespace=p["namespace"],
                            timeout_minutes=p["job_timeout_minutes"],
                            poll_seconds=JOB_POLL_SECONDS,
                        ),
                        f"{name} (multi-node job)",
                    ),
                    secret,
                )
            )
        else:
            task = _external(_storage(_gpu(train(fold=fold, **hyper, **common), name, place), secret))
        return retried(task)

    def prediction(model: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
        return _gpu(
            predict(
                model=model.outputs["model"],
                dataset=data.outputs["dataset"],
                split="test",
                calibration=p["calibration"],
            ),
            name,
            place,
        )

    replication = training(
        -1,
        dict(lr=p["run8_lr"], weight_decay=p["run8_weight_decay"], t_max=p["run8_t_max"], eta_min=p["run8_eta_min"]),
        "train replication (Run 8)",
    )
    scored = _gpu(
        evaluate(
            model=replication.outputs["model"],
            dataset=data.outputs["dataset"],
            folds=split.outputs["folds"],
            fold=-1,
            split="val",
        ),
        "evaluate replication",
        place,
    )
    rule = dict(
        hmean=scored.outputs["hmean"],
        success_hmean=p["success_hmean"],
        acceptable_hmean=p["acceptable_hmean"],
        **{
            k: p[k]
            for k in (
                "run8_lr",
                "run8_weight_decay",
                "run8_t_max",
                "run8_eta_min",
                "run3_lr",
                "run3_weight_decay",
                "run3_t_max",
                "run3_eta_min",
            )
        },
        folds=p["folds"],
    )
    hyper_names = ("lr", "weight_decay", "t_max", "eta_min")
    if unrolled:
        chosen = _cpu(unrolled_components.choose_config(**rule), "choose config (Run 8 or Run 3)")
        hyper = {k: chosen.outputs[k] for k in hyper_names}
        models, predictions = {}, {}
        for i in range(DEFAULT_FOLDS):
            fold_model = training(i, hyper, f"train fold {i}")
            models[f"models_{i}"] = fold_model.outputs["model"]
            fold_pred = prediction(fold_model, f"predict test + calibration (fold {i})")
            predictions.update({f"{out}_{i}": fold_pred.outputs[out] for out in PREDICTED})
        fuse, publish_to = unrolled_components.ensemble, unrolled_components.publish
    else:
        chosen = _cpu(choose_config(**rule), "choose config (Run 8 or Run 3)")
        # The loop iterates over the decision's plan (fold index + chosen hyperparameters) rather than
        # reading choose_config's scalar outputs inside it: kfp.local 2.17 hands a loop body the
        # loop item in place of any upstream task's parameter output.
        with dsl.ParallelFor(items=chosen.outputs["Output"], parallelism=DEFAULT_FOLDS) as item:
            fold_model = training(item.fold, {k: getattr(item, k) for k in hyper_names}, "train fold")
            fold_pred = prediction(fold_model, "predict test + calibration")
        models = {"models": dsl.Collected(fold_model.outputs["model"])}
        predictions = {out: dsl.Collected(fold_pred.outputs[out]) for out in PREDICTED}
        fuse, publish_to = ensemble, publish

    fused = _cpu(
        fuse(
            **predictions,
            dataset=data.outputs["dataset"],
            calibration=p["calibration"],
            min_vote=p["min_vote"],
            iou=p["ensemble_iou"],
            thresh=p["thresh"],
            box_thresh=p["box_thresh"],
        ),
        "ensemble",
    )
    csv = _cpu(make_submission(fused=fused.outputs["fused"], dataset=data.outputs["dataset"]), "submission CSV")
    published = _external(
        _storage(
            _cpu(
                publish_to(
                    submission=csv.outputs["submission"],
                    fused=fused.outputs["fused"],
                    replication=replication.outputs["model"],
                    **models,
                    decision=chosen.outputs["decision"],
                    data_report=data.outputs["report"],
                    ensemble_metrics=fused.outputs["metrics"],
                    ensemble_report=fused.outputs["report"],
                    output_uri=p["output_uri"],
                    run_id=p["run_id"],
                    job_id=job_id,
                ),
                "publish to MinIO",
            ),
            secret,
        )
    )
    return published.outputs["Output"]


# The builds' parameters, listed once: (name, type, default) in signature order. Every build takes PLAN; the
# kfp-2.14 builds add FOLDS (the kfp-2.5 builds fix K at compile time) and PLACEMENT (the kfp-2.5 builds write
# the Secret and placement into the YAML); the job builds add JOBS.
PLAN_HEAD = [
    ("dataset_uri", str, "s3://receiptflow/datasets/receipts"),
    ("output_uri", str, "s3://receiptflow"),
    ("run_id", str, ""),
    ("preset", str, "efficientnet_b4_lr_optimized"),
    ("epochs", int, 22),
    ("thresh", float, 0.29),
    ("box_thresh", float, 0.25),
    ("max_candidates", int, 600),
    *[(f"run8_{k}", type(v), v) for k, v in RUN8.items()],
    *[(f"run3_{k}", type(v), v) for k, v in RUN3.items()],
    ("success_hmean", float, 0.966),
    ("acceptable_hmean", float, 0.965),
]
FOLDS = [("folds", int, DEFAULT_FOLDS)]
PLAN_TAIL = [
    ("fold_seed", int, 42),
    ("calibration", str, "val"),
    ("min_vote", int, 3),
    ("ensemble_iou", float, 0.5),
    ("strict", bool, False),
    ("overrides", List[str], []),
    ("init_from", str, ""),
]
PLACEMENT = [("minio_secret", str, MINIO_SECRET), ("node_selector", dict, {}), ("tolerations", list, [])]
JOBS = [(k, type(v), v) for k, v in JOB_DEFAULTS.items()]


def _pipeline_function(name: str, params: list[tuple], doc: str, plan: Callable[[dict], object]) -> Callable:
    """A function with the signature `params` (what @dsl.pipeline reads, through inspect.signature) whose call
    hands its arguments, defaults filled, to `plan` as one dict."""
    sig = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=t) for n, t, d in params],
        return_annotation=str,
    )

    def pipeline(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return plan(dict(bound.arguments))

    pipeline.__signature__, pipeline.__name__, pipeline.__qualname__, pipeline.__doc__ = sig, name, name, doc
    return pipeline


run8_kfold = dsl.pipeline(name=NAME, description=DESCRIPTION)(
    _pipeline_function(
        "run8_kfold",
        PLAN_HEAD + FOLDS + PLAN_TAIL + PLACEMENT,
        """The seed's plan; `overrides` are extra `key=value` config overrides for every training;
    `init_from` a checkpoint (s3:// URI, e.g. a pretraining run's best.pt; "" none) every training
    (replication and folds) starts from, checked to exist by the first task.
    `calibration`: the split kept out of the folds on which the ensemble's method is chosen ("val";
    "none": pool it into the folds and vote with `min_vote` / `ensemble_iou`).
    Returns the prefix the results were published under.""",
        lambda p: _plan(
            p, p["minio_secret"], _placed_by_parameters(p["node_selector"], p["tolerations"]), unrolled=False
        ),
    )
)

run8_kfold_trainjob = dsl.pipeline(
    name=f"{NAME}-trainjob", description=DESCRIPTION + " [trainings as multi-node TrainJobs / PyTorchJobs]"
)(
    _pipeline_function(
        "run8_kfold_trainjob",
        PLAN_HEAD + FOLDS + PLAN_TAIL + PLACEMENT + JOBS,
        """run8_kfold with every training (the replication and each fold) run as a multi-node job:
    `training_backend` "trainjob" (Kubeflow Trainer v2 TrainJob of `training_runtime`: NAME of a
    ClusterTrainingRuntime such as torch-distributed, or TrainingRuntime/NAME) or "pytorchjob"
    (Training Operator v1), `num_nodes` x `gpus_per_node` GPUs, in `namespace` (empty: the run's).
    `node_selector` / `tolerations` place the prediction and evaluation pods; the training pods are
    placed by the runtime (TrainJob) or run where the scheduler puts them (PyTorchJob).
    Returns the prefix the results were published under.""",
        lambda p: _plan(
            p, p["minio_secret"], _placed_by_parameters(p["node_selector"], p["tolerations"]), unrolled=False, jobs=True
        ),
    )
)


def run8_kfold_kfp25(fixed: Fixed = Fixed()):
    """The kfp-2.5 build of run8_kfold (Kubeflow 1.10.1+): the same tasks with the DEFAULT_FOLDS folds
    unrolled, no `folds` parameter (K is fixed at compile time), and the MinIO Secret and the
    placement of `fixed` written into the YAML instead of offered as parameters."""
    if unrolled_components.FOLDS != DEFAULT_FOLDS:
        raise ValueError(
            f"pipelines/unrolled.py takes {unrolled_components.FOLDS} folds, DEFAULT_FOLDS is {DEFAULT_FOLDS}"
        )
    return dsl.pipeline(name=NAME, description=DESCRIPTION + f" [KFP 2.5 build: {DEFAULT_FOLDS} folds unrolled]")(
        _pipeline_function(
            "run8_kfold",
            PLAN_HEAD + PLAN_TAIL,
            """The seed's plan; `overrides` are extra `key=value` config overrides for every training;
        `init_from` a checkpoint URI every training starts from ("" none). Returns the prefix the results were published under.""",
            lambda p: _plan(
                dict(p, folds=DEFAULT_FOLDS), fixed.minio_secret, _placed_at_compile_time(fixed), unrolled=True
            ),
        )
    )


def run8_kfold_trainjob_kfp25(fixed: Fixed = Fixed()):
    """The kfp-2.5 build of run8_kfold_trainjob (Kubeflow 1.10.1+): run8_kfold_kfp25's unrolled plan
    with every training a multi-node job. Its default backend is "pytorchjob": Kubeflow 1.10 ships
    the Training Operator v1 and no Trainer v2 (the job launcher needs no newer KFP feature)."""
    jobs = [(n, t, "pytorchjob" if n == "training_backend" else d) for n, t, d in JOBS]
    return dsl.pipeline(
        name=f"{NAME}-trainjob",
        description=DESCRIPTION + f" [KFP 2.5 build: {DEFAULT_FOLDS} folds "
        "unrolled; trainings as multi-node PyTorchJobs / TrainJobs]",
    )(
        _pipeline_function(
            "run8_kfold_trainjob",
            PLAN_HEAD + PLAN_TAIL + jobs,
            """run8_kfold (KFP 2.5 build) with every training a PyTorchJob (Training Operator v1, default) or
        TrainJob of `num_nodes` x `gpus_per_node` GPUs. Returns the prefix the results were published under.""",
            lambda p: _plan(
                dict(p, folds=DEFAULT_FOLDS),
                fixed.minio_secret,
                _placed_at_compile_time(fixed),
                unrolled=True,
                jobs=True,
            ),
        )
    )

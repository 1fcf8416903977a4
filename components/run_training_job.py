"""train_job: one training (the replication, or one fold) as a multi-node TrainJob or PyTorchJob,
launched and watched from a small CPU task → the same Model artifact and Metrics as
components/train.py, so the rest of the pipeline cannot tell which backend trained."""

from typing import List, NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components import component


@component
def train_job(
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
    training_backend: str,
    num_nodes: int,
    gpus_per_node: int,
    training_runtime: str,
    minio_secret: str,
    image: str,
    cpu_per_gpu: str,
    memory_per_gpu_gi: int,
    namespace: str,
    timeout_minutes: int,
    poll_seconds: int,
    model: Output[Model],
    metrics: Output[Metrics],
    init_from: str = "",  # last, with a default: callers from before it (tests, other pipelines) still fit
) -> NamedTuple("TrainResult", [("hmean", float), ("best_epoch", int)]):
    """Train as components/train.py does, on `num_nodes` x `gpus_per_node` GPUs: a TrainJob of
    `training_runtime` (training_backend "trainjob", Kubeflow Trainer v2) or a PyTorchJob
    (training_backend "pytorchjob", Training Operator v1), named after the run and the task, in
    `namespace` (empty: the pod's own). The inputs go to <run>/inputs/ in the object store, each
    node pulls them; rank 0 mirrors checkpoints to <run>/checkpoints/<task>/ as the one-pod training
    does (so a new job, or the other backend, resumes there). A retry of this task, or a new KFP run
    of the same run id, attaches to the job that runs or succeeded; after a failed one (left in
    place) it creates the next attempt `<name>-r2`... (training_job.run_job). The Model artifact is
    built from the mirror's best.pt and metrics.jsonl. Needs the RBAC of manifests/base/rbac.yaml."""
    import tempfile
    from collections import namedtuple
    from pathlib import Path

    from components import kube, pods, training_job as tj
    from components.common import run_prefix, split_overrides, task_name, training_args
    from components.trained import export_model
    from model.storage import download, upload

    # bad values fail here, before anything is uploaded or created (`pipeline submit` checks the same)
    tj.check_job(training_backend, num_nodes, gpus_per_node, timeout_minutes, training_runtime)
    namespace = kube.default_namespace(namespace)
    name = task_name(fold)
    run = run_prefix(output_uri, run_id, job_id)
    mirror = f"{run}/checkpoints/{name}"

    # the artifacts this task received, where every node can reach them (unchanged files are skipped)
    local = {"dataset": f"{tj.DATA_DIR}/dataset", "folds": f"{tj.DATA_DIR}/folds"}
    pulls = [(f"{run}/inputs/dataset", local["dataset"])]
    upload(dataset.path, pulls[0][0], progress=False)
    if int(fold) >= 0:
        pulls.append((f"{run}/inputs/folds", local["folds"]))
        upload(folds.path, pulls[1][0], progress=False)
    args = training_args(
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
            *split_overrides(local["dataset"], local["folds"], fold),
            f"exp_name={name}",
            f"output_dir={tj.DATA_DIR}/run",
            "resume=auto",
            f"checkpoint_mirror={mirror}",
            *overrides,
        ],
        init_from,
    )
    command = tj.node_command(pulls, args)
    env = pods.env(minio_secret.strip())
    job = tj.job_name(run.rsplit("/", 1)[1], name)
    labels = {"app.kubernetes.io/part-of": "receiptflow", "app.kubernetes.io/component": "training"}
    cpu, memory = str(int(cpu_per_gpu) * gpus_per_node), f"{memory_per_gpu_gi * gpus_per_node}Gi"
    if training_backend == "trainjob":
        body = tj.trainjob(
            job,
            namespace=namespace,
            image=image,
            command=command,
            env=env,
            num_nodes=num_nodes,
            gpus_per_node=gpus_per_node,
            runtime=training_runtime,
            cpu=cpu,
            memory=memory,
            labels=labels,
        )
    else:
        body = tj.pytorchjob(
            job,
            namespace=namespace,
            num_nodes=num_nodes,
            gpus_per_node=gpus_per_node,
            labels=labels,
            pod=lambda: pods.pod_template(
                container_name=tj.PYTORCH_CONTAINER,
                image=image,
                command=command,
                env_vars=env,
                gpus=gpus_per_node,
                cpu=cpu,
                memory=memory,
            ),
        )
    print(
        f"{name}: {body['kind']} {namespace}/{job}, {num_nodes} node(s) x {gpus_per_node} GPU(s); checkpoints {mirror}",
        flush=True,
    )
    # job_id (the KFP run) stamps the job: a new KFP run of this run id meets it again (--resume)
    job = tj.run_job(
        kube.custom_objects_api(),
        kube.core_v1_api(),
        body,
        kfp_run=job_id.strip(),
        timeout_minutes=timeout_minutes,
        poll_seconds=poll_seconds,
        log=lambda text: print(text, flush=True),
    )

    work = Path(tempfile.mkdtemp(prefix=f"receiptflow-{name}-"))
    for file in ("best.pt", "metrics.jsonl"):
        download(f"{mirror}/{file}", work / file, progress=False)
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
            "backend": training_backend,
            "job": f"{namespace}/{job}",
            "nodes": num_nodes,
            "gpus_per_node": gpus_per_node,
        },
    )
    return namedtuple("TrainResult", ["hmean", "best_epoch"])(best["val/hmean"], best["epoch"])

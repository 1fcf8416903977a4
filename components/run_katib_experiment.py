"""run_katib_experiment: create a Katib Experiment (a custom object, through the kubernetes
client), or attach to it when a retry of the task finds it, and wait for it, reporting the trials'
progress, with a timeout."""

from typing import NamedTuple

from kfp.dsl import Markdown, Output

from components import component


@component
def run_katib_experiment(
    experiment: dict,
    namespace: str,
    dataset_uri: str,
    output_uri: str,
    minio_secret: str,
    name_suffix: str,
    timeout_minutes: int,
    poll_seconds: int,
    progress: Output[Markdown],
) -> NamedTuple("Sweep", [("name", str), ("namespace", str)]):
    """Create `experiment` (a kubeflow.org/v1beta1 Experiment manifest whose trial template says
    @DATASET_URI@, @OUTPUT_URI@ and @MINIO_SECRET@ where this run's URIs and MinIO Secret go) as
    `<metadata.name>-<name_suffix's first 8 letters/digits>` in `namespace` (empty: the pod's own,
    from its service-account namespace file), then poll it every `poll_seconds` until it succeeds
    or fails; fails after `timeout_minutes` (the Experiment keeps running). A retry of the task
    (same run, same name) attaches to the Experiment its first try created instead of failing on
    409 AlreadyExists; API errors that pass (5xx, 429, dropped connections, timeouts) are retried
    at the next poll, up to components.kube.MAX_API_FAILURES in a row. Returns the Experiment's
    name and namespace. Needs RBAC to create and read Experiments and Trials in the namespace
    (manifests/base/rbac.yaml)."""
    from collections import namedtuple

    from components.katib.experiments import experiment_body, run_experiment
    from components.kube import custom_objects_api, default_namespace

    namespace = default_namespace(namespace)
    body = experiment_body(
        experiment,
        name_suffix=name_suffix,
        namespace=namespace,
        values={
            "@DATASET_URI@": dataset_uri.rstrip("/"),
            "@OUTPUT_URI@": output_uri.rstrip("/"),
            "@MINIO_SECRET@": minio_secret.strip(),
        },
    )
    name = body["metadata"]["name"]
    line = run_experiment(
        custom_objects_api(),
        body,
        timeout_minutes=timeout_minutes,
        poll_seconds=poll_seconds,
        log=lambda text: print(text, flush=True),
    )
    with open(progress.path, "w", encoding="utf-8") as f:
        f.write(f"# Katib Experiment `{namespace}/{name}`\n\n{line}\n")
    return namedtuple("Sweep", ["name", "namespace"])(name, namespace)

"""Which KFP backend runs which compiled pipeline: the IR features we use, the first backend
release that runs each (read in kubeflow/pipelines at the release tags), the Kubeflow releases
and what they ship, and the promise made for every file in pipelines/compiled/.

`features(path)` finds the features in a compiled file, `min_backend(path)` is the newest first
version among them; tests/test_backends.py fails when a file needs more than its promise, and
README.md / docs/cluster.md carry `supported_versions_table()` verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"


@dataclass(frozen=True)
class Feature:
    what: str
    first: str  # first KFP backend release that handles it
    evidence: str  # upstream PR / commit and file:line at the release tags
    required: bool = True  # False: older backends run the pipeline without it (no retries, no limit)
    lost: str = ""  # what an older backend then ignores, for the table


FEATURES = {
    "collected": Feature(
        "`dsl.Collected` (a ParallelFor's outputs consumed after the loop)",
        "2.14.0",
        "PR #11725 (commit ed828b5, in 2.14.0, not in 2.5.0); backend/src/v2/driver/driver.go:1764-1772 at 2.5.0 skips "
        "ParallelFor DAGs when resolving an upstream task and driver.go:2002-2004 returns one artifact; "
        "backend/src/v2/driver/resolve.go:881-930 at 2.14.0 collects every iteration",
    ),
    "name_parameter": Feature(
        "Secret / ConfigMap name from a pipeline parameter (`secretNameParameter` without `secretName`)",
        "2.5.0",
        "PR #11770 (commit fd1b48b, in 2.5.0, not in 2.4.1); driver.go:905-915 at 2.5.0; 2.4.1 knows only "
        "`secretName` and sends an empty one: the pod is rejected",
    ),
    "node_selector_json": Feature(
        "node selector from a pipeline parameter (`nodeSelectorJson`)",
        "2.5.0",
        "PR #11770 (commit fd1b48b); driver.go:786-790 at 2.5.0; 2.4.1 drops the field",
    ),
    "toleration_json": Feature(
        "tolerations from a pipeline parameter (`tolerationJson`)",
        "2.5.0",
        "PR #11770 (commit fd1b48b); driver.go:807-815 at 2.5.0; 2.4.1 drops the field",
    ),
    "job_placeholder": Feature(
        "`{{$.pipeline_job_uuid}}` (or another job/task placeholder) as an input value",
        "2.5.0",
        "PR #11599 (commit 6a13f4b, in 2.5.0, not in 2.4.1); driver.go:1643-1656 at 2.5.0; older backends pass "
        "the text itself, so every run shares one runs/{{$.pipeline_job_uuid}}/ prefix",
    ),
    "k8s_native": Feature(
        "Kubernetes-native format (Pipeline / PipelineVersion objects with `platformSpec`)",
        "2.14.0",
        "PipelineVersion CRD's platformSpec: PR #12016 (commit 04407fb), displayName: PR #11952, both in 2.14.0 "
        "(manifests/kustomize/base/crds/pipelines.kubeflow.org_pipelineversions.yaml:46-55 at 2.14.0); "
        "the API server serves them only with --pipelinesStoreKubernetes (backend/src/apiserver/main.go)",
    ),
    "retry_root": Feature(
        "`retryPolicy` of a root-DAG task",
        "2.4.1",
        "commit 78fab71 (#11716, cherry-picks into 2.4.1); absent from 2.4.0's argocompiler; issues #9950, #11329",
        required=False,
        lost="retries",
    ),
    "retry_sub_dag": Feature(
        "`retryPolicy` of a task inside a sub-DAG or ParallelFor",
        "2.14.0",
        "argocompiler container.go:508-518 at 2.5.0 reads the policy from the root DAG only (issue #11288); "
        "PR #11908 (commit beae62f): container.go:325 at 2.14.0 reads the task's own; "
        "issues #12389, #13897 still report loop tasks not retried",
        required=False,
        lost="retries inside the fold loop",
    ),
    "parallelism_limit": Feature(
        "ParallelFor `parallelismLimit`",
        "2.4.0",
        "PR #10798 (commit b7d8c97, argocompiler dag.go:359 at 2.4.0); older backends start every iteration at once",
        required=False,
        lost="parallelism limit",
    ),
}

# Kubeflow release -> what its manifests ship (kubeflow/manifests README.md at each tag) and receiptflow's overlay
# for it. `jobs`: the training-job kinds its example/kustomization.yaml installs, which decide the overlay's sweeps
# and the job builds' `training_backend`: the Training Operator (PyTorchJob) up to 1.10; 1.11 installs Trainer v2
# and leaves the Training Operator out (v1.11.0 example/kustomization.yaml:94 is commented out, :96 adds
# applications/trainer).
KUBEFLOW = {
    "1.9.0": {
        "kfp": "2.2.0",
        "katib": "0.17.0",
        "training": "Training Operator v1.8.0",
        "store": "MinIO",
        "jobs": ("pytorchjob",),
        "overlay": None,
    },
    "1.9.1": {
        "kfp": "2.3.0",
        "katib": "0.17.0",
        "training": "Training Operator v1.8.1",
        "store": "MinIO",
        "jobs": ("pytorchjob",),
        "overlay": None,
    },
    "1.10.0": {
        "kfp": "2.4.1",
        "katib": "0.18.0",
        "training": "Training Operator v1.9.1",
        "store": "MinIO",
        "jobs": ("pytorchjob",),
        "overlay": None,
    },
    "1.10.1": {
        "kfp": "2.5.0",
        "katib": "0.18.0",
        "training": "Training Operator v1.9.2",
        "store": "MinIO",
        "jobs": ("pytorchjob",),
        "overlay": "kubeflow-1.10",
    },
    "1.10.2": {
        "kfp": "2.5.0",
        "katib": "0.18.0",
        "training": "Training Operator v1.9.2",
        "store": "MinIO",
        "jobs": ("pytorchjob",),
        "overlay": "kubeflow-1.10",
    },
    "1.11.0": {
        "kfp": "2.15.0",
        "katib": "0.19.0",
        "training": "Trainer v2.1.0 (no Training Operator)",
        "store": "SeaweedFS (S3 API at `minio-service`)",
        "jobs": ("trainjob",),
        "overlay": "kubeflow-1.11",
    },
}
# the sweeps (manifests/katib/) each job kind adds to the one-GPU Job sweep
SWEEPS = {"pytorchjob": "PyTorchJob", "trainjob": "TrainJob"}


@dataclass(frozen=True)
class Promise:
    target: str  # pipelines/compile.py target that writes the file
    backend: str  # oldest KFP backend it is promised to run on
    job: str | None = (
        None  # the training_backend it defaults to (a job build): listed only where that kind is installed
    )


COMPILED_FILES = {  # file under pipelines/compiled/ -> promise (README's supported-versions table)
    "run8_kfold.yaml": Promise("kfp-2.14", "2.14.0"),
    # run8_kfold with the trainings as TrainJobs/PyTorchJobs: the launcher is a plain container task (no new IR
    # feature); what it needs of the cluster (Trainer v2 or Training Operator v1) is in docs/distributed.md
    "run8_kfold_trainjob.yaml": Promise("kfp-2.14", "2.14.0", "trainjob"),
    "sweep_then_train.yaml": Promise("kfp-2.14", "2.14.0"),  # embeds the kfp-2.14 run8_kfold (dsl.Collected)
    # kfp-kubernetes 2.17 writes fields 2.5.0's proto lacks (SecretAsEnv.optional): the 2.5.0 driver reads the
    # executor config with AllowUnknownFields (backend/src/v2/cmd/driver/main.go:235-244, common/util/json.go:70-75)
    "run8_kfold-kfp2.5.yaml": Promise("kfp-2.5", "2.5.0"),
    "run8_kfold_trainjob-kfp2.5.yaml": Promise("kfp-2.5", "2.5.0", "pytorchjob"),  # Kubeflow 1.10: PyTorchJob trainings
    "k8s/run8_kfold.yaml": Promise("kfp-2.14", "2.14.0"),
    "k8s/sweep_then_train.yaml": Promise("kfp-2.14", "2.14.0"),
    "k8s/run8_kfold_trainjob.yaml": Promise("kfp-2.14", "2.14.0", "trainjob"),
}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


_PLACEHOLDERS = {
    "{{$.pipeline_job_name}}",
    "{{$.pipeline_job_resource_name}}",
    "{{$.pipeline_job_uuid}}",
    "{{$.pipeline_task_name}}",
    "{{$.pipeline_task_uuid}}",
}
_NAME_FIELDS = {  # platform-spec list -> (literal name field, parameter field)
    "secretAsEnv": ("secretName", "secretNameParameter"),
    "secretAsVolume": ("secretName", "secretNameParameter"),
    "imagePullSecret": ("secretName", "secretNameParameter"),
    "configMapAsEnv": ("configMapName", "configMapNameParameter"),
    "configMapAsVolume": ("configMapName", "configMapNameParameter"),
}


def _documents(source) -> tuple[dict, dict, bool]:
    """(pipeline spec, Kubernetes executor configs, is the Kubernetes-native format) of a compiled file."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    docs = [d for d in yaml.safe_load_all(text) if d]
    versions = [d for d in docs if d.get("kind") == "PipelineVersion"]
    if versions:
        spec = versions[0]["spec"]
        return spec["pipelineSpec"], _executors(spec.get("platformSpec") or {}), True
    return docs[0], _executors(docs[1] if len(docs) > 1 else {}), False


def _executors(platform: dict) -> dict:
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def features(source: str | Path) -> dict[str, list[str]]:
    """feature key (FEATURES) -> where the compiled file (a Path, or its YAML text) uses it."""
    spec, executors, k8s_native = _documents(source)
    found: dict[str, list[str]] = {}

    def add(key: str, where: str) -> None:
        found.setdefault(key, []).append(where)

    if k8s_native:
        add("k8s_native", "PipelineVersion")
    dags = {"root": spec["root"], **spec.get("components", {})}
    for dag_name, comp in dags.items():
        tasks = comp.get("dag", {}).get("tasks", {})
        loops = {n for n, t in tasks.items() if "parameterIterator" in t or "artifactIterator" in t}
        for name, task in tasks.items():
            where = f"{dag_name}/{name}"
            inputs = task.get("inputs", {})
            for kind, source_key in (("parameters", "taskOutputParameter"), ("artifacts", "taskOutputArtifact")):
                for input_name, value in inputs.get(kind, {}).items():
                    if value.get(source_key, {}).get("producerTask") in loops:
                        add("collected", f"{where}.{input_name}")
                    constant = value.get("runtimeValue", {}).get("constant")
                    if isinstance(constant, str) and constant in _PLACEHOLDERS:
                        add("job_placeholder", f"{where}.{input_name}")
            if "retryPolicy" in task:
                add("retry_root" if dag_name == "root" else "retry_sub_dag", where)
            if task.get("iteratorPolicy", {}).get("parallelismLimit"):
                add("parallelism_limit", where)
        outputs = comp.get("dag", {}).get("outputs", {})  # a loop's outputs re-exported by an enclosing DAG
        for name, value in outputs.get("parameters", {}).items():
            if value.get("valueFromParameter", {}).get("producerSubtask") in loops:
                add("collected", f"{dag_name}/outputs.{name}")
        for name, value in outputs.get("artifacts", {}).items():
            if any(s.get("producerSubtask") in loops for s in value.get("artifactSelectors", [])):
                add("collected", f"{dag_name}/outputs.{name}")

    for executor, config in executors.items():
        for field, (literal, parameter) in _NAME_FIELDS.items():
            entries = config.get(field, [])
            for entry in entries if isinstance(entries, list) else [entries]:
                # kfp-kubernetes writes a literal name to both fields: older backends read `secretName`
                if parameter in entry and not entry.get(literal):
                    add("name_parameter", f"{executor}.{field}")
        if "nodeSelectorJson" in config.get("nodeSelector", {}):
            add("node_selector_json", executor)
        if any("tolerationJson" in t for t in config.get("tolerations", [])):
            add("toleration_json", executor)
    return found


def min_backend(source: str | Path) -> str:
    """The oldest KFP backend that runs the file: the newest `first` of its required features."""
    required = [FEATURES[key].first for key in features(source) if FEATURES[key].required]
    return max(required, key=version, default="2.0.0")


def problems(source: str | Path, promised: str) -> list[str]:
    """Each required feature of the file that a `promised` backend cannot run: '<what> needs KFP X (where)'."""
    return [
        f"{FEATURES[k].what} needs KFP >= {FEATURES[k].first}, promised {promised} ({', '.join(where)})"
        for k, where in features(source).items()
        if FEATURES[k].required and version(FEATURES[k].first) > version(promised)
    ]


def degraded(source: str | Path, backend: str) -> list[str]:
    """What `backend` ignores of a file it runs (retries, the parallelism limit)."""
    return [
        FEATURES[k].lost
        for k in features(source)
        if not FEATURES[k].required and version(backend) < version(FEATURES[k].first)
    ]


def supported_files(backend: str, jobs: tuple[str, ...] | None = None) -> list[str]:
    """The compiled files that run on KFP `backend`; with `jobs` (the job kinds a release installs), only job
    builds whose default training_backend is one of them."""
    return [
        name
        for name, promise in COMPILED_FILES.items()
        if version(promise.backend) <= version(backend) and (jobs is None or promise.job is None or promise.job in jobs)
    ]


def supported_versions_table() -> str:
    """The Markdown table of README.md and docs/cluster.md (a test keeps them equal to this)."""
    rows = [
        "| Kubeflow | KFP backend | Katib | Trainer / Training Operator | artifact store | pipeline file (`pipelines/compiled/`) "
        "| overlay (`manifests/overlays/`): sweeps |",
        "|---|---|---|---|---|---|---|",
    ]
    for release, ships in KUBEFLOW.items():
        runs = supported_files(ships["kfp"], ships["jobs"])
        files = [f for f in runs if not f.startswith("k8s/")]
        if not files:
            oldest = min((p.backend for p in COMPILED_FILES.values()), key=version)
            works = f"**unsupported** (needs KFP ≥ {oldest})"
        else:
            works = ", ".join(f"`{f}`" for f in files)
            if any(f.startswith("k8s/") for f in runs):
                works += "; `k8s/` with the Kubernetes pipeline store"
            losses = sorted(
                {
                    lost
                    for f in files
                    if (COMPILED_DIR / f).is_file()
                    for lost in degraded(COMPILED_DIR / f, ships["kfp"])
                }
            )
            if losses:
                works += f" (no {', no '.join(losses)})"
        overlay = (
            f"`{ships['overlay']}`: Job, {', '.join(SWEEPS[j] for j in ships['jobs'])} trials"
            if ships["overlay"]
            else "—"
        )
        rows.append(
            f"| {release} | {ships['kfp']} | {ships['katib']} | {ships['training']} | {ships['store']} | {works} "
            f"| {overlay} |"
        )
    return "\n".join(rows)

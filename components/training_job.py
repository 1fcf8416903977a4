"""One training as a multi-node job, run by the cluster's engine: a Kubeflow Trainer v2 TrainJob
(Kubeflow 1.11+) or a Training Operator v1 PyTorchJob (Kubeflow 1.9+). The bodies, their names,
their state, the reason a job failed, and the create-or-attach wait of
components/run_training_job.py (the Katib launcher's pattern: components/katib/experiments.py; the client,
the retry rule and its constants: components/kube.py).

Every node runs the same command: pull the inputs from the object store, then
``python -m torch.distributed.run -m model.cli train ...``. torchrun takes its node count, rank,
processes per node and rendezvous from the ``PET_*`` variables both engines set (Trainer v2.1.0
pkg/constants/constants.go:122-135, set by pkg/runtime/framework/plugins/torch/torch.go:132-158;
Training Operator v1.9.0 pkg/controller.v1/pytorch/envvar.go:31-35, 94-124), so the command names
no address and no rank.

Imported inside component bodies (they run where the receiptflow package is installed); the
kubernetes client is imported only where it is used.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import time
from typing import Callable

from components.kube import MAX_API_FAILURES, RBAC, REQUEST_TIMEOUT, describe, transient

BACKENDS = ("trainjob", "pytorchjob")  # the launcher's; "task" (one pod, one GPU) is components/train.py
TRAINER_GROUP, TRAINER_VERSION, TRAINJOBS = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
KUBEFLOW_GROUP, KUBEFLOW_VERSION, PYTORCHJOBS = "kubeflow.org", "v1", "pytorchjobs"
# The trainer container of the `torch-distributed` runtime and of every runtime built from it
# (tests/fixtures/kubeflow-crds/torch_distributed-runtime.yaml; Trainer constants.go `Node`): the
# TrainJob's trainer.command/env/resources go to that container.
TRAINER_CONTAINER = "node"
PYTORCH_CONTAINER = "pytorch"  # the container the Training Operator configures (PyTorchJob default)
# Pod labels: rank 0's pod and all of a job's pods (JobSet labels for TrainJob, which runs a JobSet
# of the same name; Katib v0.19.0 constants.go:50 picks rank 0 the same way)
RANK0_LABELS = {
    "trainjob": {
        "jobset.sigs.k8s.io/replicatedjob-name": TRAINER_CONTAINER,
        "batch.kubernetes.io/job-completion-index": "0",
    },
    "pytorchjob": {"training.kubeflow.org/job-role": "master"},
}
JOB_LABEL = {"trainjob": "jobset.sigs.k8s.io/jobset-name", "pytorchjob": "training.kubeflow.org/job-name"}
# Terminal conditions: TrainJob Complete/Failed (Trainer v2.1.0 pkg/apis/trainer/v1alpha1/trainjob_types.go:58-65),
# PyTorchJob Succeeded/Failed (Training Operator v1.9.0 pkg/apis/kubeflow.org/v1/common_types.go:135-159)
SUCCEEDED = {"trainjob": "Complete", "pytorchjob": "Succeeded"}
FAILED = "Failed"
DATA_DIR = "/tmp/receiptflow"  # where each node pulls its inputs (the image's HOME and scratch are under /tmp)
METRIC_LINE = re.compile(r"\bepoch=\d+\b.*\bval/hmean=")  # model/train.py's per-epoch line
# The KFP run (dsl.PIPELINE_JOB_ID_PLACEHOLDER) whose launcher created a job: several KFP runs share
# one receiptflow run id (`pipeline submit --resume`), hence one job name; this says whose it is.
KFP_RUN_ANNOTATION = "receiptflow/kfp-run"
# A failed job is left in place (its pods and logs) and the next try creates `<name>-r2`, `-r3`...;
# after this many failed attempts the task stops creating jobs (a failure no retry will cure).
MAX_ATTEMPTS = 20
# Job names stay a DNS-1035 label (TrainJob: Trainer v2.1.0 trainjob_types.go:37-38 CEL rules;
# PyTorchJob: Training Operator v1.9.0 pkg/webhooks/pytorch/pytorchjob_webhook.go:80) of at most
# 63 - 16 characters, so the names the engines derive (`<name>-node-0-12` JobSet hostnames,
# `<name>-worker-127` PyTorchJob pods and Services) are DNS labels too.
MAX_NAME = 47
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def check_job(
    training_backend: str, num_nodes: int, gpus_per_node: int, job_timeout_minutes: int, training_runtime: str
) -> None:
    """The job parameters, one ValueError naming the first bad one: the launcher checks them before
    it uploads or creates anything, `pipeline submit`/`run` before any request (pipelines/params.py)."""
    if training_backend not in BACKENDS:
        raise ValueError(
            f"training_backend={training_backend!r}: expected {' or '.join(BACKENDS)} (a Kubeflow Trainer "
            "v2 TrainJob or a Training Operator v1 PyTorchJob per training)"
        )
    for name, value in (
        ("num_nodes", num_nodes),
        ("gpus_per_node", gpus_per_node),
        ("job_timeout_minutes", job_timeout_minutes),
    ):
        if value < 1:
            raise ValueError(f"{name}={value}: must be at least 1")
    if training_backend == "trainjob":
        runtime_ref(training_runtime)


def job_name(run: str, task: str) -> str:
    """`rf-<run, cut to 12>-<6 hex of the whole run id>-<task>`: the same for every try of one run's
    task (a retried launcher attaches to its job), distinct across runs, and a DNS-1123 label short
    enough for the pod names the engines derive from it (<name>-node-0-0-xxxxx)."""
    clean = re.sub(r"[^a-z0-9]+", "-", run.lower()).strip("-")[:12].strip("-") or "run"
    digest = hashlib.sha256(run.encode()).hexdigest()[:6]
    return f"rf-{clean}-{digest}-{task.replace('_', '-')}"


def attempt_name(name: str, attempt: int) -> str:
    """The job of `attempt` (1: `name` itself, then `name-r2`, `-r3`...): a new attempt after a failed
    job, which stays for its logs."""
    full = name if attempt == 1 else f"{name}-r{attempt}"
    if len(full) > MAX_NAME or not _NAME.fullmatch(full):
        raise ValueError(f"job name {full!r}: expected a DNS-1035 label of at most {MAX_NAME} characters")
    return full


def runtime_ref(runtime: str) -> dict:
    """`NAME` (a ClusterTrainingRuntime, e.g. torch-distributed) or `TrainingRuntime/NAME` (one in the
    job's namespace, e.g. manifests/trainer's receiptflow-torch)."""
    kind, _, name = runtime.strip().rpartition("/")
    kind = kind or "ClusterTrainingRuntime"
    if kind not in ("ClusterTrainingRuntime", "TrainingRuntime") or not re.fullmatch(
        r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name
    ):
        raise ValueError(
            f"training_runtime={runtime!r}: expected NAME (a ClusterTrainingRuntime, e.g. torch-distributed) "
            "or TrainingRuntime/NAME (e.g. TrainingRuntime/receiptflow-torch from manifests/trainer)"
        )
    return {"apiGroup": TRAINER_GROUP, "kind": kind, "name": name}


def node_command(pulls: list[tuple[str, str]], train_args: list[str], *, katib: bool = False) -> list[str]:
    """`sh -c`: pull each (uri, local dir), then torchrun on `receiptflow train train_args`.

    torchrun is exec'd, so it is PID 1 and a pod's SIGTERM reaches training (which saves and
    mirrors before exiting) — except under Katib (`katib`): Katib's webhook appends
    `1>metrics.log 2>&1 && echo completed > $$.pid` to an `sh -c` script (v0.19.0
    pkg/webhook/v1beta1/pod/utils.go:160-190), which an exec'd shell would never run."""
    steps = [shlex.join(["receiptflow", "data", "pull", uri, local, "--no-progress"]) for uri, local in pulls]
    torchrun = shlex.join(["python", "-m", "torch.distributed.run", "-m", "model.cli", "train", *train_args])
    return ["sh", "-c", " && ".join([*steps, torchrun if katib else f"exec {torchrun}"])]


def resources(gpus: int, cpu: str, memory: str) -> dict:
    return {
        "requests": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpus},
        "limits": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpus},
    }


def trainjob(
    name: str,
    *,
    namespace: str | None,
    image: str,
    command: list[str],
    env: list[dict],
    num_nodes: int,
    gpus_per_node: int,
    runtime: str,
    cpu: str,
    memory: str,
    labels: dict | None = None,
) -> dict:
    """A trainer.kubeflow.org/v1alpha1 TrainJob of `runtime`: only fields Trainer v2.1.0 (Kubeflow
    1.11) and v2.2.0 both have (runtimeRef, trainer); pod-level settings (/dev/shm, securityContext,
    placement) belong to the runtime, since v2.1.0's podTemplateOverrides became runtimePatches in v2.2.0."""
    metadata = {
        "name": name,
        **({"namespace": namespace} if namespace else {}),
        **({"labels": labels} if labels else {}),
    }
    return {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "TrainJob",
        "metadata": metadata,
        "spec": {
            "runtimeRef": runtime_ref(runtime),
            "trainer": {
                "image": image,
                "command": command,
                "env": env,
                "numNodes": int(num_nodes),
                "numProcPerNode": int(gpus_per_node),
                "resourcesPerNode": resources(gpus_per_node, cpu, memory),
            },
        },
    }


def pytorchjob(
    name: str,
    *,
    namespace: str | None,
    pod: Callable[[], dict],
    num_nodes: int,
    gpus_per_node: int,
    labels: dict | None = None,
) -> dict:
    """A kubeflow.org/v1 PyTorchJob: a Master and num_nodes-1 Workers, each pod from `pod()` (a pod
    template whose container "pytorch" runs the node command), nprocPerNode processes per pod."""
    metadata = {
        "name": name,
        **({"namespace": namespace} if namespace else {}),
        **({"labels": labels} if labels else {}),
    }
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": pod()}}
    if num_nodes > 1:
        replicas["Worker"] = {"replicas": int(num_nodes) - 1, "restartPolicy": "Never", "template": pod()}
    return {
        "apiVersion": f"{KUBEFLOW_GROUP}/{KUBEFLOW_VERSION}",
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": {
            "nprocPerNode": str(int(gpus_per_node)),
            "runPolicy": {"backoffLimit": 0, "cleanPodPolicy": "None"},  # pods (and logs) stay
            "pytorchReplicaSpecs": replicas,
        },
    }


def _api_path(body: dict) -> tuple[str, str, str]:
    return (
        (TRAINER_GROUP, TRAINER_VERSION, TRAINJOBS)
        if body["kind"] == "TrainJob"
        else (KUBEFLOW_GROUP, KUBEFLOW_VERSION, PYTORCHJOBS)
    )


def backend_of(body: dict) -> str:
    return "trainjob" if body["kind"] == "TrainJob" else "pytorchjob"


def state(backend: str, obj: dict) -> tuple[str, str]:
    """("succeeded" | "failed" | "running", the deciding condition's reason and message)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == FAILED:
            return "failed", ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
        if c.get("type") == SUCCEEDED[backend]:
            return "succeeded", c.get("reason") or ""
    return "running", ""


def phase(obj: dict) -> str:
    """The newest True condition's type (Created, Running, Suspended...), else Pending."""
    true = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    return true[-1]["type"] if true else "Pending"


def pod_problems(pods: list) -> list[str]:
    """`pod/container: reason (exit N): message` for every container that ended badly or cannot start,
    and the pod's own reason (Evicted, preempted)."""
    found = []
    for pod in pods:
        name, status = pod.metadata.name, pod.status
        if status.reason or (status.phase == "Failed" and status.message):
            found.append(f"{name}: {status.reason or 'Failed'}: {status.message or ''}".rstrip(": "))
        for cs in [*(status.init_container_statuses or []), *(status.container_statuses or [])]:
            term, wait = cs.state.terminated if cs.state else None, cs.state.waiting if cs.state else None
            if term and term.exit_code:
                found.append(
                    f"{name}/{cs.name}: {term.reason or 'Error'} (exit {term.exit_code})"
                    + (f": {term.message.strip()}" if term.message else "")
                )
            elif wait and wait.reason not in (None, "ContainerCreating", "PodInitializing"):
                found.append(f"{name}/{cs.name}: {wait.reason}" + (f": {wait.message}" if wait.message else ""))
    return found


def warning_events(events: list, names: set[str]) -> list[str]:
    """The Warning events about the job or its pods, oldest first, repeats once."""
    seen, lines = set(), []
    for e in events:
        if e.type != "Warning" or e.involved_object.name not in names:
            continue
        line = f"{e.involved_object.kind}/{e.involved_object.name}: {e.reason}: {e.message}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


class JobFailed(RuntimeError):
    pass


class _Watch:
    """The API calls of one job: the job itself, its pods, rank 0's last metric line, the events."""

    def __init__(self, custom, core, body: dict):
        self.custom, self.core, self.body = custom, core, body
        self.backend = backend_of(body)
        self.namespace, self.name = body["metadata"]["namespace"], body["metadata"]["name"]
        self.args = (*_api_path(body)[:2], self.namespace, _api_path(body)[2])

    def create(self):
        return self.custom.create_namespaced_custom_object(*self.args, self.body, _request_timeout=REQUEST_TIMEOUT)

    def get(self) -> dict:
        return self.custom.get_namespaced_custom_object(*self.args, self.name, _request_timeout=REQUEST_TIMEOUT)

    def pods(self) -> list:
        selector = f"{JOB_LABEL[self.backend]}={self.name}"
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
        ).items

    def rank0_line(self, pods: list) -> str:
        """The last metric line rank 0 printed ("" when none or unreadable: its log is a bonus)."""
        want = RANK0_LABELS[self.backend]
        for pod in pods:
            labels = pod.metadata.labels or {}
            if all(labels.get(k) == v for k, v in want.items()) and pod.status.phase in (
                "Running",
                "Succeeded",
                "Failed",
            ):
                container = TRAINER_CONTAINER if self.backend == "trainjob" else PYTORCH_CONTAINER
                try:
                    log = self.core.read_namespaced_pod_log(
                        pod.metadata.name,
                        self.namespace,
                        container=container,
                        tail_lines=200,
                        _request_timeout=REQUEST_TIMEOUT,
                    )
                except Exception:  # noqa: BLE001 - progress only; the job's state decides
                    return ""
                lines = [ln.strip() for ln in (log or "").splitlines() if METRIC_LINE.search(ln)]
                return lines[-1] if lines else ""
        return ""

    def why(self, reason: str) -> str:
        """The job's reason, its pods' failures and the Warning events, for the error message."""
        parts = [reason or "no reason given"]
        try:
            pods = self.pods()
            parts += pod_problems(pods)
            events = self.core.list_namespaced_event(self.namespace, _request_timeout=REQUEST_TIMEOUT).items
            parts += warning_events(events, {self.name, *(p.metadata.name for p in pods)})[-8:]
        except Exception as e:  # noqa: BLE001 - the job's own reason is the error; details are best effort
            parts.append(f"(pods and events unreadable: {describe(e)})")
        return "; ".join(parts)


def _refused(exc, verb: str, kind: str, namespace: str, name: str) -> Exception:
    what = f"{verb} {kind} {namespace}/{name}: {describe(exc)}"
    status = getattr(exc, "status", None)
    plural = TRAINJOBS if kind == "TrainJob" else PYTORCHJOBS
    group = TRAINER_GROUP if kind == "TrainJob" else KUBEFLOW_GROUP
    if status in (401, 403):
        return PermissionError(
            f"{what}. The pipeline's service account may not {verb} {plural}.{group} in {namespace}: apply {RBAC} there "
            f"and bind it to the run's service account (`kubectl -n {namespace} auth can-i create {plural}.{group} "
            f"--as system:serviceaccount:{namespace}:SA`)"
        )
    if status == 404 and verb == "create":
        engine = "Kubeflow Trainer v2" if kind == "TrainJob" else "the Training Operator v1"
        return RuntimeError(
            f"{what}. No {kind} resource in {namespace}: is {engine} installed (`kubectl get crd "
            f"{plural}.{group}`)? On a cluster with only the other engine use training_backend="
            f"{'pytorchjob' if kind == 'TrainJob' else 'trainjob'}"
        )
    if status == 404:
        return RuntimeError(f"{what}. It was deleted while this task waited for it")
    if status in (400, 422):
        return ValueError(
            f"{what}. The cluster refused the job (a runtime that does not exist, a field this engine "
            "version lacks): fix the parameters named in the message"
        )
    return RuntimeError(what)


def _creator(obj: dict) -> str:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(KFP_RUN_ANNOTATION) or ""


def run_job(
    custom,
    core,
    body: dict,
    *,
    kfp_run: str,
    timeout_minutes: float,
    poll_seconds: float,
    log: Callable[[str], None] = print,
) -> str:
    """Create `body` (stamped with `kfp_run`, the KFP run of this task) or attach to the job of that
    name an earlier try or an earlier KFP run of this run id created, and poll it every
    `poll_seconds`: one log line per change (phase, pods by phase, rank 0's last metric line).
    Returns the name of the job that succeeded (`body`'s, or `<name>-rN`); raises JobFailed with
    the job's reason, its pods' failures and Warning events, TimeoutError after `timeout_minutes`
    (the job keeps running). Transient API errors are retried at the next poll (components/kube.py's
    rule); 401/403/404 are not. Deletes nothing: a failed job's pods and logs stay for `kubectl logs`.

    An existing job that runs or succeeded is attached to (a running one is still writing the
    checkpoint mirror: a second job would race it; a succeeded one's mirror holds the Model). One
    that failed is never attached to, whichever KFP run created it: this task is running again
    because a KFP retry (set_retry, as the one-pod `train` task retries its training) or a new run
    (`--resume`) wants the training done, and attaching would only replay the old failure. So the
    next attempt `<name>-r2`, `-r3`... is created (found with `get`/`create` on each candidate name:
    no `list` in manifests/base/rbac.yaml) and resumes from the checkpoint mirror."""
    from components.kube import ApiException

    base = body["metadata"]["name"]
    body = {
        **body,
        "metadata": {
            **body["metadata"],
            "annotations": {**(body["metadata"].get("annotations") or {}), KFP_RUN_ANNOTATION: kfp_run},
        },
    }
    attempt, w = 1, _Watch(custom, core, body)
    kind = body["kind"]
    deadline = time.monotonic() + timeout_minutes * 60
    created, failures, line, shown = False, 0, "not created yet", ""
    while True:
        ref = f"{kind} {w.namespace}/{w.name}"
        kubectl = f"`kubectl -n {w.namespace} describe {kind.lower()} {w.name}`"
        verb = "get" if created else "create"
        try:
            if not created:
                try:
                    w.create()
                    log(f"created {ref}" + (f" (attempt {attempt})" if attempt > 1 else ""))
                except ApiException as e:
                    if e.status != 409:
                        raise
                    verb = "get"
                    existing = w.get()
                    result, reason = state(w.backend, existing)
                    whose = _creator(existing)
                    whose = (
                        "KFP run "
                        + whose
                        + (
                            " (this run: an earlier try of this task)"
                            if whose == kfp_run
                            else " (an earlier run of this run id)"
                        )
                        if whose
                        else "an earlier KFP run (unstamped)"
                    )
                    if result == "failed":
                        if attempt >= MAX_ATTEMPTS:
                            raise JobFailed(
                                f"{ref} failed ({reason or 'no reason given'}), and so did the {attempt - 1} attempts "
                                f"before it: not creating attempt {attempt + 1}. Read their logs (`kubectl -n "
                                f"{w.namespace} logs -l {JOB_LABEL[w.backend]}={w.name}`) and fix the cause, then "
                                "submit with a new run_id (or delete these jobs)"
                            ) from None
                        attempt += 1
                        w = _Watch(
                            custom,
                            core,
                            {**body, "metadata": {**body["metadata"], "name": attempt_name(base, attempt)}},
                        )
                        log(
                            f"{ref} of {whose} failed ({reason or 'no reason given'}); left in place for its logs, "
                            f"trying attempt {attempt}: {w.name} (it resumes from the checkpoint mirror)"
                        )
                        continue
                    log(f"{ref} already exists: attached to the existing {kind}, created by {whose}")
                created, verb = True, "get"
            obj = w.get()
            verb = "list pods of"
            pods = w.pods()
        except Exception as e:
            if not transient(e):
                if isinstance(e, ApiException):
                    raise _refused(e, verb.split()[0], kind, w.namespace, w.name) from None
                raise
            failures += 1
            if failures >= MAX_API_FAILURES:
                raise RuntimeError(
                    f"{failures} Kubernetes API calls in a row failed ({verb} {ref}), the last with "
                    f"{describe(e)}; the job may still be running: {kubectl}"
                ) from None
            log(f"{verb} {ref} failed ({describe(e)}); try {failures} of {MAX_API_FAILURES}, again in {poll_seconds}s")
        else:
            failures = 0
            result, reason = state(w.backend, obj)
            counts: dict[str, int] = {}
            for p in pods:
                counts[p.status.phase or "Unknown"] = counts.get(p.status.phase or "Unknown", 0) + 1
            pod_text = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no pods yet"
            metric = w.rank0_line(pods)
            line = f"{phase(obj)}; pods: {pod_text}" + (f"; rank 0: {metric}" if metric else "")
            if line != shown:
                log(f"{w.name}: {line}")
                shown = line
            if result == "failed":
                raise JobFailed(
                    f"{ref} failed: {w.why(reason)}. Logs: `kubectl -n {w.namespace} logs -l "
                    f"{JOB_LABEL[w.backend]}={w.name}`. The job stays; "
                    + (
                        f"a retry of this task or `pipeline submit --resume` creates the next attempt "
                        f"({attempt_name(base, attempt + 1)}), which resumes from the checkpoint mirror"
                        if attempt < MAX_ATTEMPTS
                        else f"it was attempt {MAX_ATTEMPTS}, the last"
                    )
                )
            if result == "succeeded":
                return w.name
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ref} not finished after {timeout_minutes} min ({line}); it keeps running: {kubectl}")
        time.sleep(poll_seconds)

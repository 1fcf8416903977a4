"""components/run_training_job.py against a Kubernetes API stand-in served over real HTTP on loopback
(tests/kube_standin.py), with the real `kubernetes` client: it creates a TrainJob or PyTorchJob, attaches
on 409 (a retried launcher), shows progress (phase, pods, rank 0's metric line), fails with the job's own
reason, its pods' failures and events, deletes nothing, and turns the checkpoint mirror into the Model
artifact components/train.py writes (issue 14, items 2 and 4). A job that failed, in an earlier KFP run
of the run id (`--resume`) or an earlier try of the task, stays and the next attempt `<name>-r2` runs."""

from __future__ import annotations

import json
import re
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from components import training_job as tj
from tests.kube_standin import Handler, serving

RUN = "0f3c9a1e-77aa-4b1c-9d2e-123456789abc"
NAME = tj.job_name(RUN, "fold_3")
JOBS = r"/apis/(trainer\.kubeflow\.org/v1alpha1|kubeflow\.org/v1)/namespaces/([^/]+)/(trainjobs|pytorchjobs)"
CREATED = {"conditions": []}
RUNNING_TJ = {"conditions": [{"type": "Created", "status": "True", "reason": "JobSetCreated"}]}
COMPLETE_TJ = {
    "conditions": [
        {"type": "Created", "status": "True"},
        {"type": "Complete", "status": "True", "reason": "JobSetCompleted"},
    ]
}
FAILED_TJ = {
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "JobSetFailed",
            "message": "jobset failed: job node-0 has failed (BackoffLimitExceeded)",
        }
    ]
}
SUCCEEDED_PJ = {
    "conditions": [
        {"type": "Running", "status": "False"},
        {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"},
    ]
}
EPOCH_LINE = (
    "2026-11-29T04:12:36.120Z epoch=2 train/loss=0.41 val/precision=0.97 val/recall=0.96 val/hmean=0.965 lr=0.0004"
)


def pod(name: str, phase: str, labels: dict, *, exit_code: int = 0, message: str = "") -> dict:
    state = (
        {"terminated": {"exitCode": exit_code, "reason": "Error", "message": message}} if exit_code else {"running": {}}
    )
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": "node",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "image": "i",
                    "imageID": "i",
                    "state": state,
                }
            ],
        },
    }


class KubeApi(ThreadingHTTPServer):
    """The job endpoints (POST create: 201 stores the body, 409 AlreadyExists, 403, 404; a name already
    stored answers 409 as the API server does; GET: the stored object with the next of `polls`, or its
    status in `fixed`: jobs an earlier run left), pods by label selector (`pods`), rank 0's log, events.
    `requests` records (method, path); `on_create` runs when a job is created (the training's effect)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.create, self.polls, self.pods, self.events = 201, [CREATED], [], []
        self.log = ""
        self.objects: dict[str, dict] = {}
        self.fixed: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.on_create = lambda body: None

    def next_poll(self):
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]


class _Handler(Handler):
    server: KubeApi

    def do_POST(self):
        self.server.requests.append(("POST", self.path))
        body = self._body()
        m = re.fullmatch(JOBS, self.path)
        assert m and body["metadata"]["namespace"] == m.group(2), (self.path, body["metadata"])
        name = body["metadata"]["name"]
        if name in self.server.objects:
            self._status(409, "AlreadyExists", f'{m.group(3)} "{name}" already exists')
        elif self.server.create == 201:
            self.server.objects[name] = body
            self.server.on_create(body)
            self._send(201, body)
        elif self.server.create == 409:
            self.server.objects.setdefault(name, body | {"metadata": body["metadata"] | {"uid": "first-try"}})
            self._status(409, "AlreadyExists", f'{m.group(3)} "{name}" already exists')
        else:
            self._status(
                self.server.create,
                "Forbidden" if self.server.create == 403 else "NotFound",
                f"the server could not find the requested resource ({m.group(3)})",
            )

    def do_GET(self):
        self.server.requests.append(("GET", self.path))
        path = self.path.split("?")[0]
        if m := re.fullmatch(JOBS + r"/([^/]+)", path):
            name = m.group(4)
            answer = self.server.fixed[name] if name in self.server.fixed else self.server.next_poll()
            if isinstance(answer, int):
                return self._status(answer, "ServiceUnavailable", f"stand-in answers {answer}")
            return self._send(200, self.server.objects[name] | {"status": answer})
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log", path):
            return self._send(200, self.server.log)
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):
            return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.server.pods})
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/events", path):
            return self._send(
                200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": self.server.events}
            )
        raise AssertionError(self.path)

    def do_DELETE(self):  # the launcher must never call it
        self.server.requests.append(("DELETE", self.path))
        self._status(405, "MethodNotAllowed", "no")


@pytest.fixture
def kube(tmp_path, monkeypatch):
    with serving(KubeApi(), tmp_path, monkeypatch) as server:
        yield server


def write_mirror(mirror: Path, epochs: int = 3) -> None:
    """What rank 0 of a real training leaves in its checkpoint mirror (model/train.py): best.pt, metrics.jsonl."""
    from model.checkpoint import save_checkpoint

    mirror.mkdir(parents=True, exist_ok=True)
    history = [
        {
            "time": f"2026-11-29T04:1{e}:00Z",
            "epoch": e,
            "train/loss": 1.0 / e,
            "val/precision": 0.9 + e / 100,
            "val/recall": 0.9 + e / 200,
            "val/hmean": [0.90, 0.95, 0.93][e - 1],
        }
        for e in range(1, epochs + 1)
    ]
    save_checkpoint(
        mirror / "best.pt",
        {
            "model": {"w": torch.ones(2)},
            "config": {"preset": "cpu_tiny"},
            "epoch": 2,
            "best_hmean": 0.95,
            "history": history[:2],
            "optimizer": {"state": {}},
        },
    )
    (mirror / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in history))


def run(
    tmp_path,
    *,
    backend="trainjob",
    fold=3,
    nodes=2,
    gpus=4,
    runtime="TrainingRuntime/receiptflow-torch",
    namespace="",
    run_id="",
    job_id=RUN,
):
    """The launcher of task `fold`; `run_id` empty: the run id is the KFP run's own (`job_id`), as in a
    first run; `--resume RUN` sends run_id=RUN to a new KFP run (another job_id)."""
    from kfp.dsl import Artifact, Dataset, Metrics, Model

    from components.run_training_job import train_job

    data = tmp_path / "dataset"
    (data / "jsons").mkdir(parents=True, exist_ok=True)
    (data / "jsons" / "train.json").write_text('{"images": {}}')
    folds = tmp_path / "folds"
    (folds / "fold_3").mkdir(parents=True, exist_ok=True)
    (folds / "folds.json").write_text("{}")

    def artifact(cls, path, name):
        a = cls(name=name, uri=str(path))
        a.path = str(path)
        return a

    model, metrics = artifact(Model, tmp_path / "model", "model"), artifact(Metrics, tmp_path / "metrics", "metrics")
    out = train_job.python_func(
        dataset=artifact(Dataset, data, "dataset"),
        folds=artifact(Artifact, folds, "folds"),
        fold=fold,
        preset="cpu_tiny",
        lr=0.0005,
        weight_decay=6e-05,
        t_max=24,
        eta_min=6e-06,
        epochs=3,
        thresh=0.29,
        box_thresh=0.25,
        max_candidates=600,
        overrides=["dataset.batch_size=2"],
        output_uri=str(tmp_path / "store"),
        run_id=run_id,
        job_id=job_id,
        training_backend=backend,
        num_nodes=nodes,
        gpus_per_node=gpus,
        training_runtime=runtime,
        minio_secret="team-a-minio",
        image="ghcr.io/receiptflow/receiptflow:9.9.9",
        cpu_per_gpu="8",
        memory_per_gpu_gi=32,
        namespace=namespace,
        timeout_minutes=60,
        poll_seconds=0,
        model=model,
        metrics=metrics,
    )
    return out, model, metrics


def mirror_of(tmp_path, task="fold_3") -> Path:
    return tmp_path / "store" / "runs" / RUN / "checkpoints" / task


RANK0 = {
    "jobset.sigs.k8s.io/jobset-name": NAME,
    "jobset.sigs.k8s.io/replicatedjob-name": "node",
    "batch.kubernetes.io/job-completion-index": "0",
}


def test_creates_the_trainjob_shows_progress_and_returns_the_mirrors_model(kube, tmp_path, capsys):
    kube.on_create = lambda body: write_mirror(mirror_of(tmp_path))
    kube.polls = [CREATED, RUNNING_TJ, RUNNING_TJ, COMPLETE_TJ]
    kube.pods = [
        pod(f"{NAME}-node-0-0-abcde", "Running", RANK0),
        pod(f"{NAME}-node-0-1-fghij", "Running", {**RANK0, "batch.kubernetes.io/job-completion-index": "1"}),
    ]
    kube.log = "restoring nothing\n" + EPOCH_LINE + "\nsaving\n"
    out, model, metrics = run(tmp_path)

    assert (out.hmean, out.best_epoch) == (0.95, 2)
    assert [m for m, _ in kube.requests if m != "GET"] == ["POST"]
    body = kube.objects[NAME]
    assert (
        kube.requests[0][1] == "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs"
    )  # the pod's namespace
    trainer = body["spec"]["trainer"]
    assert (
        trainer["numNodes"],
        trainer["numProcPerNode"],
        trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"],
    ) == (2, 4, 4)
    assert trainer["resourcesPerNode"]["requests"] == {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": 4}
    assert body["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "TrainingRuntime",
        "name": "receiptflow-torch",
    }
    assert trainer["image"] == "ghcr.io/receiptflow/receiptflow:9.9.9"
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in trainer["env"] if "valueFrom" in e} == {"team-a-minio"}
    script = trainer["command"][2]
    inputs = tmp_path / "store" / "runs" / RUN / "inputs"
    assert f"receiptflow data pull {inputs / 'dataset'} /tmp/receiptflow/dataset" in script
    assert f"receiptflow data pull {inputs / 'folds'} /tmp/receiptflow/folds" in script
    assert (inputs / "dataset" / "jsons" / "train.json").is_file() and (inputs / "folds" / "folds.json").is_file()
    assert f"checkpoint_mirror={mirror_of(tmp_path)}" in script and "dataset.fold=3" in script
    assert script.rstrip().endswith("dataset.batch_size=2")  # the run's overrides come last and win

    log = capsys.readouterr().out
    assert f"created TrainJob team-a/{NAME}" in log
    assert "Created; pods: 2 Running; rank 0: " + EPOCH_LINE in log

    # the Model artifact components/train.py writes: best.pt without optimizer state, metrics.jsonl, summary.json
    from model.checkpoint import load_checkpoint

    saved = load_checkpoint(Path(model.path) / "best.pt")
    assert set(saved) == {"model", "config", "epoch", "best_hmean", "history"} and saved["epoch"] == 2
    assert (Path(model.path) / "metrics.jsonl").read_text() == (mirror_of(tmp_path) / "metrics.jsonl").read_text()
    summary = json.loads((Path(model.path) / "summary.json").read_text())
    assert summary["task"] == "fold_3" and summary["best"]["epoch"] == 2 and len(summary["history"]) == 3
    assert (summary["backend"], summary["nodes"], summary["gpus_per_node"]) == ("trainjob", 2, 4)
    assert model.metadata["val/hmean"] == 0.95 and metrics.metadata["best_epoch"] == 2


def test_a_retried_launcher_attaches_to_its_job_instead_of_creating_a_second(kube, tmp_path, capsys):
    write_mirror(mirror_of(tmp_path, "replication"))
    kube.create, kube.polls = 409, [RUNNING_TJ, COMPLETE_TJ]
    out, _, _ = run(tmp_path, fold=-1, namespace="team-b")
    name = tj.job_name(RUN, "replication")
    assert kube.objects[name]["metadata"]["uid"] == "first-try"
    assert [m for m, _ in kube.requests if m != "GET"] == ["POST"]
    assert f"TrainJob team-b/{name} already exists: attached to the existing TrainJob" in capsys.readouterr().out
    assert out.best_epoch == 2
    assert "dataset.folds=null" in kube.objects[name]["spec"]["trainer"]["command"][2]  # the replication needs no folds


def test_a_failed_job_fails_with_its_reason_its_pods_failures_and_events_and_nothing_is_deleted(kube, tmp_path):
    kube.polls = [RUNNING_TJ, FAILED_TJ]
    kube.pods = [
        pod(
            f"{NAME}-node-0-0-abcde",
            "Failed",
            RANK0,
            exit_code=1,
            message="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        )
    ]
    kube.events = [
        {
            "metadata": {"name": "e1"},
            "type": "Warning",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "involvedObject": {"kind": "Job", "name": "unrelated"},
        },
        {
            "metadata": {"name": "e2"},
            "type": "Warning",
            "reason": "FailedScheduling",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu",
            "involvedObject": {"kind": "Pod", "name": f"{NAME}-node-0-0-abcde"},
        },
        {
            "metadata": {"name": "e3"},
            "type": "Normal",
            "reason": "Scheduled",
            "message": "ok",
            "involvedObject": {"kind": "Pod", "name": f"{NAME}-node-0-0-abcde"},
        },
    ]
    with pytest.raises(tj.JobFailed) as err:
        run(tmp_path)
    message = str(err.value)
    assert f"TrainJob team-a/{NAME} failed: JobSetFailed: jobset failed: job node-0 has failed" in message
    assert f"{NAME}-node-0-0-abcde/node: Error (exit 1): torch.OutOfMemoryError: CUDA out of memory" in message
    assert "Pod/" + NAME + "-node-0-0-abcde: FailedScheduling: 0/3 nodes are available" in message
    assert "unrelated" not in message and "Scheduled: ok" not in message
    assert f"a retry of this task or `pipeline submit --resume` creates the next attempt ({NAME}-r2)" in message
    assert "delete" not in message
    assert not [r for r in kube.requests if r[0] == "DELETE"]
    assert not (tmp_path / "model").exists()


EARLIER = "9d1e5c2b-0000-4000-8000-000000000001"  # the KFP run that created the old jobs
RESUMED = "5a7b3c4d-1111-4111-8111-000000000002"  # the new KFP run of `pipeline submit --resume RUN`


def left_behind(kube, name: str, status: dict, creator: str = EARLIER) -> dict:
    """A TrainJob an earlier KFP run of RUN created, with its final status."""
    job = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "spec": {"trainer": {"numNodes": 2}},
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": f"uid-{name}",
            "annotations": {tj.KFP_RUN_ANNOTATION: creator},
        },
    }
    kube.objects[name], kube.fixed[name] = job, status
    return json.loads(json.dumps(job))


@pytest.mark.parametrize("failed", [1, 2])
def test_a_resumed_run_meets_failed_jobs_of_the_earlier_run_and_creates_the_next_attempt(
    kube, tmp_path, capsys, failed
):
    """`--resume RUN` (same run id, new KFP run): the failed jobs stay untouched, -r<failed+1> is created,
    stamped with the new KFP run, resumes from the same mirror, and its Model comes back."""
    old = [left_behind(kube, tj.attempt_name(NAME, a), FAILED_TJ) for a in range(1, failed + 1)]
    new = f"{NAME}-r{failed + 1}"
    kube.on_create = lambda body: write_mirror(mirror_of(tmp_path))
    kube.polls = [RUNNING_TJ, COMPLETE_TJ]
    out, model, _ = run(tmp_path, run_id=RUN, job_id=RESUMED)

    assert out.best_epoch == 2
    assert [a["metadata"]["name"] for a in old] == [NAME, f"{NAME}-r2"][:failed]
    assert [kube.objects[a["metadata"]["name"]] for a in old] == old  # untouched
    assert not [r for r in kube.requests if r[0] not in ("GET", "POST")]  # no DELETE, no PATCH
    assert [r[1].rsplit("/", 1)[1] for r in kube.requests if r[0] == "POST"] == ["trainjobs"] * (failed + 1)
    created = kube.objects[new]
    assert created["metadata"]["annotations"] == {tj.KFP_RUN_ANNOTATION: RESUMED}
    assert f"checkpoint_mirror={mirror_of(tmp_path)}" in created["spec"]["trainer"]["command"][2]  # resumes there
    assert json.loads((Path(model.path) / "summary.json").read_text())["job"] == f"team-a/{new}"
    log = capsys.readouterr().out
    assert (
        f"TrainJob team-a/{NAME} of KFP run {EARLIER} (an earlier run of this run id) failed (JobSetFailed: "
        "jobset failed: job node-0 has failed (BackoffLimitExceeded)); left in place for its logs, "
        f"trying attempt 2: {NAME}-r2"
    ) in log
    assert f"created TrainJob team-a/{new} (attempt {failed + 1})" in log


@pytest.mark.parametrize("status", ["succeeded", "running"])
def test_a_resumed_run_reuses_a_succeeded_or_running_job_of_the_earlier_run(kube, tmp_path, capsys, status):
    """A succeeded job's mirror holds the Model; a running one still writes the mirror (a second job
    would race it): both are attached to, nothing is created."""
    write_mirror(mirror_of(tmp_path))
    left_behind(kube, NAME, COMPLETE_TJ)
    if status == "running":
        del kube.fixed[NAME]
        kube.polls = [RUNNING_TJ, RUNNING_TJ, COMPLETE_TJ]
    out, model, _ = run(tmp_path, run_id=RUN, job_id=RESUMED)
    assert out.best_epoch == 2 and list(kube.objects) == [NAME]
    assert [m for m, _ in kube.requests if m != "GET"] == ["POST"]  # the create that answered 409
    assert json.loads((Path(model.path) / "summary.json").read_text())["job"] == f"team-a/{NAME}"
    assert (
        f"TrainJob team-a/{NAME} already exists: attached to the existing TrainJob, created by KFP run {EARLIER} "
        "(an earlier run of this run id)"
    ) in capsys.readouterr().out


def test_a_retry_in_the_same_kfp_run_also_starts_a_new_attempt_after_its_failed_job(kube, tmp_path, capsys):
    """KFP retries the launcher (set_retry) after its job failed: attaching would replay the failure,
    so the retry trains again, as a retry of the one-pod train task does."""
    old = left_behind(kube, NAME, FAILED_TJ, creator=RUN)
    kube.on_create = lambda body: write_mirror(mirror_of(tmp_path))
    kube.polls = [COMPLETE_TJ]
    assert run(tmp_path)[0].best_epoch == 2
    assert kube.objects[NAME] == old
    assert kube.objects[f"{NAME}-r2"]["metadata"]["annotations"] == {tj.KFP_RUN_ANNOTATION: RUN}
    assert f"of KFP run {RUN} (this run: an earlier try of this task) failed" in capsys.readouterr().out


def test_after_the_last_attempt_failed_no_further_job_is_created(kube, tmp_path):
    for a in range(1, tj.MAX_ATTEMPTS + 1):
        left_behind(kube, tj.attempt_name(NAME, a), FAILED_TJ)
    with pytest.raises(
        tj.JobFailed,
        match=rf"TrainJob team-a/{NAME}-r{tj.MAX_ATTEMPTS} failed \(JobSetFailed.*and so "
        rf"did the {tj.MAX_ATTEMPTS - 1} attempts before it: not creating attempt",
    ):
        run(tmp_path, run_id=RUN, job_id=RESUMED)
    assert len(kube.objects) == tj.MAX_ATTEMPTS and not [r for r in kube.requests if r[0] not in ("GET", "POST")]


def test_every_attempts_name_is_a_dns_1035_label_within_the_engines_limits():
    longest = tj.job_name("Run_" + "x" * 80, "replication")
    last = tj.attempt_name(longest, tj.MAX_ATTEMPTS)
    assert last == f"{longest}-r{tj.MAX_ATTEMPTS}" and len(last) <= tj.MAX_NAME
    # the engines' derived names: `<name>-worker-127` (PyTorchJob pods and Services), JobSet `<name>-node-0-12`
    assert len(f"{last}-worker-127") <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", last)
    with pytest.raises(ValueError, match="at most 47"):
        tj.attempt_name("rf-" + "a" * 44, 2)


def test_the_pytorchjob_flavour_has_a_master_and_workers_and_succeeds_on_its_condition(kube, tmp_path, capsys):
    kube.on_create = lambda body: write_mirror(mirror_of(tmp_path))
    master = {"training.kubeflow.org/job-name": NAME, "training.kubeflow.org/job-role": "master"}
    kube.pods = [pod(f"{NAME}-master-0", "Running", master), pod(f"{NAME}-worker-0", "Pending", {})]
    kube.log = EPOCH_LINE + "\n"
    kube.polls = [{"conditions": [{"type": "Running", "status": "True"}]}, SUCCEEDED_PJ]
    out, _, _ = run(tmp_path, backend="pytorchjob", nodes=3, gpus=2)
    assert out.hmean == 0.95
    assert kube.requests[0][1] == "/apis/kubeflow.org/v1/namespaces/team-a/pytorchjobs"
    spec = kube.objects[NAME]["spec"]
    assert spec["nprocPerNode"] == "2" and spec["runPolicy"]["cleanPodPolicy"] == "None"
    assert {k: r["replicas"] for k, r in spec["pytorchReplicaSpecs"].items()} == {"Master": 1, "Worker": 2}
    (container,) = spec["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert container["name"] == "pytorch" and container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "Running; pods: 1 Pending, 1 Running; rank 0: " + EPOCH_LINE in capsys.readouterr().out


def test_api_blips_while_waiting_are_retried_at_the_next_poll(kube, tmp_path, capsys):
    kube.on_create = lambda body: write_mirror(mirror_of(tmp_path))
    kube.polls = [RUNNING_TJ, 503, 502, RUNNING_TJ, COMPLETE_TJ]
    assert run(tmp_path)[0].best_epoch == 2
    log = capsys.readouterr().out
    assert f"get TrainJob team-a/{NAME} failed (HTTP 503" in log and "try 2 of" in log


@pytest.mark.parametrize(
    "code, error, text",
    [
        (
            403,
            PermissionError,
            r"HTTP 403.*may not create trainjobs\.trainer\.kubeflow\.org in team-a: apply manifests/base/rbac\.yaml",
        ),
        (
            404,
            RuntimeError,
            r"No TrainJob resource in team-a: is Kubeflow Trainer v2 installed.*training_backend=pytorchjob",
        ),
    ],
)
def test_rbac_and_a_missing_engine_are_clear_errors_at_once(kube, tmp_path, code, error, text):
    kube.create = code
    with pytest.raises(error, match=text):
        run(tmp_path)
    assert [m for m, _ in kube.requests] == ["POST"]  # no retry loop


@pytest.mark.parametrize(
    "kw, text",
    [
        (dict(backend="task"), r"training_backend='task'"),
        (dict(nodes=0), r"num_nodes=0"),
        (dict(runtime="Runtime/x"), r"training_runtime='Runtime/x'"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_created(kube, tmp_path, kw, text):
    with pytest.raises(ValueError, match=text):
        run(tmp_path, **kw)
    assert kube.requests == []


def test_the_launcher_body_imports_nothing_a_running_kfp_task_cannot_import(tmp_path):
    """Inside a task kfp's runtime-only `kfp.dsl` (_KFP_RUNTIME=true) has no `dsl.pipeline`/`PipelineTask`:
    the body must not import pipelines/* (whose modules build pipelines at import time)."""
    import ast
    import inspect
    import os
    import subprocess
    import sys

    from components.run_training_job import train_job

    body = ast.parse(inspect.getsource(train_job.python_func).lstrip())
    modules = sorted(
        {n.module for n in ast.walk(body) if isinstance(n, ast.ImportFrom)}
        | {
            f"components.{a.name}"
            for n in ast.walk(body)
            if isinstance(n, ast.ImportFrom) and n.module == "components"
            for a in n.names
        }  # `from components import pods`
        | {a.name for n in ast.walk(body) if isinstance(n, ast.Import) for a in n.names}
    )
    assert "components.training_job" in modules and not [m for m in modules if m.startswith("pipelines")]
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
    proc = subprocess.run(
        [sys.executable, "-c", code, *modules],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "_KFP_RUNTIME": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the check can fail: the pipeline modules do not import there
    bad = subprocess.run(
        [sys.executable, "-c", code, "pipelines.run8_kfold"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "_KFP_RUNTIME": "true"},
    )
    assert bad.returncode != 0

"""run_katib_experiment against a Kubernetes API stand-in served over real HTTP on loopback: the
real `kubernetes` client, configured from a kubeconfig file that points at it, creates the
Experiment and polls it (issue 12, item 10): create and wait, attach on 409 (a KFP retry of the
task), ride out a 500, dropped connections and slow answers while polling (within a bound), a
failed Experiment, the timeout, and RBAC errors that are not retried."""

from __future__ import annotations

import json
import re
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.sweep import experiment
from tests.kube_standin import Handler, serving

PREFIX = "/apis/kubeflow.org/v1beta1/namespaces/"
RUNNING = {
    "conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}],
    "trials": 2,
    "trialsRunning": 2,
}
SUCCEEDED = {
    "conditions": [{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}],
    "trials": 12,
    "trialsSucceeded": 4,
    "trialsEarlyStopped": 8,
    "currentOptimalTrial": {"observation": {"metrics": [{"name": "val/hmean", "latest": "0.9655", "max": "0.966"}]}},
}
FAILED = {
    "conditions": [{"type": "Failed", "status": "True", "reason": "ExperimentMaxFailedTrialsReached"}],
    "trials": 3,
    "trialsFailed": 3,
}
DROP = "drop"  # close the connection without an answer
HANG = "hang"  # answer after a second


class KubeApi(ThreadingHTTPServer):
    """The two Experiment endpoints of the Kubernetes API. `create` is what POST answers (201:
    store the body; 409: AlreadyExists; DROP: store it, lose the answer, then 409; 403). `polls`
    are GET's answers in turn (a status dict, an HTTP status, DROP or HANG), the last one repeated.
    `requests` records (method, path)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.create = 201
        self.polls: list = [SUCCEEDED]
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []

    def next_poll(self):
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]


class _Handler(Handler):
    server: KubeApi

    def do_POST(self):
        self.server.requests.append(("POST", self.path))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        m = re.fullmatch(PREFIX + r"([^/]+)/experiments", self.path)
        assert m and body["metadata"]["namespace"] == m.group(1), (self.path, body["metadata"])
        name = body["metadata"]["name"]
        if self.server.create == 201:
            self.server.objects[name] = body
            self._send(201, body)
        elif self.server.create == DROP:  # created, but the answer is lost
            self.server.objects[name] = body | {"metadata": body["metadata"] | {"uid": "first-try"}}
            self.server.create = 409
            self.connection.close()
        elif self.server.create == 409:
            self.server.objects.setdefault(name, body | {"metadata": body["metadata"] | {"uid": "first-try"}})
            self._status(409, "AlreadyExists", f'experiments.kubeflow.org "{name}" already exists')
        else:
            code = self.server.create
            self._status(
                code,
                "Forbidden",
                f'experiments.kubeflow.org is forbidden: User "system:serviceaccount:'
                f'{m.group(1)}:default-editor" cannot create resource "experiments"',
            )

    def do_GET(self):
        self.server.requests.append(("GET", self.path))
        m = re.fullmatch(PREFIX + r"([^/]+)/experiments/([^/?]+)", self.path.split("?")[0])
        assert m, self.path
        answer = self.server.next_poll()
        if answer == HANG:
            time.sleep(1)
            answer = RUNNING
        if answer == DROP:
            self.close_connection = True
            self.connection.close()
        elif isinstance(answer, int):
            self._status(answer, "InternalError" if answer >= 500 else "Forbidden", f"stand-in answers {answer}")
        else:
            self._send(200, self.server.objects[m.group(2)] | {"status": answer})


@pytest.fixture
def kube(tmp_path, monkeypatch):
    """The stand-in on a free loopback port; KUBECONFIG names a kubeconfig file pointing at it and
    the pod's service-account namespace file says "team-a"."""
    with serving(KubeApi(), tmp_path, monkeypatch) as server:
        yield server


def _run(tmp_path, *, namespace="", minio_secret="team-a-minio", timeout_minutes=60):
    from kfp.dsl import Markdown

    from components.run_katib_experiment import run_katib_experiment

    md = Markdown(name="progress", uri=str(tmp_path / "progress"))
    md.path = str(tmp_path / "progress.md")
    template = experiment(dataset_uri="@DATASET_URI@", output_uri="@OUTPUT_URI@", minio_secret="@MINIO_SECRET@")
    return run_katib_experiment.python_func(
        experiment=template,
        namespace=namespace,
        dataset_uri="s3://bucket/data/",
        output_uri="s3://bucket/out",
        minio_secret=minio_secret,
        name_suffix="0f3c9a1e-77aa-4b1c-9d2e-123456789abc",
        timeout_minutes=timeout_minutes,
        poll_seconds=0,
        progress=md,
    )


NAME = "receiptflow-run8-sweep-0f3c9a1e"


def _secret_refs(obj) -> list[dict]:
    if isinstance(obj, dict):
        return ([obj["secretKeyRef"]] if "secretKeyRef" in obj else []) + [
            r for v in obj.values() for r in _secret_refs(v)
        ]
    return [r for v in obj for r in _secret_refs(v)] if isinstance(obj, list) else []


def test_creates_the_experiment_with_this_runs_uris_and_secret_in_the_pods_namespace_and_waits(kube, tmp_path, capsys):
    kube.polls = [RUNNING, RUNNING, SUCCEEDED]
    out = _run(tmp_path)
    assert (out.name, out.namespace) == (NAME, "team-a")
    assert [m for m, _ in kube.requests] == ["POST", "GET", "GET", "GET"]
    body = kube.objects[NAME]
    assert body["metadata"]["namespace"] == "team-a"
    refs = _secret_refs(body)
    assert len(refs) >= 4 and {r["name"] for r in refs} == {"team-a-minio"}  # init + training container, 2 keys each
    text = json.dumps(body)
    assert not re.findall(r"@[A-Z_]+@", text)  # every placeholder filled in
    assert "s3://bucket/data" in text and "s3://bucket/out/sweeps/" in text
    assert "created Experiment team-a/" + NAME in capsys.readouterr().out
    assert (
        "12 trials, 4 succeeded, 8 earlystopped; best so far val/hmean=0.966"
        in Path(tmp_path / "progress.md").read_text()
    )


def test_a_retry_that_finds_the_experiment_attaches_to_it_and_waits(kube, tmp_path, capsys):
    kube.create, kube.polls = 409, [RUNNING, SUCCEEDED]
    out = _run(tmp_path, namespace="team-b")
    assert (out.name, out.namespace) == (NAME, "team-b")
    assert kube.objects[NAME]["metadata"]["uid"] == "first-try"  # the existing one, not a new one
    assert [m for m, _ in kube.requests] == ["POST", "GET", "GET"]
    assert f"attached to the existing Experiment team-b/{NAME}" in capsys.readouterr().out


def test_a_create_whose_answer_is_lost_is_retried_and_attaches(kube, tmp_path, capsys):
    kube.create, kube.polls = DROP, [SUCCEEDED]
    assert _run(tmp_path).name == NAME
    assert [m for m, _ in kube.requests] == ["POST", "POST", "GET"]
    assert kube.objects[NAME]["metadata"]["uid"] == "first-try"
    assert f"attached to the existing Experiment team-a/{NAME}" in capsys.readouterr().out


def test_a_500_and_dropped_connections_while_polling_do_not_fail_the_sweep(kube, tmp_path, capsys):
    # 4 drops in a row outlast urllib3's own 3 retries of a GET, so the component must ride them out
    kube.polls = [RUNNING, 500, DROP, DROP, DROP, DROP, 503, 429, RUNNING, SUCCEEDED]
    out = _run(tmp_path)
    assert out.name == NAME
    log = capsys.readouterr().out
    assert "HTTP 500" in log and "RemoteDisconnected" in log and "try 3 of" in log and "succeeded" in log
    assert "HTTP 429" in log  # throttled: retried like a 5xx


def test_an_api_server_that_does_not_answer_in_time_is_a_failed_call_not_a_hung_task(
    kube, tmp_path, monkeypatch, capsys
):
    import components.katib.experiments

    monkeypatch.setattr(components.katib.experiments, "REQUEST_TIMEOUT", (1, 0.2))
    kube.polls = [RUNNING, HANG, HANG, HANG, HANG, SUCCEEDED]  # urllib3 itself tries a GET 4 times
    assert _run(tmp_path).name == NAME
    assert "Read timed out" in capsys.readouterr().out


def test_an_api_that_stays_down_fails_after_a_bounded_number_of_tries(kube, tmp_path):
    from components.kube import MAX_API_FAILURES

    kube.polls = [RUNNING, 503]
    with pytest.raises(
        RuntimeError,
        match=rf"{MAX_API_FAILURES} Kubernetes API calls in a row failed.*HTTP 503.*"
        rf"kubectl -n team-a get experiment {NAME}",
    ):
        _run(tmp_path)
    assert len(kube.requests) == 2 + MAX_API_FAILURES


def test_a_failed_experiment_is_a_clear_error(kube, tmp_path):
    kube.polls = [RUNNING, FAILED]
    with pytest.raises(
        RuntimeError,
        match=rf"Experiment team-a/{NAME} failed: 3 trials, 3 failed.*"
        rf"kubectl -n team-a delete experiment {NAME}",
    ):
        _run(tmp_path)


def test_the_timeout_names_the_experiment_and_the_kubectl_command(kube, tmp_path):
    kube.polls = [RUNNING]
    with pytest.raises(
        TimeoutError,
        match=rf"Experiment team-a/{NAME} not finished after 0 min.*"
        rf"`kubectl -n team-a get experiment {NAME}`",
    ):
        _run(tmp_path, timeout_minutes=0)


@pytest.mark.parametrize("where", ["create", "poll"])
def test_forbidden_is_an_rbac_error_at_once(kube, tmp_path, where):
    if where == "create":
        kube.create = 403
    else:
        kube.polls = [403]
    with pytest.raises(PermissionError, match=r"HTTP 403.*manifests/base/rbac\.yaml"):
        _run(tmp_path)
    assert len(kube.requests) == (1 if where == "create" else 2)  # no retry loop


def test_no_namespace_and_no_service_account_file_is_a_clear_error(kube, tmp_path, monkeypatch):
    monkeypatch.setattr("components.kube.SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match=r"no namespace given and .*absent.*namespace="):
        _run(tmp_path)
    assert kube.requests == []


def test_a_template_without_the_secret_placeholder_is_refused(kube, tmp_path):
    from kfp.dsl import Markdown

    from components.run_katib_experiment import run_katib_experiment

    md = Markdown(name="progress", uri=str(tmp_path / "progress"))
    md.path = str(tmp_path / "progress.md")
    with pytest.raises(ValueError, match=r"@MINIO_SECRET@"):
        run_katib_experiment.python_func(
            experiment=experiment(dataset_uri="@DATASET_URI@", output_uri="@OUTPUT_URI@"),
            namespace="",
            dataset_uri="s3://b/d",
            output_uri="s3://b/o",
            minio_secret="team-a-minio",
            name_suffix="abc",
            timeout_minutes=1,
            poll_seconds=0,
            progress=md,
        )
    assert kube.requests == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*non-Python base image")
def test_the_compiled_component_through_kfp_local_creates_exactly_the_experiment_and_returns_its_name(kube, tmp_path):
    """The component as KFP runs it (kfp.local.SubprocessRunner, as `pipeline run --local`): its source
    embedded in the task command, the Experiment template passed as a JSON struct parameter, the
    NamedTuple and the Markdown artifact written through the executor. The stand-in must receive the
    same Experiment the function builds in-process: a struct that turned 12 into 12.0 would change
    `maxTrialCount` (an int32 in the Experiment CRD)."""
    from kfp import local

    from components.katib.experiments import experiment_body
    from components.run_katib_experiment import run_katib_experiment

    template = experiment(dataset_uri="@DATASET_URI@", output_uri="@OUTPUT_URI@", minio_secret="@MINIO_SECRET@")
    kube.polls = [RUNNING, SUCCEEDED]
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"), raise_on_error=True)
    task = run_katib_experiment(
        experiment=template,
        namespace="team-b",
        dataset_uri="s3://bucket/data/",
        output_uri="s3://bucket/out",
        minio_secret="team-b-minio",
        name_suffix="0f3c9a1e-77aa-4b1c-9d2e-123456789abc",
        timeout_minutes=5,
        poll_seconds=0,
    )
    assert (task.outputs["name"], task.outputs["namespace"]) == (NAME, "team-b")
    assert [m for m, _ in kube.requests] == ["POST", "GET", "GET"]
    expected = experiment_body(
        template,
        name_suffix="0f3c9a1e-77aa-4b1c-9d2e-123456789abc",
        namespace="team-b",
        values={
            "@DATASET_URI@": "s3://bucket/data",
            "@OUTPUT_URI@": "s3://bucket/out",
            "@MINIO_SECRET@": "team-b-minio",
        },
    )
    assert _differences(kube.objects[NAME], expected) == []  # types included: 12 is not 12.0
    assert isinstance(kube.objects[NAME]["spec"]["maxTrialCount"], int)
    progress = Path(task.outputs["progress"].path).read_text()
    assert progress.startswith(f"# Katib Experiment `team-b/{NAME}`") and "best so far val/hmean=0.966" in progress


def _differences(got, want, path="") -> list[str]:
    """Where two JSON values differ, types included (12 is not 12.0 here)."""
    if type(got) is not type(want):
        return [f"{path}: {got!r} ({type(got).__name__}) != {want!r} ({type(want).__name__})"]
    if isinstance(want, dict):
        return [d for k in sorted(set(got) | set(want)) for d in _differences(got.get(k), want.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _differences(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]

"""`receiptflow cluster check` against a Kubernetes API stand-in on loopback (the real `kubernetes` client through
a kubeconfig), a KFP healthz stand-in and a real S3 server (moto): a namespace set up as the runbook says passes;
each problem, planted once, is reported in one line that names the fix, and exits 2. The stand-in answers as the
API server does: discovery documents, SelfSubjectAccessReview, Status errors, and a server-side dry run that
Katib's validating webhook answers as at v0.19.0: 400 (admission.Errored(http.StatusBadRequest, ...),
pkg/webhook/v1beta1/experiment/validation_webhook.go:86-96) for a namespace without the metrics-collector label
(:74-89) or an early-stopping algorithm katib-config lacks (validator/validator.go:233-236 wrapping
pkg/util/v1beta1/katibconfig/config.go:100)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from model.cli import main
from tests.kube_standin import Handler, serving

NS = "kubeflow-user-example-com"
KEYS = {
    "MINIO_ENDPOINT": "minio-service.kubeflow:9000",
    "MINIO_ACCESS_KEY": "a" * 20,
    "MINIO_SECRET_KEY": "s" * 40,
    "MINIO_SECURE": "false",
}
DISCOVERY = {
    "trainer.kubeflow.org/v1alpha1": ["trainjobs", "trainingruntimes", "clustertrainingruntimes"],
    "kubeflow.org/v1beta1": ["experiments", "trials", "suggestions"],
}


class ClusterApi(ThreadingHTTPServer):
    """A Kubeflow 1.11 profile namespace set up as docs/cluster.md says; tests take pieces away."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ClusterHandler)
        self.discovery = {gv: list(r) for gv, r in DISCOVERY.items()}
        self.runtimes = {"receiptflow-torch"}
        self.denied: set[tuple[str, str, str]] = set()  # (group, resource[/subresource], verb)
        self.secret: dict | None = dict(KEYS)
        self.secret_forbidden = False
        self.namespace_forbidden = False
        self.labels = {"katib.kubeflow.org/metrics-collector-injection": "enabled"}
        self.algorithms = {"medianstop-floor", "bayesianoptimization"}
        self.requests: list[tuple[str, str, dict]] = []


class _ClusterHandler(Handler):
    server: ClusterApi

    def _route(self, method: str):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body() if method == "POST" else {}
        self.server.requests.append((method, url.path, query))
        s, parts = self.server, url.path.strip("/").split("/")
        if method == "GET" and url.path.startswith("/apis/") and len(parts) == 3:
            group_version = "/".join(parts[1:])
            if group_version not in s.discovery:
                return self._status(404, "NotFound", "the server could not find the requested resource")
            return self._send(
                200,
                {
                    "kind": "APIResourceList",
                    "groupVersion": group_version,
                    "resources": [
                        {"name": n, "namespaced": True, "kind": n, "verbs": ["get"]} for n in s.discovery[group_version]
                    ],
                },
            )
        if url.path.endswith("/selfsubjectaccessreviews"):
            a = body["spec"]["resourceAttributes"]
            resource = a["resource"] + (f"/{a['subresource']}" if a.get("subresource") else "")
            allowed = (a["group"], resource, a["verb"]) not in s.denied and a["namespace"] == NS
            return self._send(201, {**body, "status": {"allowed": allowed}})
        if "/trainingruntimes/" in url.path:
            if parts[-1] in s.runtimes:
                return self._send(200, {"kind": "TrainingRuntime", "metadata": {"name": parts[-1]}})
            return self._status(404, "NotFound", f'trainingruntimes.trainer.kubeflow.org "{parts[-1]}" not found')
        if "/secrets/" in url.path:
            if s.secret_forbidden:
                return self._status(403, "Forbidden", "secrets is forbidden")
            if s.secret is None:
                return self._status(404, "NotFound", f'secrets "{parts[-1]}" not found')
            return self._send(
                200, {"kind": "Secret", "data": {k: base64.b64encode(v.encode()).decode() for k, v in s.secret.items()}}
            )
        if url.path == f"/api/v1/namespaces/{NS}":
            if s.namespace_forbidden:
                return self._status(403, "Forbidden", f'namespaces "{NS}" is forbidden')
            return self._send(200, {"kind": "Namespace", "metadata": {"name": NS, "labels": s.labels}})
        if url.path.endswith("/experiments") and method == "POST":
            assert query.get("dryRun") == "All", "a check never creates an Experiment"
            denied = 'admission webhook "validator.experiment.katib.kubeflow.org" denied the request: '
            if s.labels.get("katib.kubeflow.org/metrics-collector-injection") != "enabled":
                return self._status(
                    400,
                    "BadRequest",
                    f'{denied}Cannot create the Experiment "{body["metadata"]["name"]}" '
                    f'in namespace "{NS}": the namespace lacks label '
                    '"katib.kubeflow.org/metrics-collector-injection: enabled"',
                )
            algorithm = body["spec"]["earlyStopping"]["algorithmName"]
            if algorithm not in s.algorithms:
                return self._status(
                    400,
                    "BadRequest",
                    f"{denied}spec.earlyStopping.algorithmName: Invalid value: "
                    f'"{algorithm}": unable to get EarlyStopping config data for algorithm {algorithm}: '
                    f"failed to find early stopping config for algorithm: {algorithm} in ConfigMap: "
                    "katib-config",
                )
            return self._send(201, body)
        self._status(404, "NotFound", f"no stand-in route for {method} {url.path}")

    def do_GET(self):  # noqa: N802
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    with serving(ClusterApi(), tmp_path, monkeypatch, namespace=NS) as server:
        yield server


def run(capsys, *args: str) -> tuple[int, list[str]]:
    rc = main(["cluster", "check", "--namespace", NS, *args])
    return rc, [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("problem:")]


def test_a_namespace_set_up_as_the_runbook_says_passes(cluster, capsys):
    rc, problems = run(capsys, "--trainings", "job", "--sweep")
    assert (rc, problems) == (0, [])
    reviews = [q for m, p, q in cluster.requests if p.endswith("selfsubjectaccessreviews")]
    assert (
        len(reviews) == 8
    )  # trainjobs create/get, pods list, pods/log get, events list, experiments create/get, trials
    assert [q for m, p, q in cluster.requests if p.endswith("/experiments")] == [{"dryRun": "All"}]


@pytest.mark.parametrize(
    "plant, args, expected",
    [
        (
            lambda s: s.discovery.pop("trainer.kubeflow.org/v1alpha1"),
            ["--trainings", "job", "--release", "1.11"],
            "serves no trainjobs (trainer.kubeflow.org/v1alpha1): install Kubeflow Trainer v2",
        ),
        (
            lambda s: None,
            ["--trainings", "job", "--release", "1.10"],
            "serves no pytorchjobs (kubeflow.org/v1): Kubeflow 1.11 installs no Training Operator",
        ),
        (
            lambda s: s.runtimes.clear(),
            ["--trainings", "job"],
            f"TrainingRuntime receiptflow-torch does not exist in {NS}: Trainer refuses every TrainJob of it; a cluster admin "
            f"runs `kubectl apply -n {NS} -k manifests/trainer`",
        ),
        (
            lambda s: s.denied.add(("trainer.kubeflow.org", "trainjobs", "create")),
            ["--trainings", "job"],
            f"you may not create trainer.kubeflow.org/trainjobs in {NS}",
        ),
        (
            lambda s: s.denied.add(("", "pods/log", "get")),
            ["--trainings", "job"],
            f"you may not get core/pods/log in {NS}",
        ),
        (
            lambda s: setattr(s, "secret", None),
            [],
            f"Secret receiptflow-minio does not exist in {NS}: create it from "
            "mlpipeline-minio-artifact (docs/cluster.md, step 2)",
        ),
        (lambda s: s.secret.pop("MINIO_SECURE"), [], f"Secret receiptflow-minio in {NS} has no MINIO_SECURE"),
        (
            lambda s: s.algorithms.discard("medianstop-floor"),
            ["--sweep"],
            "Katib refuses the sweep's Experiment: admission "
            'webhook "validator.experiment.katib.kubeflow.org" denied the request: spec.earlyStopping.algorithmName: Invalid '
            'value: "medianstop-floor"',
        ),
        (
            lambda s: s.discovery.pop("kubeflow.org/v1beta1"),
            ["--sweep"],
            "serves no experiments (kubeflow.org/v1beta1)",
        ),
    ],
)
def test_each_planted_problem_is_one_line_with_its_fix(cluster, capsys, plant, args, expected):
    plant(cluster)
    rc, problems = run(capsys, *args)
    assert rc == 2 and len(problems) == 1, problems
    assert expected in problems[0]


@pytest.mark.parametrize("readable", [True, False])
def test_a_namespace_without_katibs_label_is_one_problem_even_where_the_namespace_cannot_be_read(
    cluster, capsys, readable
):
    """A profile owner may not read Namespaces (cluster-scoped); Katib's webhook checks the label in the dry run."""
    cluster.labels.clear()
    cluster.namespace_forbidden = not readable
    rc, problems = run(capsys, "--sweep")
    assert rc == 2 and len(problems) == 1, problems
    assert (
        "lacks the label katib.kubeflow.org/metrics-collector-injection=enabled"
        if readable
        else 'the namespace lacks label "katib.kubeflow.org/metrics-collector-injection: enabled"'
    ) in problems[0]


def test_what_cannot_be_seen_from_here_is_a_note_not_a_problem(cluster, capsys):
    cluster.secret_forbidden = True
    assert main(["cluster", "check", "--namespace", NS]) == 0
    assert "note: cannot read Secret receiptflow-minio (403): its keys are not checked" in capsys.readouterr().out


def test_the_namespace_defaults_to_the_kubeconfig_contexts_else_the_pods(cluster, capsys):
    assert main(["cluster", "check"]) == 0  # no context namespace in the stand-in's kubeconfig: the pod's file
    assert f"checking namespace {NS}" in capsys.readouterr().out


def test_without_kubernetes_credentials_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["cluster", "check", "--namespace", NS]) == 2
    assert "no Kubernetes credentials here" in capsys.readouterr().err


# ---- the KFP API's version and the store --------------------------------------------------------------------


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        data = json.dumps({"commit_sha": "x", "tag_name": self.server.tag, "multi_user": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_healthz(monkeypatch, tmp_path):
    for name in ("KFP_COOKIE", "KFP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    server.tag = "2.15.0"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_kfp_backend_older_than_the_file_needs_is_a_problem(cluster, kfp_healthz, capsys):
    host = f"http://127.0.0.1:{kfp_healthz.server_address[1]}"
    assert run(capsys, "--host", host) == (0, [])
    kfp_healthz.tag = "2.5.0"  # Kubeflow 1.10: the kfp-2.14 build's dsl.Collected is not there
    rc, problems = run(capsys, "--host", host)
    assert rc == 2 and "is 2.5.0, and run8_kfold.yaml needs KFP >= 2.14.0: submit with --target kfp-2.5" in problems[0]
    assert run(capsys, "--host", host, "--target", "kfp-2.5") == (0, [])


def test_the_output_prefix_is_listed_with_the_secrets_key_where_the_store_is_reachable(cluster, s3_server, capsys):
    cluster.secret = {
        "MINIO_ENDPOINT": s3_server.endpoint,
        "MINIO_ACCESS_KEY": s3_server.access_key,
        "MINIO_SECRET_KEY": s3_server.secret_key,
        "MINIO_SECURE": "false",
    }
    assert run(capsys, "--output-uri", "s3://receiptflow/runs") == (0, [])
    rc, problems = run(capsys, "--output-uri", "s3://mlpipeline/private/x")
    assert (
        rc == 2
        and "the Secret's key cannot use s3://mlpipeline/private/x" in problems[0]
        and "does not exist" in problems[0]
    )


def test_a_store_reachable_only_in_the_cluster_is_a_note(cluster, capsys):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cluster.secret["MINIO_ENDPOINT"] = f"127.0.0.1:{port}"
    assert main(["cluster", "check", "--namespace", NS, "--output-uri", "s3://mlpipeline/private/x"]) == 0
    assert f"the store 127.0.0.1:{port} is not reachable from here" in capsys.readouterr().out


# ---- pipeline submit runs it first ---------------------------------------------------------------------------


def test_submit_stops_on_a_problem_before_anything_is_sent_and_no_check_skips_it(cluster, kfp_healthz, capsys):
    cluster.runtimes.clear()
    host = f"http://127.0.0.1:{kfp_healthz.server_address[1]}"
    argv = [
        "pipeline",
        "submit",
        "--host",
        host,
        "--namespace",
        NS,
        "--trainings",
        "job",
        "--param",
        "dataset_uri=s3://b/d",
        "--param",
        "output_uri=s3://b/o",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 problem(s), nothing submitted (--no-check submits anyway)" in err and "receiptflow-torch" in err
    cluster.requests.clear()
    assert main([*argv, "--no-check"]) == 2  # the healthz stand-in is no KFP API: it fails later, at the run
    assert not cluster.requests

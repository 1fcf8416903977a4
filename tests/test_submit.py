"""`receiptflow pipeline submit` against a KFP API stand-in served over real HTTP on loopback: the
real kfp.Client compiles the chosen build and posts it, and the test reads what a cluster would get.

The stand-in answers the three calls kfp 2.17's Client makes for a run (GET healthz, GET
experiments by name, POST runs; kfp/client/client.py) and records every request."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from model.cli import main
from pipelines.backends import features, min_backend


class _KfpApi(BaseHTTPRequestHandler):
    requests: list  # (method, path, JSON body or None), set per server

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refused(self) -> bool:
        """Record the credentials sent; answer as the server's `gate` says: None (the API), 401, or a login page
        (oauth2-proxy's redirect of a request without a session to Dex)."""
        self.server.credentials.append((self.headers.get("Authorization"), self.headers.get("Cookie")))
        gate = self.server.gate
        if gate == 401:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif gate == "login":
            self.send_response(302)
            self.send_header("Location", "/oauth2/start?rd=%2Fpipeline")
            self.send_header("Content-Length", "0")
            self.end_headers()
        return gate is not None

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self._refused():
            return
        self.server.requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._answer(
                {"experiments": [{"experiment_id": "e-1", "display_name": "receiptflow"}], "total_size": 1}
            )
        self._answer({})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self._refused():
            return
        self.server.requests.append(("POST", self.path, body))
        self._answer({"run_id": "r-42", "experiment_id": "e-1", "display_name": body.get("display_name", "")})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def kfp_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    server.requests, server.credentials, server.gate = [], [], None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _submitted(server) -> tuple[str, dict]:
    """The posted run: (its pipeline spec + platform spec as the YAML text backends.features reads, parameters)."""
    runs = [body for method, path, body in server.requests if method == "POST" and path == "/apis/v2beta1/runs"]
    assert len(runs) == 1, server.requests
    spec = runs[0]["pipeline_spec"]
    return yaml.safe_dump_all([spec["pipeline_spec"], spec["platform_spec"]]), runs[0]["runtime_config"]["parameters"]


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch, tmp_path):
    """This machine's own KFP credentials never reach a test: each test sets the ones it means."""
    for name in ("KFP_COOKIE", "KFP_TOKEN", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))  # no cluster check (tests/test_cluster_check.py)


SUBMIT = ["pipeline", "submit", "--param", "dataset_uri=s3://b/d", "--param", "output_uri=s3://b/o"]


def _host(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/pipeline"


@pytest.mark.parametrize("how", ["cookie", "token", "token file"])
def test_each_way_to_authenticate_sends_its_credential_on_every_request(kfp_api, capsys, monkeypatch, tmp_path, how):
    """The Dex session cookie (a default install from a laptop), a bearer token, and the projected token a notebook
    in the profile mounts (kfp's KF_PIPELINES_SA_TOKEN_PATH), which kfp itself would not send once --host is given."""
    monkeypatch.setenv("KFP_TOKEN" if how == "token" else "KFP_COOKIE", "")
    if how == "cookie":
        monkeypatch.setenv("KFP_COOKIE", "oauth2_proxy_kubeflow=c2Vzc2lvbg")
        expected = (None, "oauth2_proxy_kubeflow=c2Vzc2lvbg")
    elif how == "token":
        monkeypatch.setenv("KFP_TOKEN", "tok-123")
        expected = ("Bearer tok-123", None)
    else:
        (tmp_path / "token").write_text("projected-456\n")
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "token"))
        expected = ("Bearer projected-456", None)
    assert main([*SUBMIT, "--host", _host(kfp_api)]) == 0
    assert kfp_api.credentials and set(kfp_api.credentials) == {expected}
    assert {
        "cookie": "session cookie in KFP_COOKIE",
        "token": "bearer token in KFP_TOKEN",
        "token file": "service-account token at",
    }[how] in capsys.readouterr().err


def test_a_refused_token_says_what_a_default_install_accepts(kfp_api, capsys, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "sa-token")
    kfp_api.gate = 401
    assert main([*SUBMIT, "--host", _host(kfp_api)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "answered 401 with the bearer token in KFP_TOKEN" in err and "m2m-dex-only" in err
    assert len(kfp_api.credentials) == 1, "one request, not kfp's 5 retries of healthz"
    assert "KFP_COOKIE=oauth2_proxy_kubeflow" in err and "--audience pipelines.kubeflow.org" in err


def test_a_login_page_is_an_error_not_a_run_with_no_id(kfp_api, capsys):
    """oauth2-proxy redirects a request without a session to Dex's login page; kfp would take that for a run."""
    kfp_api.gate = "login"
    assert main([*SUBMIT, "--host", _host(kfp_api)]) == 2
    out, err = capsys.readouterr()
    assert "not the KFP API: a login page?" in err and "/oauth2/start" in err and "KFP_COOKIE" in err
    assert "run id" not in out and not kfp_api.requests


def test_host_defaults_to_the_in_cluster_api_in_a_pod_and_is_needed_elsewhere(capsys, monkeypatch):
    from pipelines.submit import IN_CLUSTER_HOST, resolve_host

    assert main(SUBMIT) == 2
    assert "--host: needed outside a Kubernetes pod" in capsys.readouterr().err
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert resolve_host(None) == IN_CLUSTER_HOST == "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    assert resolve_host("https://kf.example.com/pipeline") == "https://kf.example.com/pipeline"


def test_a_cookie_without_a_name_is_refused_before_any_request(kfp_api, capsys, monkeypatch):
    monkeypatch.setenv("KFP_COOKIE", "c2Vzc2lvbg")
    assert main([*SUBMIT, "--host", _host(kfp_api)]) == 2
    assert "KFP_COOKIE: expected NAME=VALUE" in capsys.readouterr().err and not kfp_api.credentials


def test_default_submit_sends_the_kfp_2_14_build_with_the_run_parameters(kfp_api, capsys):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    assert (
        main(["pipeline", "submit", "--host", host, "--param", "epochs=3", "--param", "minio_secret=team-a-minio"]) == 0
    )
    assert f"{host}/#/runs/details/r-42" in capsys.readouterr().out
    text, params = _submitted(kfp_api)
    assert params == {"epochs": 3, "minio_secret": "team-a-minio"}
    assert min_backend(text) == "2.14.0" and "collected" in features(text)


def test_kfp_2_5_submit_sends_the_unrolled_build_with_its_compile_time_secret_and_placement(kfp_api, capsys):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    rc = main(
        [
            "pipeline",
            "submit",
            "--host",
            host,
            "--target",
            "kfp-2.5",
            "--param",
            "epochs=3",
            "--minio-secret",
            "team-a-minio",
            "--node-selector",
            "gpu=h100",
            "--toleration",
            "nvidia.com/gpu:NoSchedule",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    text, params = _submitted(kfp_api)
    assert params == {"epochs": 3}
    assert min_backend(text) == "2.5.0"  # what Kubeflow 1.10.1+ runs: no Collected, no JSON placement
    executors = yaml.safe_load_all(text)
    platform = list(executors)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secrets = {e["secretName"] for config in platform.values() for e in config.get("secretAsEnv", [])}
    assert secrets == {"team-a-minio"}
    selectors = [config["nodeSelector"]["labels"] for config in platform.values() if "nodeSelector" in config]
    assert selectors and all(labels == {"gpu": "h100"} for labels in selectors)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "kfp-2.5", "--param", "folds=3"], "--target kfp-2.5 has no parameter folds"),
        (["--target", "kfp-2.5", "--param", "minio_secret=x"], "--target kfp-2.5 has no parameter minio_secret"),
        (["--minio-secret", "x"], "set the kfp-2.5 build; the kfp-2.14 one takes them as run parameters"),
    ],
)
def test_parameters_a_build_does_not_take_are_refused_before_contacting_kfp(kfp_api, capsys, argv, message):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    assert main(["pipeline", "submit", "--host", host, *argv]) == 2
    assert message in capsys.readouterr().err
    assert kfp_api.requests == []


# ---- --trainings job: the job-backed builds (docs/distributed.md), typed by their own signature --------------

JOB_ARGS = [
    "--param",
    "training_backend=pytorchjob",
    "--param",
    "num_nodes=2",
    "--param",
    "gpus_per_node=8",
    "--param",
    "training_runtime=torch-distributed",
    "--param",
    "namespace=team-a-jobs",
    "--param",
    "job_timeout_minutes=90",
]
JOB_PARAMS = {
    "training_backend": "pytorchjob",
    "num_nodes": 2,
    "gpus_per_node": 8,
    "training_runtime": "torch-distributed",
    "namespace": "team-a-jobs",
    "job_timeout_minutes": 90,
}


def _launchers(text: str) -> dict:
    """root-DAG task name -> task of every job launcher (components/run_training_job.py) in the posted spec."""
    spec = next(yaml.safe_load_all(text))
    dags = [spec["root"], *spec["components"].values()]
    return {
        name: task
        for dag in dags
        for name, task in dag.get("dag", {}).get("tasks", {}).items()
        if task["componentRef"]["name"].startswith("comp-train-job")
    }


def test_trainings_job_sends_the_job_build_with_its_parameters_typed(kfp_api, capsys):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    rc = main(
        [
            "pipeline",
            "submit",
            "--host",
            host,
            "--trainings",
            "job",
            "--namespace",
            "team-a",
            "--param",
            "epochs=3",
            *JOB_ARGS,
        ]
    )
    assert rc == 0, capsys.readouterr().err
    text, params = _submitted(kfp_api)
    assert params == {"epochs": 3, **JOB_PARAMS}  # ints arrive as JSON numbers, not "2"
    assert all(type(params[k]) is int for k in ("num_nodes", "gpus_per_node", "job_timeout_minutes"))
    spec = next(yaml.safe_load_all(text))
    assert spec["pipelineInfo"]["name"] == "run8-kfold-trainjob"
    assert spec["root"]["inputDefinitions"]["parameters"]["num_nodes"]["parameterType"] == "NUMBER_INTEGER"
    assert len(_launchers(text)) == 2  # the replication and the fold loop's: no one-GPU train task left
    assert min_backend(text) == "2.14.0"


def test_trainings_job_on_kfp_2_5_sends_the_unrolled_job_build_with_the_literal_secret(kfp_api, capsys):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    rc = main(
        [
            "pipeline",
            "submit",
            "--host",
            host,
            "--target",
            "kfp-2.5",
            "--trainings",
            "job",
            "--minio-secret",
            "team-a-minio",
            "--param",
            "num_nodes=3",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    text, params = _submitted(kfp_api)
    assert params == {"num_nodes": 3}
    assert min_backend(text) == "2.5.0"
    spec = next(yaml.safe_load_all(text))
    assert spec["root"]["inputDefinitions"]["parameters"]["training_backend"]["defaultValue"] == "pytorchjob"
    launchers = _launchers(text)
    assert len(launchers) == 6  # replication + 5 unrolled folds
    # the job pods' Secret is a literal in every launcher's inputs, and so is its own secretAsEnv
    assert {t["inputs"]["parameters"]["minio_secret"]["runtimeValue"]["constant"] for t in launchers.values()} == {
        "team-a-minio"
    }
    platform = list(yaml.safe_load_all(text))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {e["secretName"] for config in platform.values() for e in config.get("secretAsEnv", [])} == {"team-a-minio"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--param", "num_nodes=2"], "--param: num_nodes is a parameter of the job-backed build"),
        (
            ["--target", "kfp-2.5", "--param", "training_backend=pytorchjob"],
            "training_backend is a parameter of the job-backed",
        ),
        (["--param", "namespace=team-a"], "the Kubeflow profile the run goes to is `pipeline submit --namespace`"),
        (["--params-file", "FILE"], ": gpus_per_node is a parameter of the job-backed build"),
        (
            ["--trainings", "job", "--target", "kfp-2.5", "--param", "folds=3"],
            "--target kfp-2.5 has no parameter folds",
        ),
    ],
)
def test_job_parameters_are_refused_for_the_one_pod_pipeline_naming_the_option(
    kfp_api, capsys, tmp_path, argv, message
):
    (tmp_path / "p.yaml").write_text("epochs: 3\ngpus_per_node: 2\n")
    argv = [str(tmp_path / "p.yaml") if a == "FILE" else a for a in argv]
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    assert main(["pipeline", "submit", "--host", host, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and ("add --trainings job" in err or "kfp-2.5" in message)
    assert kfp_api.requests == []


@pytest.mark.parametrize(
    "param, message",
    [
        ("training_backend=mpijob", "training_backend='mpijob': expected trainjob or pytorchjob"),
        ("num_nodes=0", "num_nodes=0: must be at least 1"),
        ("gpus_per_node=-1", "gpus_per_node=-1: must be at least 1"),
        ("job_timeout_minutes=0", "job_timeout_minutes=0: must be at least 1"),
        ("num_nodes=two", 'num_nodes="two": expected an integer'),
        (
            "training_runtime=Cluster/x",
            "training_runtime='Cluster/x': expected NAME",
        ),  # components/training_job.py runtime_ref
        ("training_runtime=TrainingRuntime/Bad_Name", "training_runtime='TrainingRuntime/Bad_Name'"),
        ("namespace=Team_A", "namespace='Team_A': expected a Kubernetes namespace"),
        ("num_node=2", "unknown pipeline parameter 'num_node'; did you mean num_nodes?"),
    ],
)
def test_bad_job_parameter_values_are_refused_before_any_request(kfp_api, capsys, param, message):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    assert main(["pipeline", "submit", "--host", host, "--trainings", "job", "--param", param]) == 2
    assert message in capsys.readouterr().err
    assert kfp_api.requests == []


def test_a_pytorchjob_ignores_the_runtime_as_the_launcher_does(kfp_api, capsys):
    """training_runtime names a Trainer v2 runtime; the launcher checks it for trainjob only."""
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    rc = main(
        [
            "pipeline",
            "submit",
            "--host",
            host,
            "--trainings",
            "job",
            "--param",
            "training_backend=pytorchjob",
            "--param",
            "training_runtime=unused/for-pytorchjob",
        ]
    )
    assert rc == 0, capsys.readouterr().err


def test_resume_of_the_job_build_sends_the_run_id_and_says_what_happens_to_the_old_jobs(kfp_api, capsys, tmp_path):
    ckpt = tmp_path / "runs" / "r7" / "checkpoints" / "fold_1" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"checkpoint")
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    rc = main(
        [
            "pipeline",
            "submit",
            "--host",
            host,
            "--trainings",
            "job",
            "--target",
            "kfp-2.5",
            "--resume",
            "r7",
            "--param",
            f"output_uri={tmp_path}",
            "--namespace",
            "team-a",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"resuming run r7 from {tmp_path}/runs/r7/checkpoints/: fold_1" in out
    # the kfp-2.5 job build's backend is pytorchjob; a failed job needs no manual delete (the launcher's next attempt)
    (note,) = [line for line in err.splitlines() if line.startswith("note: ") and "cluster check" not in line]
    assert "run r7's pytorchjob that succeeded or still runs" in note and "next attempt (<job>-r2" in note
    assert "delete" not in err
    _, params = _submitted(kfp_api)
    assert params["run_id"] == "r7"


def test_local_run_refuses_the_job_build_and_its_parameters(capsys):
    assert main(["pipeline", "run", "--local", "--data", "x", "--trainings", "job"]) == 2
    assert "kfp.local runs every task as a process on this machine and cannot create" in capsys.readouterr().err
    assert main(["pipeline", "run", "--local", "--data", "x", "--param", "num_nodes=2"]) == 2
    assert (
        "num_nodes is a parameter of the job-backed build (each training a TrainJob or PyTorchJob, "
        "docs/distributed.md), which runs on a cluster only" in capsys.readouterr().err
    )

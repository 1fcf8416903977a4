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

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._answer({"experiments": [{"experiment_id": "e-1", "display_name": "receiptflow"}], "total_size": 1})
        self._answer({})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append(("POST", self.path, body))
        self._answer({"run_id": "r-42", "experiment_id": "e-1", "display_name": body.get("display_name", "")})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def kfp_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    server.requests = []
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


def test_default_submit_sends_the_kfp_2_14_build_with_the_run_parameters(kfp_api, capsys):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    assert main(["pipeline", "submit", "--host", host, "--param", "epochs=3", "--param", "minio_secret=team-a-minio"]) == 0
    assert f"{host}/#/runs/details/r-42" in capsys.readouterr().out
    text, params = _submitted(kfp_api)
    assert params == {"epochs": 3, "minio_secret": "team-a-minio"}
    assert min_backend(text) == "2.14.0" and "collected" in features(text)


def test_kfp_2_5_submit_sends_the_unrolled_build_with_its_compile_time_secret_and_placement(kfp_api, capsys):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    rc = main(["pipeline", "submit", "--host", host, "--target", "kfp-2.5", "--param", "epochs=3",
               "--minio-secret", "team-a-minio", "--node-selector", "gpu=h100", "--toleration", "nvidia.com/gpu:NoSchedule"])
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


@pytest.mark.parametrize("argv, message", [
    (["--target", "kfp-2.5", "--param", "folds=3"], "--target kfp-2.5 has no parameter folds"),
    (["--target", "kfp-2.5", "--param", "minio_secret=x"], "--target kfp-2.5 has no parameter minio_secret"),
    (["--minio-secret", "x"], "set the kfp-2.5 build; the kfp-2.14 one takes them as run parameters"),
])
def test_parameters_a_build_does_not_take_are_refused_before_contacting_kfp(kfp_api, capsys, argv, message):
    host = f"http://127.0.0.1:{kfp_api.server_port}"
    assert main(["pipeline", "submit", "--host", host, *argv]) == 2
    assert message in capsys.readouterr().err
    assert kfp_api.requests == []

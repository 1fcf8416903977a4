"""What the Kubernetes API stand-ins of the launcher tests share (tests/test_run_katib_experiment.py,
tests/test_trainjob_launcher.py): a ThreadingHTTPServer on a free loopback port that the real
`kubernetes` client reaches through a kubeconfig file, JSON answers and Kubernetes Status errors."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code: int, obj) -> None:
        data = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(obj, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
            },
        )

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))


@contextmanager
def serving(server: ThreadingHTTPServer, tmp_path, monkeypatch, namespace: str = "team-a"):
    """Serve `server` in a thread; KUBECONFIG points at it (not in a pod: no in-cluster config), and
    the pod's service-account namespace file (`components.kube.SERVICE_ACCOUNT_NAMESPACE`) says `namespace`."""
    from components import kube

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "nobody"}}],
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "namespace").write_text(namespace)
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "namespace"))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class TrialsApi(ThreadingHTTPServer):
    """Katib's Trial list endpoint (GET .../namespaces/NS/trials?labelSelector=...): `items` filtered
    by the label selector as the API server does; `refuse` (an HTTP status) answers with a Status
    error instead. `requests` records (path, query)."""

    daemon_threads = True

    def __init__(self, items: list[dict] | None = None):
        super().__init__(("127.0.0.1", 0), _TrialsHandler)
        self.items = items or []
        self.refuse: int | None = None
        self.requests: list[tuple[str, dict]] = []


class _TrialsHandler(Handler):
    server: TrialsApi

    def do_GET(self):
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append((url.path, query))
        parts = url.path.split("/")  # '', apis, kubeflow.org, v1beta1, namespaces, NS, trials
        assert parts[1:5] == ["apis", "kubeflow.org", "v1beta1", "namespaces"] and parts[6:] == ["trials"], url.path
        if self.server.refuse:
            self._status(
                self.server.refuse,
                "Forbidden",
                f'trials.kubeflow.org is forbidden: User "system:serviceaccount:'
                f'{parts[5]}:default-editor" cannot list resource "trials" in API group "kubeflow.org"',
            )
            return
        key, _, value = query.get("labelSelector", "").partition("=")
        items = [
            o
            for o in self.server.items
            if o["metadata"]["namespace"] == parts[5] and (not key or o["metadata"].get("labels", {}).get(key) == value)
        ]
        self._send(200, {"apiVersion": "kubeflow.org/v1beta1", "kind": "TrialList", "metadata": {}, "items": items})

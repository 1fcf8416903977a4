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
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                          "message": message, "code": code})

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))


@contextmanager
def serving(server: ThreadingHTTPServer, tmp_path, monkeypatch, namespace_module, namespace: str = "team-a"):
    """Serve `server` in a thread; KUBECONFIG points at it (not in a pod: no in-cluster config), and
    the pod's service-account namespace file (`namespace_module.SERVICE_ACCOUNT_NAMESPACE`) says `namespace`."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
              "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
              "users": [{"name": "nobody", "user": {}}],
              "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "nobody"}}]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "namespace").write_text(namespace)
    monkeypatch.setattr(namespace_module, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "namespace"))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()

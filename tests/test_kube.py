"""components/kube.py: the one home of the Kubernetes client (config, clients, namespace default, the retry rule)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components import kube

REPO = Path(__file__).resolve().parents[1]


def test_only_components_kube_imports_the_kubernetes_client():
    found = []
    for path in sorted(p for d in ("components", "earlystop", "pipelines") for p in (REPO / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found and all(f.startswith("components/kube.py:") for f in found), found


def test_the_client_errors_come_from_the_kubernetes_client():
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException

    assert kube.ApiException is ApiException and kube.ConfigException is ConfigException
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        kube.Nothing  # noqa: B018


@pytest.mark.parametrize(
    "status, retried",
    [
        (429, True),
        (500, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
    ],
)
def test_which_api_answers_are_retried(status, retried):
    assert kube.transient(kube.ApiException(status=status, reason="x")) is retried


def test_dropped_connections_are_retried_and_other_errors_not():
    import urllib3

    assert kube.transient(ConnectionRefusedError("refused"))
    assert kube.transient(urllib3.exceptions.ProtocolError("reset"))
    assert not kube.transient(ValueError("a bug"))


def test_describe_is_one_line_with_the_apis_message():
    e = kube.ApiException(status=503, reason="Service Unavailable")
    e.body = '{"kind": "Status", "message": "the server is shutting down"}'
    assert kube.describe(e) == "HTTP 503 Service Unavailable: the server is shutting down"
    e.body = "<html>bad gateway</html>"
    assert kube.describe(e) == "HTTP 503 Service Unavailable: <html>bad gateway</html>"  # not JSON: the body itself
    assert kube.describe(OSError("first\nsecond")) == "OSError: first"
    assert kube.describe(TimeoutError()) == "TimeoutError"

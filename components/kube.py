"""The Kubernetes API client, for every caller: the component bodies (components/katib/,
components/training_job.py, components/run_training_job.py), the early-stopping service
(earlystop/service.py) and `receiptflow cluster check` (pipelines/cluster_check.py).

- `load_kube_config()`: the pod's service account when in a pod, else the kubeconfig (KUBECONFIG);
- `custom_objects_api()`, `core_v1_api()`, `api_client()`: the clients, the config loaded first;
- `default_namespace(namespace)` and `kubeconfig_namespace()`: the namespace when none is given;
- `transient(exc)`, `describe(exc)`: whether an API error is worth another try, and one line about it;
- REQUEST_TIMEOUT, MAX_API_FAILURES, TRANSIENT_STATUSES: how long one call may take, and how many
  in a row may fail before a task gives up;
- `ApiException`, `ConfigException`: the client's errors, for `except` clauses.

Here, not in pipelines/: component bodies import it at run time, inside a task, in the component
image, as the earlystop image (built on it) does. It imports neither kfp nor pipelines/* itself,
and the kubernetes client (and urllib3) only inside the functions that use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Every pod's service-account volume has its namespace here; Katib's SDK defaults the same way
# (kubeflow/katib sdk/python/v1beta1/kubeflow/katib/utils/utils.py:42 at v0.19.0).
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# The Role and RoleBinding the pipeline's service account needs (create/get on the jobs and Experiments).
RBAC = "manifests/base/rbac.yaml"
# API answers worth another try: the API server (or a proxy in front of it) restarting or throttling.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_API_FAILURES = 15  # API calls in a row that may fail (one per poll) before the task gives up
REQUEST_TIMEOUT = (10, 60)  # seconds to connect, to read one answer: a hung API server is a failed call


def __getattr__(name: str):
    """`ApiException` and `ConfigException`, imported from the kubernetes client when first asked for."""
    if name == "ApiException":
        from kubernetes.client.rest import ApiException

        return ApiException
    if name == "ConfigException":
        from kubernetes.config import ConfigException

        return ConfigException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_kube_config() -> None:
    """The in-cluster configuration (the pod's service account), else the kubeconfig: KUBECONFIG's
    file, else ~/.kube/config. Raises the client's ConfigException when there is neither."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # KUBECONFIG read now: the client's own default was read once, when it was imported
        path = os.environ.get("KUBECONFIG")
        config.load_kube_config(**({"config_file": path} if path else {}))


def custom_objects_api():
    """A CustomObjectsApi (Katib Experiments and Trials, TrainJobs, PyTorchJobs), the config loaded."""
    from kubernetes import client

    load_kube_config()
    return client.CustomObjectsApi()


def core_v1_api():
    """A CoreV1Api (pods, their logs, events), the config loaded."""
    from kubernetes import client

    load_kube_config()
    return client.CoreV1Api()


def api_client():
    """An ApiClient for raw calls (`call_api`), the config loaded."""
    from kubernetes import client

    load_kube_config()
    return client.ApiClient()


def default_namespace(namespace: str = "") -> str:
    """`namespace`, else the pod's own (its service account's namespace file)."""
    if namespace.strip():
        return namespace.strip()
    try:
        found = Path(SERVICE_ACCOUNT_NAMESPACE).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ValueError(
            f"no namespace given and {SERVICE_ACCOUNT_NAMESPACE} cannot be read ({e.strerror}; not in a "
            "pod?): pass namespace=NAMESPACE"
        ) from None
    if not found:
        raise ValueError(f"no namespace given and {SERVICE_ACCOUNT_NAMESPACE} is empty: pass namespace=NAMESPACE")
    return found


def kubeconfig_namespace() -> str:
    """The namespace of the kubeconfig's current context; "" when it names none or there is no kubeconfig."""
    from kubernetes import config

    try:
        return config.list_kube_config_contexts()[1]["context"].get("namespace", "")
    except (config.ConfigException, OSError, KeyError, TypeError):
        return ""


def transient(exc: Exception) -> bool:
    """Whether another try may succeed: an API answer in TRANSIENT_STATUSES, or a refused, reset or
    dropped connection or a timeout (after urllib3's own retries: MaxRetryError etc.)."""
    import urllib3
    from kubernetes.client.rest import ApiException

    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUSES
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError))


def describe(exc: Exception) -> str:
    """One line: `HTTP 503 Service Unavailable: <the API's message>` or the exception's first line."""
    from kubernetes.client.rest import ApiException

    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = str(exc.body or "")[:200]
        return f"HTTP {exc.status} {exc.reason}" + (f": {message}" if message else "")
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__

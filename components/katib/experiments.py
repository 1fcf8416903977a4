"""Running a Katib Experiment from a pipeline task (components/run_katib_experiment.py): the
per-run Experiment body, create-or-attach, and a wait that rides out Kubernetes API blips (the
client, the namespace default and the retry rule: components/kube.py).

Imported inside component bodies (they run where the receiptflow package is installed); the
kubernetes client is imported only where it is used.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from components.katib.trials import KATIB_GROUP, KATIB_VERSION, summarize
from components.kube import MAX_API_FAILURES, RBAC, REQUEST_TIMEOUT, describe, transient

KATIB_EXPERIMENTS = "experiments"
# Where the run's values go in the template (pipelines.sweep.experiment(...) called with these).
PLACEHOLDERS = ("@DATASET_URI@", "@OUTPUT_URI@", "@MINIO_SECRET@")
# Katib's terminal Experiment conditions (pkg/apis/controller/experiments/v1beta1/experiment_types.go:185-186 at v0.19.0)
DONE = ("Succeeded", "Failed")


def experiment_body(template: dict, *, name_suffix: str, namespace: str, values: dict[str, str]) -> dict:
    """The Experiment to create: `template` with each placeholder (PLACEHOLDERS) replaced by
    `values[placeholder]` in every string, named `<metadata.name>-<first 8 letters/digits of
    name_suffix>` (the same for every try of one run's task), in `namespace`."""
    text = json.dumps(template)
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:  # the run's value would be silently ignored
        raise ValueError(
            f"the Experiment template has no {', '.join(missing)}: build it with pipelines.sweep.experiment("
            "dataset_uri='@DATASET_URI@', output_uri='@OUTPUT_URI@', minio_secret='@MINIO_SECRET@')"
        )
    empty = [p for p in PLACEHOLDERS if not str(values.get(p, "")).strip()]
    if empty:
        raise ValueError(f"no value for {', '.join(empty)} (dataset_uri, output_uri and minio_secret must be set)")

    def fill(x: Any) -> Any:
        # KFP hands a dict parameter over as a protobuf Struct, whose numbers are doubles
        # (google.protobuf.Value.number_value): the template's 12 arrives as 12.0. Integral numbers
        # go back to ints, so the Experiment created is the one rendered (maxTrialCount, runAsUser, ...)
        if isinstance(x, float) and x.is_integer():
            return int(x)
        if isinstance(x, str):
            for p in PLACEHOLDERS:
                x = x.replace(p, values[p])
            return x
        if isinstance(x, dict):
            return {k: fill(v) for k, v in x.items()}
        return [fill(v) for v in x] if isinstance(x, list) else x

    body = fill(template)
    suffix = "".join(c for c in name_suffix.lower() if c.isalnum())[:8]
    meta = body.setdefault("metadata", {})
    meta["name"] = f"{meta['name']}-{suffix}" if suffix else meta["name"]
    if "app.kubernetes.io/instance" in meta.get("labels", {}):  # the runbook's per-sweep selector names the copy
        meta["labels"]["app.kubernetes.io/instance"] = meta["name"]
    meta["namespace"] = namespace
    return body


def _refused(exc: Exception, verb: str, namespace: str, name: str) -> Exception:
    """The error for an API answer no retry changes (401/403/404/4xx)."""
    what = f"{verb} Experiment {namespace}/{name}: {describe(exc)}"
    status = getattr(exc, "status", None)
    if status in (401, 403):
        return PermissionError(
            f"{what}. The pipeline's service account may not {verb} kubeflow.org experiments in {namespace}: apply the "
            f"Role and RoleBinding in {RBAC} there (verbs create/get on experiments, get/list on trials) and bind them "
            "to the service account the run uses (`kubectl -n NS auth can-i create experiments.kubeflow.org "
            "--as system:serviceaccount:NS:SA`)"
        )
    if status == 404 and verb == "create":
        return RuntimeError(
            f"{what}. No Experiment resource in {namespace}: is Katib installed (`kubectl get crd "
            "experiments.kubeflow.org`) and does the namespace exist?"
        )
    if status == 404:
        return RuntimeError(f"{what}. It was deleted while this task waited for it")
    return RuntimeError(what)


def run_experiment(
    api, body: dict, *, timeout_minutes: float, poll_seconds: float, log: Callable[[str], None] = print
) -> str:
    """Create `body` (or attach to the Experiment of that name: a retried task finds the one its
    first try created) and poll it every `poll_seconds` until Katib marks it Succeeded or Failed.
    Returns the last progress line; raises RuntimeError when it failed, TimeoutError after
    `timeout_minutes` (the Experiment keeps running). Transient API errors (TRANSIENT_STATUSES,
    dropped connections, timeouts) are retried at the next poll, up to MAX_API_FAILURES in a row;
    401/403/404 are not retried."""
    from components.kube import ApiException

    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    kubectl = f"`kubectl -n {namespace} get experiment {name}`"
    args = (KATIB_GROUP, KATIB_VERSION, namespace, KATIB_EXPERIMENTS)
    deadline = time.monotonic() + timeout_minutes * 60
    created, failures, line = False, 0, "not created yet"
    while True:
        verb = "get" if created else "create"
        try:
            if not created:
                try:
                    api.create_namespaced_custom_object(*args, body, _request_timeout=REQUEST_TIMEOUT)
                    log(f"created Experiment {namespace}/{name}")
                except ApiException as e:
                    if e.status != 409:
                        raise
                    # the first try of this task created it (or a create whose answer was lost did)
                    log(
                        f"Experiment {namespace}/{name} already exists: attached to the existing Experiment "
                        f"{namespace}/{name}, waiting for it"
                    )
                created = True
                verb = "get"
            obj = api.get_namespaced_custom_object(*args, name, _request_timeout=REQUEST_TIMEOUT)
        except Exception as e:
            if not transient(e):
                if isinstance(e, ApiException):
                    raise _refused(e, verb, namespace, name) from None
                raise
            failures += 1
            if failures >= MAX_API_FAILURES:
                raise RuntimeError(
                    f"{failures} Kubernetes API calls in a row failed ({verb} Experiment {namespace}/{name}), "
                    f"the last with {describe(e)}; the Experiment may still be running: {kubectl}"
                ) from None
            log(
                f"{verb} Experiment {namespace}/{name} failed ({describe(e)}); try {failures} of {MAX_API_FAILURES}, "
                f"again in {poll_seconds}s"
            )
        else:
            failures = 0
            status = obj.get("status") or {}
            done = [
                c["type"] for c in status.get("conditions") or [] if c.get("status") == "True" and c.get("type") in DONE
            ]
            line = summarize(status)
            log(f"{name}: {line}")
            if "Failed" in done:
                raise RuntimeError(
                    f"Experiment {namespace}/{name} failed: {line} ({kubectl} says why; a retry of this run "
                    f"attaches to it again: `kubectl -n {namespace} delete experiment {name}` first)"
                )
            if done:
                return line
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Experiment {namespace}/{name} not finished after {timeout_minutes} min ({line}); "
                f"it keeps running: {kubectl}"
            )
        time.sleep(poll_seconds)

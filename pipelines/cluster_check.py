"""`receiptflow cluster check`: what a profile owner runs before the first submit (and `pipeline submit` runs
first unless --no-check). Through the Kubernetes API, as the caller: the CRDs the chosen trainings and sweep
need (discovery), the TrainingRuntime, each verb the run needs (SelfSubjectAccessReview), the storage Secret
and its keys, Katib's metrics-collector label on the namespace, Katib's verdict on the sweep's Experiment
(a server-side dry run: its webhook refuses an algorithm katib-config lacks, e.g. `medianstop-floor` not
registered), the KFP API's version against the compiled file's minimum, and a listing under `output_uri` with
the Secret's key where the store is reachable from here. One line per problem, each with its fix.

What a check cannot see from here (a Secret or Namespace the caller may not read, a store reachable only
inside the cluster) is a note, not a problem: the run checks it again where it runs.
"""

from __future__ import annotations

import base64
import json
import socket
from dataclasses import dataclass, field

from model.errors import DataError

STORAGE_KEYS = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE")
INJECTION_LABEL = "katib.kubeflow.org/metrics-collector-injection"
# API group/version -> plural the run creates or reads, per need
CRDS = {
    "trainjob": ("trainer.kubeflow.org/v1alpha1", "trainjobs"),
    "pytorchjob": ("kubeflow.org/v1", "pytorchjobs"),
    "sweep": ("kubeflow.org/v1beta1", "experiments"),
}
# (group, resource, verb) the pipeline's calls need: components/training_job.py (create/get a job, list its
# pods, read rank 0's log, list events), components/katib/ (create/get an Experiment, list its Trials)
VERBS = {
    "trainjob": [("trainer.kubeflow.org", "trainjobs", "create"), ("trainer.kubeflow.org", "trainjobs", "get")],
    "pytorchjob": [("kubeflow.org", "pytorchjobs", "create"), ("kubeflow.org", "pytorchjobs", "get")],
    "jobs": [("", "pods", "list"), ("", "pods/log", "get"), ("", "events", "list")],
    "sweep": [
        ("kubeflow.org", "experiments", "create"),
        ("kubeflow.org", "experiments", "get"),
        ("kubeflow.org", "trials", "list"),
    ],
}
CONNECT_TIMEOUT_S = 3.0  # a store that does not answer this fast is taken as unreachable from here


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)  # what would make the run fail, and the fix
    notes: list[str] = field(default_factory=list)  # what could not be checked from here, and why
    passed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return (
            [f"problem: {p}" for p in self.problems]
            + [f"note: {n}" for n in self.notes]
            + [f"cluster check: {len(self.problems)} problem(s), {len(self.passed)} check(s) passed"]
        )


class Kube:
    """GET/POST on the Kubernetes API through the kubernetes client (kubeconfig, else in-cluster), answers as
    (HTTP status, JSON body): a refusal is an answer here, not an exception."""

    def __init__(self, api_client):
        self.api = api_client

    def call(self, method: str, path: str, body: dict | None = None, query: list | None = None) -> tuple[int, dict]:
        from components.kube import ApiException

        try:
            data, status, _ = self.api.call_api(
                path,
                method,
                query_params=query or [],
                body=body,
                auth_settings=["BearerToken"],
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                response_type="object",
                _return_http_data_only=False,
                _request_timeout=(10, 30),
            )
            return status, data or {}
        except ApiException as exc:
            try:
                answer = json.loads(exc.body or "{}")
            except ValueError:
                answer = {"message": (exc.body or exc.reason or "")[:300]}
            return exc.status, answer if isinstance(answer, dict) else {"message": str(answer)}


def connect(namespace: str | None) -> tuple[Kube, str]:
    """A Kube for this machine's Kubernetes credentials and the namespace to check: `namespace`, else the
    kubeconfig context's, else the pod's own. DataError when there are no credentials."""
    from components.kube import ConfigException, api_client, default_namespace, kubeconfig_namespace

    try:
        api = api_client()
    except (ConfigException, OSError) as exc:
        raise DataError(
            f"no Kubernetes credentials here (in-cluster or kubeconfig): {str(exc).splitlines()[0]}"
        ) from None
    if not namespace:
        try:
            namespace = kubeconfig_namespace() or default_namespace("")
        except ValueError:
            raise DataError("no namespace: pass --namespace (your Kubeflow profile)") from None
    return Kube(api), namespace


def _served(kube: Kube, group_version: str) -> set[str] | None:
    """The resources an API group/version serves (discovery), None when the cluster does not serve it."""
    status, answer = kube.call("GET", f"/apis/{group_version}")
    return {r["name"] for r in answer.get("resources", [])} if status == 200 else None


def detect_backend(kube: Kube, release: str) -> str | None:
    """The training-job kind of `release` (1.10, 1.11: pipelines.backends.KUBEFLOW), or with "auto" the one this
    cluster serves (TrainJob first: Kubeflow 1.11's)."""
    from pipelines.backends import KUBEFLOW

    if release != "auto":
        kinds = {j for r, ships in KUBEFLOW.items() if r.startswith(f"{release}.") for j in ships["jobs"]}
        if not kinds:
            raise DataError(
                f"--release {release!r}: expected auto or one of "
                f"{', '.join(sorted({r.rsplit('.', 1)[0] for r in KUBEFLOW}))}"
            )
        return sorted(kinds)[0]
    for kind in ("trainjob", "pytorchjob"):
        group_version, plural = CRDS[kind]
        if plural in (_served(kube, group_version) or set()):
            return kind
    return None


def check(
    kube: Kube,
    namespace: str,
    *,
    trainings: str = "task",
    training_backend: str | None = None,
    release: str = "auto",
    training_runtime: str = "TrainingRuntime/receiptflow-torch",
    sweep: bool = False,
    minio_secret: str = "receiptflow-minio",
    output_uri: str | None = None,
    host: str | None = None,
    target: str = "kfp-2.14",
) -> Report:
    report = Report()
    needs = []
    if trainings == "job":
        backend = training_backend or detect_backend(kube, release)
        if backend is None:
            report.problems.append(
                "this cluster serves neither TrainJobs (Kubeflow Trainer v2) nor PyTorchJobs "
                "(Training Operator v1): --trainings job has nothing to run on; use --trainings task"
            )
        else:
            needs.append(backend)
    if sweep:
        needs.append("sweep")
    _check_crds(kube, needs, report)
    if "trainjob" in needs:
        _check_runtime(kube, namespace, training_runtime, report)
    _check_verbs(kube, namespace, needs, report)
    secret = _check_secret(kube, namespace, minio_secret, report)
    if sweep:
        _check_katib(kube, namespace, minio_secret, report)
    if host:
        _check_kfp(host, target, trainings, report)
    if secret and output_uri:
        _check_store(secret, output_uri, report)
    return report


def _check_crds(kube: Kube, needs: list[str], report: Report) -> None:
    for need in needs:
        group_version, plural = CRDS[need]
        served = _served(kube, group_version)
        if served is not None and plural in served:
            report.passed.append(f"{plural}.{group_version} served")
            continue
        fix = {
            "trainjob": "install Kubeflow Trainer v2 (Kubeflow 1.11), or on 1.10 pass training_backend=pytorchjob",
            "pytorchjob": "Kubeflow 1.11 installs no Training Operator: pass training_backend=trainjob",
            "sweep": "install Katib (cluster admin)",
        }[need]
        report.problems.append(f"the cluster serves no {plural} ({group_version}): {fix}")


def _check_runtime(kube: Kube, namespace: str, runtime: str, report: Report) -> None:
    from components.training_job import runtime_ref

    ref = runtime_ref(runtime)
    base = "/apis/trainer.kubeflow.org/v1alpha1"
    path = (
        f"{base}/namespaces/{namespace}/trainingruntimes/{ref['name']}"
        if ref["kind"] == "TrainingRuntime"
        else f"{base}/clustertrainingruntimes/{ref['name']}"
    )
    status, answer = kube.call("GET", path)
    if status == 200:
        report.passed.append(f"{ref['kind']} {ref['name']} present")
    elif status == 404:
        fix = (
            f"a cluster admin runs `kubectl apply -n {namespace} -k manifests/trainer` (profile roles may only "
            "read TrainingRuntimes)"
            if ref["kind"] == "TrainingRuntime"
            else "name one that exists (`kubectl get clustertrainingruntimes`)"
        )
        report.problems.append(
            f"{ref['kind']} {ref['name']} does not exist in {namespace}: Trainer refuses every TrainJob of it; {fix}"
        )
    else:
        report.notes.append(f"cannot read {ref['kind']} {ref['name']} ({status}: {answer.get('message', '')[:160]})")


def _check_verbs(kube: Kube, namespace: str, needs: list[str], report: Report) -> None:
    wanted = [v for need in needs for v in VERBS[need]]
    if any(n in ("trainjob", "pytorchjob") for n in needs):
        wanted += VERBS["jobs"]
    for group, resource, verb in wanted:
        resource, _, subresource = resource.partition("/")
        attributes = {"namespace": namespace, "verb": verb, "group": group, "resource": resource}
        if subresource:
            attributes["subresource"] = subresource
        status, answer = kube.call(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
        )
        what = f"{verb} {group or 'core'}/{resource}{'/' + subresource if subresource else ''}"
        if status >= 300:
            report.notes.append(f"cannot ask whether you may {what} ({status})")
        elif answer.get("status", {}).get("allowed"):
            report.passed.append(f"may {what}")
        else:
            report.problems.append(
                f"you may not {what} in {namespace}: in a Kubeflow profile `kubeflow-edit` grants "
                "it (is this your profile?); elsewhere bind manifests/base/rbac.yaml's Roles"
            )


def _check_secret(kube: Kube, namespace: str, name: str, report: Report) -> dict | None:
    status, answer = kube.call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if status == 404:
        report.problems.append(
            f"Secret {name} does not exist in {namespace}: create it from mlpipeline-minio-artifact "
            "(docs/cluster.md, step 2)"
        )
        return None
    if status != 200:
        report.notes.append(f"cannot read Secret {name} ({status}): its keys are not checked")
        return None
    data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (answer.get("data") or {}).items()}
    missing = [k for k in STORAGE_KEYS if not data.get(k, "").strip()]
    if missing:
        report.problems.append(
            f"Secret {name} in {namespace} has no {', '.join(missing)}: the pipelines read all of "
            f"{', '.join(STORAGE_KEYS)} from it (docs/cluster.md, step 2)"
        )
        return None
    report.passed.append(f"Secret {name} has {', '.join(STORAGE_KEYS)}")
    return data


def _check_katib(kube: Kube, namespace: str, minio_secret: str, report: Report) -> None:
    from pipelines import sweep

    status, answer = kube.call("GET", f"/api/v1/namespaces/{namespace}")
    if status == 200:
        if (answer.get("metadata", {}).get("labels") or {}).get(INJECTION_LABEL) == "enabled":
            report.passed.append(f"namespace {namespace} labelled {INJECTION_LABEL}=enabled")
        else:
            report.problems.append(
                f"namespace {namespace} lacks the label {INJECTION_LABEL}=enabled: Katib injects no "
                "metrics collector there and no trial reports a value (a cluster admin labels it; "
                "Kubeflow profiles have it)"
            )
            return  # Katib's webhook refuses every Experiment there for the same reason
    else:  # a profile owner may not read Namespaces: Katib's webhook checks the label in the dry run below
        report.notes.append(f"cannot read namespace {namespace} ({status}): Katib's dry run checks its label")
    body = sweep.experiment("receiptflow-cluster-check", namespace=namespace, minio_secret=minio_secret)
    status, answer = kube.call(
        "POST", f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/experiments", body, query=[("dryRun", "All")]
    )
    if status < 300:
        report.passed.append("Katib accepts the sweep's Experiment (dry run)")
    elif status in (400, 403, 422) and "denied the request" in answer.get("message", ""):
        message = answer["message"]
        hint = (
            "; register medianstop-floor in katib-config (a cluster admin: docs/earlystop.md)"
            if "medianstop-floor" in message
            else ""
        )
        report.problems.append(f"Katib refuses the sweep's Experiment: {message[:300]}{hint}")
    elif status != 404:  # 404: no Katib, already a problem above
        report.notes.append(f"cannot dry-run the sweep's Experiment ({status}: {answer.get('message', '')[:160]})")


def _check_kfp(host: str, target: str, trainings: str, report: Report) -> None:
    from pipelines.backends import COMPILED_DIR, min_backend, version
    from pipelines.submit import BUILD_FILES, credentials, healthz

    auth, used = credentials()
    try:
        answer = healthz(host, auth, used)
    except DataError as exc:
        report.problems.append(str(exc))
        return
    name = BUILD_FILES[(target, trainings)]
    needed, tag = min_backend(COMPILED_DIR / name), str(answer.get("tag_name", "")).lstrip("v")
    if not tag or not tag[0].isdigit():
        report.notes.append(f"the KFP API at {host} does not say its version (tag_name {tag!r})")
    elif version(tag) < version(needed):
        report.problems.append(
            f"the KFP API at {host} is {tag}, and {name} needs KFP >= {needed}: submit with "
            "--target kfp-2.5 (README, Supported versions)"
        )
    else:
        report.passed.append(f"KFP {tag} runs {name} (needs >= {needed})")


def _check_store(secret: dict, output_uri: str, report: Report) -> None:
    from model.s3 import Remote, is_remote, parse_uri

    if not is_remote(output_uri):
        return
    endpoint = secret["MINIO_ENDPOINT"].strip()
    host, _, port = endpoint.rpartition(":")
    try:
        socket.create_connection((host or endpoint, int(port or 443)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError):
        report.notes.append(
            f"the store {endpoint} is not reachable from here: {output_uri} is checked by the run "
            "(its validate step) where it runs"
        )
        return
    try:
        Remote(workers=1, source=secret).check_bucket(parse_uri(output_uri)[0], output_uri)
    except DataError as exc:
        report.problems.append(f"the Secret's key cannot use {output_uri}: {exc}")
        return
    report.passed.append(f"the Secret's key lists {output_uri}")

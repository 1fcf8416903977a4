"""Start run8_kfold on a Kubeflow Pipelines endpoint through `kfp.Client`: the build of a target
(pipelines/compile.py TARGETS) with each training one pod (`trainings="task"`) or one TrainJob /
PyTorchJob (`trainings="job"`, docs/distributed.md)."""

from __future__ import annotations

import json
import os
import sys
import warnings

from model.errors import DataError
from pipelines.compile import DEFAULT_TARGET

# How `submit` authenticates, first found wins (credentials()). What a default Kubeflow install accepts, per
# kubeflow/manifests v1.11.0 and v1.10.2 (docs/cluster.md, step 5, cites each):
# - KFP_COOKIE: the Dex login's session cookie `oauth2_proxy_kubeflow=...` (common/oauth2-proxy/base/
#   oauth2_proxy.cfg:67), sent as a Cookie header: the ingress's way for a person on a laptop;
# - KFP_TOKEN: a bearer token. The default `m2m-dex-only` ingress auth trusts only Dex-issued tokens
#   (README.md:266-269 at v1.11.0), so a `kubectl create token` is refused there; it works through the
#   `m2m-dex-and-kind`/`-eks` overlays, or straight to the API server (port-forward) when created with
#   `--audience pipelines.kubeflow.org` (pipelines 2.15.0 backend/src/apiserver/auth/auth.go:35-44);
# - the projected service-account token a pod in the profile mounts for KFP (a notebook with the
#   access-ml-pipeline PodDefault), where kfp's own in-cluster login looks for it (kfp/client/__init__.py:25-26).
COOKIE_ENV = "KFP_COOKIE"
TOKEN_ENV = "KFP_TOKEN"
SA_TOKEN_ENV, SA_TOKEN_PATH = "KF_PIPELINES_SA_TOKEN_PATH", "/var/run/secrets/kubeflow/pipelines/token"
# kfp.Client's in-cluster default (kfp/client/client.py _IN_CLUSTER_DNS_NAME): the host inside a pod
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
TRAININGS = ("task", "job")  # --trainings: one KFP task (pod, GPU) per training, or a multi-node job per training
# the compiled file of each build, named in messages (pipelines/compile.py writes them)
BUILD_FILES = {
    ("kfp-2.14", "task"): "run8_kfold.yaml",
    ("kfp-2.14", "job"): "run8_kfold_trainjob.yaml",
    ("kfp-2.5", "task"): "run8_kfold-kfp2.5.yaml",
    ("kfp-2.5", "job"): "run8_kfold_trainjob-kfp2.5.yaml",
}


def build(target: str = DEFAULT_TARGET, trainings: str = "task", fixed=None):
    """The pipeline function of `target` and `trainings`; `fixed` (run8_kfold.Fixed) sets a kfp-2.5
    build's Secret and placement."""
    from pipelines import run8_kfold as r

    if (target, trainings) not in BUILD_FILES:
        raise DataError(
            f"--target {target!r} --trainings {trainings!r}: expected a target of "
            f"{DEFAULT_TARGET}, kfp-2.5 and trainings of {', '.join(TRAININGS)}"
        )
    if target == DEFAULT_TARGET:
        return r.run8_kfold_trainjob if trainings == "job" else r.run8_kfold
    return (r.run8_kfold_trainjob_kfp25 if trainings == "job" else r.run8_kfold_kfp25)(fixed or r.Fixed())


def absent(target: str = DEFAULT_TARGET, trainings: str = "task", *, local: bool = False):
    """name -> why the build of `target`/`trainings` has no parameter `name` although another build has
    it (one line naming the option to use), or None for a name no build has (params.py then suggests
    the closest ones)."""
    from pipelines.params import signature
    from pipelines.run8_kfold import DEFAULT_FOLDS, JOB_DEFAULTS

    def why(name: str) -> str | None:
        if name in JOB_DEFAULTS and trainings == "task":
            where = (
                "which runs on a cluster only (kfp.local cannot create cluster jobs): "
                "`receiptflow pipeline submit --trainings job`"
                if local
                else "add --trainings job"
            )
            profile = (
                "; the Kubeflow profile the run goes to is `pipeline submit --namespace`" if name == "namespace" else ""
            )
            return (
                f"{name} is a parameter of the job-backed build (each training a TrainJob or PyTorchJob, "
                f"docs/distributed.md), {where}{profile}"
            )
        if target == "kfp-2.5" and name in signature():
            return (
                f"--target kfp-2.5 has no parameter {name}: that build runs {DEFAULT_FOLDS} folds and takes the "
                "MinIO Secret and the GPU tasks' placement at compile time (--minio-secret, --node-selector, "
                "--toleration)"
            )
        return None

    return why


def resume_jobs_note(params: dict) -> str:
    """What a resumed job-backed run does with the jobs of the run it resumes (components/training_job.py
    run_job): nothing for the user to delete."""
    kind = params["training_backend"]
    return (
        f"note: each training reuses run {params['run_id'].strip()}'s {kind} that succeeded or still runs; after "
        f"a failed one it creates the next attempt (<job>-r2, -r3...), which resumes from the checkpoints, and "
        "leaves the failed job for its logs"
    )


def credentials() -> tuple[dict, str]:
    """kfp.Client keyword arguments for the first credential this environment holds, and what it is (for
    messages)."""
    from pathlib import Path

    cookie = os.environ.get(COOKIE_ENV, "").strip()
    if cookie:
        if "=" not in cookie:
            raise DataError(
                f"{COOKIE_ENV}: expected NAME=VALUE, e.g. oauth2_proxy_kubeflow=... (the session cookie "
                "your browser holds after logging in to the Kubeflow dashboard)"
            )
        return {"cookies": cookie}, f"the session cookie in {COOKIE_ENV}"
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return {"existing_token": token}, f"the bearer token in {TOKEN_ENV}"
    path = Path(os.environ.get(SA_TOKEN_ENV) or SA_TOKEN_PATH)
    if path.is_file():
        return {"existing_token": path.read_text().strip()}, f"the service-account token at {path}"
    return {}, "no credentials"


def resolve_host(host: str | None) -> str:
    """--host, or inside a pod (a Kubeflow notebook) the KFP API's in-cluster address."""
    if host:
        if not host.startswith(("http://", "https://")):
            raise DataError(f"--host {host!r}: expected the KFP API URL, e.g. https://kubeflow.example.com/pipeline")
        return host
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return IN_CLUSTER_HOST
    raise DataError("--host: needed outside a Kubernetes pod, e.g. --host https://kubeflow.example.com/pipeline")


def auth_hint(used: str) -> str:
    """What to do when the endpoint did not take `used` (credentials()'s description): what a default install
    accepts."""
    if used.startswith("the session cookie"):
        hint = (
            f"log in to the dashboard again and copy a fresh oauth2_proxy_kubeflow cookie into {COOKIE_ENV} "
            "(it lasts 24 h), and check that --namespace is a profile you may use"
        )
    elif used == "no credentials":
        hint = (
            f"set {COOKIE_ENV}=oauth2_proxy_kubeflow=<cookie> after logging in to the dashboard, or run from a "
            "notebook in your profile (docs/cluster.md, step 5)"
        )
    else:
        hint = (
            "a default Kubeflow install refuses Kubernetes service-account tokens at its ingress (oauth2-proxy "
            f"m2m-dex-only): use {COOKIE_ENV}=oauth2_proxy_kubeflow=<cookie> from a dashboard login, or, straight "
            "to the API server, a token from `kubectl create token ... --audience pipelines.kubeflow.org` "
            "(docs/cluster.md, step 5)"
        )
    return hint


def healthz(host: str, auth: dict, used: str) -> dict:
    """The KFP API's healthz answer (its `tag_name` is the backend's version), by one GET with the credentials,
    before kfp.Client: the client would retry a 401 for 20 s and report a timeout, and it takes a login page
    (oauth2-proxy sends a request without a session to Dex) for an answer, creating a "run" with no id."""
    import urllib3

    headers = {"Cookie": auth["cookies"]} if "cookies" in auth else {}
    if "existing_token" in auth:
        headers["Authorization"] = f"Bearer {auth['existing_token']}"
    try:
        resp = urllib3.PoolManager(timeout=urllib3.Timeout(total=30), retries=urllib3.Retry(3, redirect=False)).request(
            "GET", f"{host.rstrip('/')}/apis/v2beta1/healthz", headers=headers, redirect=False
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise DataError(
            f"{host}: cannot reach the KFP API ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    if resp.status in (401, 403):
        raise DataError(f"{host}: the KFP API answered {resp.status} with {used}: {auth_hint(used)}")
    if 300 <= resp.status < 400 or "json" not in resp.headers.get("Content-Type", ""):
        where = f" (redirected to {resp.headers['Location'][:80]})" if resp.headers.get("Location") else ""
        raise DataError(
            f"{host}: answered {resp.status} {resp.headers.get('Content-Type', '')}{where}, not the KFP "
            f"API: a login page? {auth_hint(used)}"
        )
    try:
        answer = json.loads(resp.data or b"{}")
    except ValueError:
        raise DataError(f"{host}: its healthz answer is not JSON, not the KFP API") from None
    return answer if isinstance(answer, dict) else {}


def cluster_preflight(
    *,
    namespace: str | None,
    trainings: str,
    training_backend: str | None,
    training_runtime: str | None,
    minio_secret: str | None,
    output_uri: str | None,
    host: str,
    target: str,
) -> None:
    """`receiptflow cluster check` for this run, where this machine has Kubernetes credentials (a note otherwise):
    its problems stop the submit, in one line each."""
    from pipelines.cluster_check import check, connect

    try:
        kube, namespace = connect(namespace)
    except DataError as exc:
        print(f"note: cluster check skipped: {exc}", file=sys.stderr, flush=True)
        return
    report = check(
        kube,
        namespace,
        trainings=trainings,
        training_backend=training_backend if trainings == "job" else None,
        training_runtime=training_runtime or "TrainingRuntime/receiptflow-torch",
        minio_secret=minio_secret or "receiptflow-minio",
        output_uri=output_uri,
        host=host,
        target=target,
    )
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    if report.problems:
        raise DataError(
            f"cluster check of namespace {namespace}: {len(report.problems)} problem(s), nothing submitted "
            "(--no-check submits anyway):\n  " + "\n  ".join(report.problems)
        )


def submit(
    host: str | None,
    params: dict,
    *,
    experiment: str = "receiptflow",
    namespace: str | None = None,
    run_name: str | None = None,
    resume: bool = False,
    target: str = DEFAULT_TARGET,
    fixed=None,
    trainings: str = "task",
    preflight: bool = True,
) -> tuple[str, str]:
    """Create the run; returns its URL in the Kubeflow UI and its run id (the `run_id` parameter, else
    the KFP run's id: what `--resume` takes). `resume`: params["run_id"] names a failed run whose
    checkpoints must exist where this machine can see the store (pipelines/resume.py). `target` and
    `trainings`: the build (`build`); `fixed` (run8_kfold.Fixed) sets the kfp-2.5 build's Secret and
    placement. Every parameter is checked against that build's signature before any request; `preflight`
    runs `receiptflow cluster check` for the run first (cluster_preflight)."""
    import kfp

    from pipelines.params import check_params, check_run, complete

    pipeline = build(target, trainings, fixed)
    params = check_params(dict(params), source="parameters", pipeline=pipeline, absent=absent(target, trainings))
    check_run(
        params, check_dataset=False, pipeline=pipeline
    )  # the store may be reachable from the cluster only: validate_run checks it there
    if resume:
        from pipelines.resume import check_resumable

        full = complete(params, pipeline)
        check_resumable(full, warn=lambda msg: print(msg, file=sys.stderr, flush=True))
        if trainings == "job":
            print(resume_jobs_note(full), file=sys.stderr, flush=True)
    host = resolve_host(host)
    auth, used = credentials()
    print(f"submitting to {host} with {used}", file=sys.stderr, flush=True)
    healthz(host, auth, used)
    if preflight:
        full = complete(params, pipeline)
        secret = fixed.minio_secret if target == "kfp-2.5" and fixed is not None else full.get("minio_secret")
        cluster_preflight(
            namespace=full.get("namespace") or namespace,
            trainings=trainings,
            training_backend=full.get("training_backend"),
            training_runtime=full.get("training_runtime"),
            minio_secret=secret,
            output_uri=full.get("output_uri"),
            host=host,
            target=target,
        )
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": so does this pipeline
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host, namespace=namespace, **auth)
        result = client.create_run_from_pipeline_func(
            pipeline, arguments=params, experiment_name=experiment, run_name=run_name, namespace=namespace
        )
    except ApiException as exc:
        if exc.status in (401, 403):
            raise DataError(f"{host}: the KFP API answered {exc.status} with {used}: {auth_hint(used)}") from None
        raise DataError(f"{host}: the KFP API answered {exc.status} {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        raise DataError(
            f"{host}: cannot reach the KFP API ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    return f"{host.rstrip('/')}/#/runs/details/{result.run_id}", params.get("run_id") or result.run_id

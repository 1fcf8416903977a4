"""Compile the pipelines to the files that are checked in under pipelines/compiled/ (a test fails
when they drift).

Targets (backend versions and the evidence: pipelines/backends.py):
    kfp-2.14  run8_kfold.yaml, sweep_then_train.yaml     KFP backend >= 2.14 (Kubeflow 1.11+)
              run8_kfold_trainjob.yaml                   the same, trainings as TrainJobs / PyTorchJobs
    kfp-2.5   run8_kfold-kfp2.5.yaml                     KFP backend >= 2.5.0 (Kubeflow 1.10.1+)
              run8_kfold_trainjob-kfp2.5.yaml            the same, trainings as PyTorchJobs / TrainJobs
Formats:
    ir        the pipeline spec YAML to upload (UI, `kfp.Client`)
    k8s       k8s/<name>.yaml: Pipeline + PipelineVersion objects and a kustomization, for
              `kubectl apply -k` on a KFP >= 2.14 that stores pipelines in Kubernetes (kfp-2.14 only)
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from pipelines.backends import COMPILED_DIR, COMPILED_FILES

# file stem -> (module under pipelines/, pipeline function)
PIPELINES = {
    "run8_kfold": ("run8_kfold", "run8_kfold"),
    "sweep_then_train": ("sweep_then_train", "sweep_then_train"),
    "run8_kfold_trainjob": ("run8_kfold", "run8_kfold_trainjob"),
}
COMPILED = COMPILED_DIR / "run8_kfold.yaml"
TARGETS = ("kfp-2.14", "kfp-2.5")
DEFAULT_TARGET = "kfp-2.14"  # what `run --local` uses and `submit` uses unless told
FORMATS = ("ir", "k8s")
K8S_DIR = "k8s"


def _pipelines(target: str, fixed=None) -> dict[str, object]:
    """file stem -> pipeline function of `target`."""
    if target == "kfp-2.5":
        from pipelines.run8_kfold import Fixed, run8_kfold_kfp25, run8_kfold_trainjob_kfp25

        return {
            "run8_kfold-kfp2.5": run8_kfold_kfp25(fixed or Fixed()),
            "run8_kfold_trainjob-kfp2.5": run8_kfold_trainjob_kfp25(fixed or Fixed()),
        }
    return {
        stem: getattr(importlib.import_module(f"pipelines.{module}"), func)
        for stem, (module, func) in PIPELINES.items()
    }


def compile_pipelines(out_dir: str | Path | None = None, targets=TARGETS, formats=FORMATS, fixed=None) -> list[Path]:
    """Write every pipeline of `targets` in `formats` under `out_dir` (default pipelines/compiled/);
    `fixed` (run8_kfold.Fixed) sets the kfp-2.5 build's Secret name and placement. Returns the paths."""
    import tempfile

    from kfp import compiler

    from model.errors import DataError

    unknown = [t for t in targets if t not in TARGETS] + [f for f in formats if f not in FORMATS]
    if unknown:
        raise DataError(
            f"unknown target or format {unknown[0]!r}: targets {', '.join(TARGETS)}; formats {', '.join(FORMATS)}"
        )
    if list(formats) == ["k8s"] and "kfp-2.14" not in targets:
        raise DataError(
            "the Kubernetes-native format needs a KFP >= 2.14 backend (PipelineVersion platformSpec, "
            "PR #12016): use --target kfp-2.14"
        )
    out = Path(out_dir) if out_dir else COMPILED_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            for stem, func in _pipelines(target, fixed).items():
                assert COMPILED_FILES[f"{stem}.yaml"].target == target, stem  # every file has a promise
                ir = Path(tmp) / f"{stem}.yaml"
                compiler.Compiler().compile(func, str(ir))
                if "ir" in formats:
                    paths.append(out / ir.name)
                    paths[-1].write_text(ir.read_text())
                if "k8s" in formats and target == "kfp-2.14":
                    paths.append(_k8s_manifest(func, ir, out / K8S_DIR / f"{stem}.yaml"))
    if "k8s" in formats and "kfp-2.14" in targets:
        paths.append(_kustomization(out / K8S_DIR, sorted(p.name for p in paths if p.parent == out / K8S_DIR)))
    return paths


def _k8s_manifest(func, ir: Path, path: Path) -> Path:
    """The Pipeline and a PipelineVersion named after the spec's digest: a PipelineVersion's spec is
    immutable (backend/src/apiserver/webhook/pipelineversion_webhook.go:112-128 at 2.14.0), so a
    changed pipeline is a new version and re-applying an unchanged one changes nothing."""
    from kfp import compiler
    from kfp.compiler.compiler_utils import KubernetesManifestOptions

    name = func.component_spec.name  # run8-kfold: also the pipeline's name in the IR
    digest = hashlib.sha256(ir.read_bytes()).hexdigest()[:10]
    path.parent.mkdir(parents=True, exist_ok=True)
    options = KubernetesManifestOptions(
        pipeline_name=name, pipeline_version_name=f"{name}-{digest}", include_pipeline_manifest=True
    )
    compiler.Compiler().compile(func, str(path), kubernetes_manifest_options=options, kubernetes_manifest_format=True)
    return path


def _kustomization(folder: Path, names: list[str]) -> Path:
    path = folder / "kustomization.yaml"
    lines = [
        "# `kubectl apply -k pipelines/compiled/k8s -n NAMESPACE` (KFP >= 2.14 with the Kubernetes pipeline store)",
        "# Generated by `receiptflow pipeline compile`.",
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        *(f"- {n}" for n in names),
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def fixed_settings(minio_secret: str | None, node_selector: list[str], tolerations: list[str]):
    """run8_kfold.Fixed from the command line's LABEL=VALUE and KEY[=VALUE]:EFFECT; None when none is given."""
    from model.errors import DataError
    from pipelines.run8_kfold import MINIO_SECRET, Fixed

    if minio_secret is None and not node_selector and not tolerations:
        return None
    labels = {}
    for item in node_selector:
        label, sep, value = item.partition("=")
        if not sep or not label:
            raise DataError(f"--node-selector {item!r}: expected LABEL=VALUE, e.g. nvidia.com/gpu.product=NVIDIA-H100")
        labels[label] = value
    tols = []
    for item in tolerations:
        key_value, sep, effect = item.rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise DataError(
                f"--toleration {item!r}: expected KEY[=VALUE]:EFFECT with EFFECT NoSchedule, "
                "PreferNoSchedule or NoExecute"
            )
        key, eq, value = key_value.partition("=")
        tols.append(
            {"key": key, "operator": "Equal", "value": value, "effect": effect}
            if eq
            else {"key": key, "operator": "Exists", "effect": effect}
        )
    return Fixed(minio_secret=minio_secret or MINIO_SECRET, node_selector=labels, tolerations=tuple(tols))

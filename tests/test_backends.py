"""Which KFP backend runs which compiled file (pipelines/backends.py): the detector finds each
feature in a small pipeline compiled here, every checked-in file runs on the backend README
promises for it, the kfp-2.5 build has none of the 2.14-only features, and the Kubernetes-native
format is what a KFP 2.14 PipelineVersion accepts."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml
from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Input, Output

from pipelines.backends import (
    COMPILED_DIR,
    COMPILED_FILES,
    FEATURES,
    KUBEFLOW,
    features,
    min_backend,
    problems,
    supported_files,
    supported_versions_table,
    version,
)
from pipelines.compile import K8S_DIR

REPO = Path(__file__).resolve().parents[1]
IMAGE = "python:3.11-slim"  # the planted pipelines are compiled, never run


@dsl.component(base_image=IMAGE)
def make(out: Output[Artifact]) -> int:
    return 1


@dsl.component(base_image=IMAGE)
def take(xs: Input[List[Artifact]]):
    pass


@dsl.component(base_image=IMAGE)
def take_numbers(xs: list):
    pass


@dsl.component(base_image=IMAGE)
def use(run: str):
    pass


def _planted(feature: str) -> dsl.graph_component.GraphComponent:
    """A two-task pipeline with exactly one feature (or none, for "none")."""

    @dsl.pipeline(name=f"planted-{feature.replace('_', '-')}")
    def planted(secret: str = "s", selector: dict = {}, tolerations: list = []):
        if feature == "collected":
            with dsl.ParallelFor(items=[1, 2]):
                made = make()
            take(xs=dsl.Collected(made.outputs["out"]))
        elif feature == "collected_parameters":
            with dsl.ParallelFor(items=[1, 2]):
                made = make()
            take_numbers(xs=dsl.Collected(made.outputs["Output"]))
        elif feature == "parallelism_limit":
            with dsl.ParallelFor(items=[1, 2], parallelism=1):
                make()
        elif feature == "retry_sub_dag":
            with dsl.ParallelFor(items=[1, 2]):
                make().set_retry(num_retries=2)
        elif feature == "retry_root":
            make().set_retry(num_retries=2)
        elif feature == "job_placeholder":
            use(run=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        elif feature == "name_parameter":
            kubernetes.use_secret_as_env(use(run="x"), secret_name=secret, secret_key_to_env={"K": "K"})
        elif feature == "node_selector_json":
            kubernetes.add_node_selector_json(use(run="x"), selector)
        elif feature == "toleration_json":
            kubernetes.add_toleration_json(use(run="x"), tolerations)
        else:  # the kfp-2.5 build's forms: literal Secret name, node selector and toleration, a loop without fan-in
            task = use(run="x")
            kubernetes.use_secret_as_env(task, secret_name="literal", secret_key_to_env={"K": "K"})
            kubernetes.add_node_selector(task, label_key="gpu", label_value="a100")
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
            with dsl.ParallelFor(items=[1, 2]):
                make()

    return planted


@pytest.mark.parametrize(
    "feature",
    [
        "collected",
        "collected_parameters",
        "name_parameter",
        "node_selector_json",
        "toleration_json",
        "job_placeholder",
        "retry_root",
        "retry_sub_dag",
        "parallelism_limit",
    ],
)
def test_the_detector_finds_each_feature_planted_in_a_compiled_pipeline(feature, tmp_path):
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(_planted(feature), str(path))
    key = "collected" if feature.startswith("collected") else feature
    assert set(features(path)) == {key}, features(path)
    first = FEATURES[key].first
    if FEATURES[key].required:
        assert min_backend(path) == first
        older = {"2.14.0": "2.5.0", "2.5.0": "2.4.1"}[first]
        (problem,) = problems(path, older)
        assert f"needs KFP >= {first}, promised {older}" in problem
        assert problems(path, first) == []
    else:  # retries and the parallelism limit: older backends run the pipeline without them
        assert min_backend(path) == "2.0.0" and problems(path, "2.2.0") == []


def test_literal_secret_placement_and_a_loop_without_fan_in_need_no_new_backend(tmp_path):
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(_planted("none"), str(path))
    assert features(path) == {} and min_backend(path) == "2.0.0"


def test_the_feature_table_cites_upstream_for_every_row():
    for key, feature in FEATURES.items():
        assert version(feature.first) >= (2, 0, 0), key
        assert "#" in feature.evidence and (
            "PR" in feature.evidence or "commit" in feature.evidence or "issue" in feature.evidence
        ), key
        assert feature.required or feature.lost, key


# --------------------------------------------------------------------------- the promises


def _compiled_files() -> list[str]:
    return sorted(
        str(p.relative_to(COMPILED_DIR)) for p in COMPILED_DIR.rglob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_every_compiled_file_has_a_promise():
    assert _compiled_files() == sorted(COMPILED_FILES)


@pytest.mark.parametrize("name", sorted(COMPILED_FILES))
def test_each_compiled_file_runs_on_the_backend_it_is_promised(name):
    """The checked-in file needs no newer backend than README's supported-versions table states."""
    path = COMPILED_DIR / name
    assert path.is_file(), f"pipelines/compiled/{name} is missing: run `receiptflow pipeline compile`"
    assert problems(path, COMPILED_FILES[name].backend) == []


def test_the_kfp25_build_runs_on_kubeflow_1_10_and_the_others_need_2_14():
    assert (
        min_backend(COMPILED_DIR / "run8_kfold-kfp2.5.yaml") == "2.5.0"
    )  # {{$.pipeline_job_uuid}} resolved from 2.5.0
    for name in ("run8_kfold.yaml", "sweep_then_train.yaml", "k8s/run8_kfold.yaml"):
        assert min_backend(COMPILED_DIR / name) == "2.14.0", name
    assert KUBEFLOW["1.10.1"]["kfp"] == "2.5.0" and KUBEFLOW["1.10.0"]["kfp"] == "2.4.1"


@pytest.mark.parametrize("name", sorted(COMPILED_FILES))
def test_each_job_build_is_promised_only_where_its_default_job_kind_is_installed(name):
    """A job build defaults `training_backend` to one kind; a release without it (PyTorchJob on Kubeflow 1.11) would
    launch jobs that never start, so the table lists the file only where that kind is installed."""
    spec = next(yaml.safe_load_all((COMPILED_DIR / name).read_text())) if not name.startswith("k8s/") else None
    if spec is not None:
        default = spec["root"]["inputDefinitions"]["parameters"].get("training_backend", {}).get("defaultValue")
        assert default == COMPILED_FILES[name].job, name
    for release, ships in KUBEFLOW.items():
        if name in supported_files(ships["kfp"], ships["jobs"]):
            assert COMPILED_FILES[name].job in (None, *ships["jobs"]), (release, name)
    assert "run8_kfold_trainjob-kfp2.5.yaml" not in supported_files(
        KUBEFLOW["1.11.0"]["kfp"], KUBEFLOW["1.11.0"]["jobs"]
    )


@pytest.mark.parametrize(
    "doc, heading", [("README.md", "## Supported versions"), ("docs/cluster.md", "## Supported versions")]
)
def test_readme_and_runbook_state_the_promises(doc, heading):
    text = (REPO / doc).read_text()
    assert heading in text, f"{doc} has no '{heading}' section"
    assert supported_versions_table() in text, (
        f"{doc}: the table differs from pipelines.backends.supported_versions_table()"
    )


# --------------------------------------------------------------------------- the kfp-2.5 build


@pytest.fixture(scope="module")
def kfp25() -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all((COMPILED_DIR / "run8_kfold-kfp2.5.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_kfp25_build_unrolls_the_folds_into_root_tasks_that_retry(kfp25):
    from pipelines.run8_kfold import DEFAULT_FOLDS

    spec, _ = kfp25
    tasks = spec["root"]["dag"]["tasks"]
    assert not [n for n, t in tasks.items() if "parameterIterator" in t or "artifactIterator" in t]
    assert "folds" not in spec["root"]["inputDefinitions"]["parameters"]  # K is fixed: not offered
    assert {"minio_secret", "node_selector", "tolerations"}.isdisjoint(spec["root"]["inputDefinitions"]["parameters"])
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert {f"train fold {i}" for i in range(DEFAULT_FOLDS)} | {
        f"predict test + calibration (fold {i})" for i in range(DEFAULT_FOLDS)
    } <= names
    trainings = [t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-train")]
    assert len(trainings) == DEFAULT_FOLDS + 1 and all(t["retryPolicy"]["maxRetryCount"] == 3 for t in trainings)
    for task in trainings:  # fold i trains on fold i with choose_config's hyperparameters
        fold = task["inputs"]["parameters"]["fold"]["runtimeValue"]["constant"]
        if fold >= 0:
            assert task["inputs"]["parameters"]["lr"]["taskOutputParameter"] == {
                "outputParameterKey": "lr",
                "producerTask": "choose-config",
            }
    splits = tasks["split-folds"]["inputs"]["parameters"]["k"]["runtimeValue"]["constant"]
    assert splits == DEFAULT_FOLDS == tasks["validate-run"]["inputs"]["parameters"]["folds"]["runtimeValue"]["constant"]
    # the run's init_from reaches every training (replication and each fold) and the first task's check
    assert spec["root"]["inputDefinitions"]["parameters"]["init_from"]["defaultValue"] == ""
    for task in [*trainings, tasks["validate-run"]]:
        assert task["inputs"]["parameters"]["init_from"] == {"componentInputParameter": "init_from"}


def test_kfp25_build_fans_in_one_artifact_per_fold_from_separate_tasks(kfp25):
    from pipelines.run8_kfold import DEFAULT_FOLDS, PREDICTED

    spec, _ = kfp25
    tasks = spec["root"]["dag"]["tasks"]
    predictions = tasks["ensemble"]["inputs"]["artifacts"]
    producers = {predictions[f"predictions_{i}"]["taskOutputArtifact"]["producerTask"] for i in range(DEFAULT_FOLDS)}
    assert len(producers) == DEFAULT_FOLDS and all(
        tasks[p]["componentRef"]["name"].startswith("comp-predict") for p in producers
    )
    for i in range(DEFAULT_FOLDS):  # fold i's test and calibration words and maps come from fold i's predict task
        fed = {key: predictions[f"{key}_{i}"]["taskOutputArtifact"] for key in PREDICTED}
        assert {f["producerTask"] for f in fed.values()} == {
            predictions[f"predictions_{i}"]["taskOutputArtifact"]["producerTask"]
        }
        assert all(f["outputArtifactKey"] == key for key, f in fed.items())
    calibration = {"componentInputParameter": "calibration"}
    assert tasks["ensemble"]["inputs"]["parameters"]["calibration"] == calibration
    assert tasks["split-folds"]["inputs"]["parameters"]["hold_out"] == calibration
    assert all(tasks[p]["inputs"]["parameters"]["calibration"] == calibration for p in producers)
    models = tasks["publish"]["inputs"]["artifacts"]
    assert (
        len({models[f"models_{i}"]["taskOutputArtifact"]["producerTask"] for i in range(DEFAULT_FOLDS)})
        == DEFAULT_FOLDS
    )
    for comp in spec["components"].values():  # no list input anywhere: the 2.5.0 driver resolves one artifact per input
        assert not [
            a for a in comp.get("inputDefinitions", {}).get("artifacts", {}).values() if a.get("isArtifactList")
        ]
    assert (
        tasks["ensemble"]["taskInfo"]["name"] == "ensemble"
        and tasks["publish"]["taskInfo"]["name"] == "publish to MinIO"
    )


def test_kfp25_build_has_a_literal_secret_and_no_parameterised_placement(kfp25):
    from pipelines.run8_kfold import MINIO_SECRET

    _, executors = kfp25
    secrets = [s for config in executors.values() for s in config.get("secretAsEnv", [])]
    assert secrets and all(s["secretName"] == MINIO_SECRET for s in secrets)
    assert not [e for e, c in executors.items() if "nodeSelector" in c or "tolerations" in c]  # none by default


def test_compile_options_write_the_kfp25_secret_and_placement_into_the_yaml(tmp_path):
    proc = _cli(
        "pipeline",
        "compile",
        "--target",
        "kfp-2.5",
        "--out-dir",
        str(tmp_path),
        "--minio-secret",
        "team-minio",
        "--node-selector",
        "nvidia.com/gpu.product=NVIDIA-H100",
        "--toleration",
        "nvidia.com/gpu:NoSchedule",
        "--toleration",
        "dedicated=ml:NoExecute",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run8_kfold-kfp2.5.yaml", "run8_kfold_trainjob-kfp2.5.yaml"]
    path = tmp_path / "run8_kfold-kfp2.5.yaml"
    _, platform = yaml.safe_load_all(path.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu = [c for e, c in executors.items() if e.startswith(("exec-train", "exec-predict", "exec-evaluate"))]
    assert len(gpu) == 1 + 5 + 5 + 1
    for config in gpu:
        assert config["nodeSelector"] == {"labels": {"nvidia.com/gpu.product": "NVIDIA-H100"}}
        assert config["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"},
        ]
    assert {s["secretName"] for c in executors.values() for s in c.get("secretAsEnv", [])} == {"team-minio"}
    assert min_backend(path) == "2.5.0"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "kfp-2.5", "--format", "k8s"], "the Kubernetes-native format needs a KFP >= 2.14 backend"),
        (
            ["--target", "kfp-2.14", "--minio-secret", "x"],
            "--minio-secret, --node-selector and --toleration set the kfp-2.5 build",
        ),
        (["--target", "kfp-2.5", "--toleration", "gpu"], "--toleration 'gpu': expected KEY[=VALUE]:EFFECT"),
        (["--target", "kfp-2.5", "--node-selector", "gpu"], "--node-selector 'gpu': expected LABEL=VALUE"),
    ],
)
def test_compile_refuses_options_that_do_not_fit_the_target(args, message, tmp_path):
    proc = _cli("pipeline", "compile", "--out-dir", str(tmp_path), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_unrolled_components_take_default_folds_inputs_and_the_rest_of_the_real_ones():
    import inspect

    from components.ensemble import ensemble
    from components.publish import publish
    from pipelines import unrolled
    from pipelines.run8_kfold import DEFAULT_FOLDS, PREDICTED

    assert unrolled.FOLDS == DEFAULT_FOLDS
    for real, wrapper, listed in ((ensemble, unrolled.ensemble, PREDICTED), (publish, unrolled.publish, ("models",))):
        real_params = [p for p in inspect.signature(real.python_func).parameters if p not in listed]
        wrapper_params = [
            p
            for p in inspect.signature(wrapper.python_func).parameters
            if not p.startswith(tuple(f"{name}_" for name in listed))
        ]
        assert real_params == wrapper_params, real.name
        assert real.component_spec.name == wrapper.component_spec.name  # the same component in the UI


def test_unrolled_publish_and_choose_config_give_what_the_real_ones_give(tmp_path):
    import json

    from kfp.dsl import Markdown, Metrics, Model

    from components.choose_config import choose_config
    from components.publish import publish
    from pipelines import unrolled
    from pipelines.run8_kfold import RUN3, RUN8

    rule = dict(
        hmean=0.9649,
        success_hmean=0.966,
        acceptable_hmean=0.965,
        folds=5,
        **{f"run8_{k}": v for k, v in RUN8.items()},
        **{f"run3_{k}": v for k, v in RUN3.items()},
    )
    decisions = [_artifact(Markdown, tmp_path / f"decision{i}.md") for i in range(2)]
    plan = choose_config.python_func(**rule, decision=decisions[0])
    chosen = unrolled.choose_config.python_func(**rule, decision=decisions[1])
    assert (
        (chosen.config, chosen.lr, chosen.weight_decay, chosen.t_max, chosen.eta_min)
        == ("run3", RUN3["lr"], RUN3["weight_decay"], RUN3["t_max"], RUN3["eta_min"])
        == tuple(plan[0][k] for k in ("config", "lr", "weight_decay", "t_max", "eta_min"))
    )
    assert Path(decisions[0].path).read_text() == Path(decisions[1].path).read_text()

    import shutil

    from omegaconf import OmegaConf

    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.net import build_model

    cfg = load_config(["preset=cpu_tiny"])  # publish exports each best.pt to ONNX: a real (untrained) checkpoint
    save_checkpoint(
        tmp_path / "best.pt", {"model": build_model(cfg.models).state_dict(), "config": OmegaConf.to_container(cfg)}
    )
    models = []
    for fold in range(-1, 5):
        folder = tmp_path / "models" / str(fold)
        folder.mkdir(parents=True)
        task = "replication" if fold < 0 else f"fold_{fold}"
        best = {"epoch": 1, "val/hmean": 0.5 + fold / 100, "val/precision": 0.6, "val/recall": 0.4}
        (folder / "summary.json").write_text(json.dumps({"task": task, "fold": fold, "best": best, "history": [best]}))
        shutil.copy(tmp_path / "best.pt", folder / "best.pt")
        models.append(_artifact(Model, folder))
    inputs = {}
    for name, text in (
        ("submission", "img,poly\n"),
        ("fused", "{}"),
        ("data_report", "- a.jpg: skipped\n"),
        ("ensemble_report", "# Ensemble\n\nMethod: **map fusion, thresh 0.29, box_thresh 0.25**\n"),
    ):
        (tmp_path / name).write_text(text)
        inputs[name] = _artifact(
            Markdown if name.endswith("report") else Artifact,
            tmp_path / name,
            {"method": "fold", "fold": 2, "calibration": "val"} if name == "fused" else None,
        )
    common = dict(
        **inputs,
        replication=models[0],
        decision=decisions[0],
        output_uri=str(tmp_path / "out"),
        job_id="",
        ensemble_metrics=_artifact(Metrics, tmp_path / "m", metadata={"test/hmean_fold_0": 0.7}),
    )

    def run(func, run_id, **fan_in):
        summary = _artifact(Markdown, tmp_path / f"summary-{run_id}.md")
        prefix = func(**common, **fan_in, run_id=run_id, summary=summary)
        files = sorted(str(p.relative_to(prefix)) for p in Path(prefix).rglob("*") if p.is_file())
        return files, Path(summary.path).read_text().replace(prefix, "PREFIX")

    real = run(publish.python_func, "real", models=models[1:])
    wrapped = run(unrolled.publish.python_func, "wrapped", **{f"models_{i}": m for i, m in enumerate(models[1:])})
    assert (
        wrapped == real
        and {"models/fold_4/best.pt", "models/fold_4/model.onnx", "models/ensemble.json"} <= set(real[0])
        and "| fold_4 |" in real[1]
    )
    assert "# Ensemble\n\nMethod: **map fusion, thresh 0.29, box_thresh 0.25**\n" in real[1]  # the ensemble's report


LOCAL_RUN = """
import sys
from kfp import local
from pipelines.run8_kfold import run8_kfold_kfp25
data, out, root = sys.argv[1:4]
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
print("PREFIX", run8_kfold_kfp25()(dataset_uri=data, output_uri=out, run_id="k25", preset="cpu_tiny", epochs=1,
      min_vote=1, overrides=["dataset.batch_size=4", "dataset.num_workers=0", "trainer.eval_workers=0"]).output)
"""


@pytest.mark.slow
def test_kfp25_build_runs_end_to_end_locally(tmp_path):
    """kfp.local runs the unrolled build: inside each running task (kfp's runtime-only `kfp.dsl`) the
    wrappers call the real components, and the run publishes what the kfp-2.14 build publishes."""
    from model.submission import check_submission, list_test_images

    data = tmp_path / "data"
    assert _cli("synth", "--out", str(data), "--n", "12", "--seed", "5", "--workers", "1").returncode == 0
    proc = subprocess.run(
        [sys.executable, "-c", LOCAL_RUN, str(data), str(tmp_path / "out"), str(tmp_path / "kfp")],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prefix = tmp_path / "out" / "runs" / "k25"
    assert f"PREFIX {prefix}" in proc.stdout
    published = {str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file()}
    assert {"submission.csv", "ensemble.json", "decision.md", "summary.md"} | {
        f"models/{t}/summary.json" for t in ("replication", *(f"fold_{i}" for i in range(5)))
    } <= published
    assert check_submission(prefix / "submission.csv", list_test_images(data)).problems == []
    assert "| fold_4 |" in (prefix / "summary.md").read_text()


def _artifact(cls, path: Path, metadata: dict | None = None):
    artifact = cls(name=path.name, uri=str(path), metadata=metadata or {})
    artifact.path = str(path)
    return artifact


def _cli(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RECEIPTFLOW_IMAGE", "RECEIPTFLOW_NAMESPACE")}
    return subprocess.run(
        [sys.executable, "-m", "model.cli", *args],
        cwd=REPO,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


# --------------------------------------------------------------------------- Kubernetes-native format


def _k8s(name: str) -> tuple[dict, dict]:
    pipeline, pipeline_version = yaml.safe_load_all((COMPILED_DIR / K8S_DIR / name).read_text())
    return pipeline, pipeline_version


@pytest.mark.parametrize("name", ["run8_kfold.yaml", "sweep_then_train.yaml"])
def test_k8s_format_is_a_pipeline_and_a_version_of_the_checked_in_spec(name):
    """Fields of the PipelineVersion CRD at KFP 2.14.0 (manifests/kustomize/base/crds/
    pipelines.kubeflow.org_pipelineversions.yaml:41-58: spec.pipelineSpec required; pipelineName,
    displayName, description strings; platformSpec free-form); the name carries the spec's digest
    because a version's spec is immutable (apiserver/webhook/pipelineversion_webhook.go:112-128)."""
    pipeline, version_ = _k8s(name)
    ir = COMPILED_DIR / name
    spec, platform = yaml.safe_load_all(ir.read_text())
    for obj, kind in ((pipeline, "Pipeline"), (version_, "PipelineVersion")):
        assert obj["apiVersion"] == "pipelines.kubeflow.org/v2beta1" and obj["kind"] == kind
        assert "namespace" not in obj["metadata"]  # `kubectl apply -k ... -n NAMESPACE` chooses
    assert pipeline["metadata"]["name"] == spec["pipelineInfo"]["name"] == version_["spec"]["pipelineName"]
    digest = hashlib.sha256(ir.read_bytes()).hexdigest()[:10]
    assert version_["metadata"]["name"] == f"{spec['pipelineInfo']['name']}-{digest}"
    assert version_["spec"]["pipelineSpec"] == spec and version_["spec"]["platformSpec"] == platform
    assert set(version_["spec"]) <= {
        "codeSourceURL",
        "description",
        "displayName",
        "pipelineName",
        "pipelineSpec",
        "pipelineSpecURI",
        "platformSpec",
    }
    assert all(isinstance(version_["spec"][k], str) for k in ("description", "displayName", "pipelineName"))


def test_k8s_kustomization_installs_every_k8s_file():
    kustomization = yaml.safe_load((COMPILED_DIR / K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(
        f.removeprefix("k8s/") for f in COMPILED_FILES if f.startswith("k8s/")
    )


def test_k8s_format_validates_against_the_upstream_crds():
    """KFP 2.14.0's own CRD schemas (tests/fixtures/kfp-crds, copied with their provenance)."""
    import jsonschema

    crd_dir = Path(__file__).parent / "fixtures" / "kfp-crds"
    crds = {kind: crd_dir / f"pipelines.kubeflow.org_{kind}.yaml" for kind in ("pipelines", "pipelineversions")}
    for name in ("run8_kfold.yaml", "sweep_then_train.yaml"):
        for obj, kind in zip(_k8s(name), ("pipelines", "pipelineversions")):
            (schema,) = [
                v["schema"]["openAPIV3Schema"] for v in yaml.safe_load(crds[kind].read_text())["spec"]["versions"]
            ]
            jsonschema.validate(obj, schema)


def test_the_unrolled_components_are_generated_from_k():
    """pipelines/unrolled.py is `python -m pipelines.unrolled_source`'s output for DEFAULT_FOLDS, and the template
    makes any K's per-fold inputs (the fan-in lists included)."""
    from pipelines import unrolled
    from pipelines.run8_kfold import DEFAULT_FOLDS
    from pipelines.unrolled_source import source

    assert Path(unrolled.__file__).read_text() == source(DEFAULT_FOLDS), "run `python -m pipelines.unrolled_source`"
    three = source(3)
    for name in ("predictions", "maps", "calibration_predictions", "calibration_maps", "models"):
        assert [f"{name}_{i}: Input" in three for i in range(4)] == [True, True, True, False], name
    assert "models=[models_0, models_1, models_2]" in three
    compile(three, "unrolled.py", "exec")

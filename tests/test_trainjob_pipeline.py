"""The TrainJob-backend pipeline (pipelines/compiled/run8_kfold_trainjob.yaml, `receiptflow pipeline
compile`): the same plan as run8_kfold with each training a launcher task (components/run_training_job.py)
whose parameters come from the run, and nothing it needs beyond what run8_kfold.yaml needs of KFP."""

from __future__ import annotations

import pytest
import yaml

from components import IMAGE
from pipelines.backends import COMPILED_DIR, COMPILED_FILES, min_backend
from pipelines.run8_kfold import JOB_DEFAULTS, TRAIN_RETRIES
from tests.test_pipeline import _tasks

FILE = COMPILED_DIR / "run8_kfold_trainjob.yaml"
JOB_PARAMS = ("training_backend", "num_nodes", "gpus_per_node", "training_runtime", "namespace")


@pytest.fixture(scope="module")
def ir() -> tuple[dict, dict]:
    from kfp.components import load_component_from_file

    assert load_component_from_file(str(FILE)).name == "run8-kfold-trainjob"
    spec, platform = list(yaml.safe_load_all(FILE.read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_the_job_parameters_are_run_parameters_with_their_defaults(ir):
    spec, _ = ir
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name, value in JOB_DEFAULTS.items():
        assert params[name]["defaultValue"] == value, name
    assert (
        JOB_DEFAULTS["training_backend"] == "trainjob"
        and JOB_DEFAULTS["training_runtime"] == "TrainingRuntime/receiptflow-torch"
    )
    default = next(yaml.safe_load_all((COMPILED_DIR / "run8_kfold.yaml").read_text()))
    # every run8_kfold parameter is here with the same default: a params file works for both
    for name, p in default["root"]["inputDefinitions"]["parameters"].items():
        assert params[name] == p, name


def test_every_training_is_a_launcher_task_fed_by_the_runs_job_parameters(ir):
    spec, k8s = ir
    tasks = _tasks(spec)
    launchers = {n: (t, ex) for n, (t, ex) in tasks.items() if n.startswith("train")}
    assert set(launchers) == {"train-job", "train-job-2"}  # the replication and the fold loop's
    for name, (task, executor) in launchers.items():
        assert task["componentRef"]["name"].startswith("comp-train-job")
        inputs = task["inputs"]["parameters"]
        for p in JOB_PARAMS:
            source = inputs[p].get("componentInputParameter", "")
            assert source.endswith(p), (name, p, inputs[p])  # the run's (through the loop's inputs in the loop)
        assert inputs["timeout_minutes"]["componentInputParameter"].endswith("job_timeout_minutes")
        assert inputs["image"]["runtimeValue"]["constant"] == IMAGE  # the job's pods run the pipeline's image
        assert inputs["minio_secret"]["componentInputParameter"].endswith("minio_secret")
        assert inputs["init_from"]["componentInputParameter"].endswith("init_from")  # every job starts from it
        assert task["retryPolicy"]["maxRetryCount"] == TRAIN_RETRIES  # a retried launcher attaches to its job
        assert not task.get("cachingOptions", {}).get("enableCache")
        container = spec["deploymentSpec"]["executors"][executor]["container"]
        assert "accelerator" not in container.get("resources", {})  # the GPUs are the job's, not the launcher's
        (secret,) = k8s[executor]["secretAsEnv"]  # it uploads the inputs and reads the mirror
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("minio_secret")
    # downstream reads the launcher's Model exactly as it read train's
    assert tasks["evaluate"][0]["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "model",
        "producerTask": "train-job",
    }


def test_the_rest_of_the_plan_is_run8_kfolds(ir):
    spec, _ = ir
    default = next(yaml.safe_load_all((COMPILED_DIR / "run8_kfold.yaml").read_text()))
    rename = {"train": "train-job", "train-2": "train-job-2"}
    assert {rename.get(n, n) for n in _tasks(default)} == set(_tasks(spec))


def test_it_needs_the_same_kfp_backend_as_run8_kfold_and_has_a_promise():
    assert (
        COMPILED_FILES["run8_kfold_trainjob.yaml"].backend
        == min_backend(FILE)
        == min_backend(COMPILED_DIR / "run8_kfold.yaml")
    )
    assert "k8s/run8_kfold_trainjob.yaml" in COMPILED_FILES


def test_the_kfp25_build_launches_six_jobs_from_root_tasks_with_the_compile_time_secret():
    """Kubeflow 1.10 (KFP 2.5.0, Training Operator v1 only): run8_kfold_trainjob-kfp2.5.yaml, PyTorchJobs by
    default, the folds unrolled into root-DAG tasks (retried there by 2.5.0), the MinIO Secret a literal."""
    path = COMPILED_DIR / "run8_kfold_trainjob-kfp2.5.yaml"
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    assert COMPILED_FILES[path.name].backend == min_backend(path) == "2.5.0"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["training_backend"]["defaultValue"] == "pytorchjob" and "folds" not in params
    root = spec["root"]["dag"]["tasks"]
    launchers = {n: t for n, t in root.items() if t["componentRef"]["name"].startswith("comp-train-job")}
    assert len(launchers) == 1 + 5
    for task in launchers.values():
        assert task["retryPolicy"]["maxRetryCount"] == TRAIN_RETRIES
        assert task["inputs"]["parameters"]["minio_secret"]["runtimeValue"]["constant"] == "receiptflow-minio"
        assert task["inputs"]["parameters"]["training_backend"]["componentInputParameter"] == "training_backend"
        assert task["inputs"]["parameters"]["init_from"] == {"componentInputParameter": "init_from"}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert not [e for e in executors if e.startswith("exec-train-job") and "nodeSelector" in executors[e]]

"""The run8-kfold pipeline: its compiled IR (checked in, drift-tested), the seed's decision rule,
parameter handling, and real local runs of the whole pipeline on tiny synthetic receipts.

No `from __future__ import annotations`: kfp reads the test pipelines' annotations as types."""

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.common import ACCEPTABLE, FALLBACK, SUCCESS, decide
from model.checkpoint import load_checkpoint
from model.errors import DataError
from pipelines.compile import COMPILED
from pipelines.run8_kfold import PREDICTED

REPO = Path(__file__).resolve().parents[1]

SEED_DEFAULTS = {  # the seed report's values (§1.3, §3.2, §7), to full precision
    "run8_lr": 0.0005134333170096499,
    "run8_weight_decay": 6.797303101020006e-05,
    "run8_t_max": 24,
    "run8_eta_min": 6.388390006720873e-06,
    "run3_lr": 0.0003845588887231477,
    "run3_weight_decay": 0.00013939498132089153,
    "run3_t_max": 22,
    "run3_eta_min": 1.8596851896215065e-05,
    "thresh": 0.29,
    "box_thresh": 0.25,
    "max_candidates": 600,
    "epochs": 22,
    "folds": 5,
    "min_vote": 3,
    "preset": "efficientnet_b4_lr_optimized",
    "success_hmean": 0.966,
    "acceptable_hmean": 0.965,
}


def _cli(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "model.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


# ------------------------------------------------------------------------------ compiled IR


@pytest.fixture(scope="module")
def ir() -> tuple[dict, dict]:
    """(pipeline spec, Kubernetes platform spec) of the checked-in YAML, after kfp loads it back."""
    from kfp.components import load_component_from_file

    component = load_component_from_file(str(COMPILED))
    assert component.name == "run8-kfold"
    spec, platform = list(yaml.safe_load_all(COMPILED.read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_checked_in_yaml_is_what_the_code_compiles_to(tmp_path):
    """Every target and format: `receiptflow pipeline compile` writes exactly pipelines/compiled/."""
    from pipelines.compile import COMPILED_DIR

    env = {k: v for k, v in os.environ.items() if k not in ("RECEIPTFLOW_IMAGE", "RECEIPTFLOW_NAMESPACE")}
    proc = _cli("pipeline", "compile", "--out-dir", str(tmp_path), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(COMPILED_DIR)) for p in COMPILED_DIR.rglob("*") if p.is_file())
    assert {"run8_kfold.yaml", "sweep_then_train.yaml", "run8_kfold-kfp2.5.yaml", "k8s/kustomization.yaml"} <= set(
        files
    )
    for name in files:
        assert (tmp_path / name).read_text() == (COMPILED_DIR / name).read_text(), (
            f"pipelines/compiled/{name} is stale: run `receiptflow pipeline compile` and commit it"
        )


def _tasks(spec: dict) -> dict[str, tuple[dict, str]]:
    """task name -> (task spec, executor label), across the root DAG and every sub-DAG."""
    out = {}
    for comp in [spec["root"], *spec["components"].values()]:
        for name, task in comp.get("dag", {}).get("tasks", {}).items():
            executor = spec["components"][task["componentRef"]["name"]].get("executorLabel")
            out[name] = (task, executor)
    return out


def test_parameter_defaults_are_the_seed_values_to_full_precision(ir):
    spec, _ = ir
    params = spec["root"]["inputDefinitions"]["parameters"]
    kinds = {int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING"}
    for name, value in SEED_DEFAULTS.items():
        assert params[name]["defaultValue"] == value, name  # YAML floats: the exact double, no rounding
        assert params[name]["parameterType"] == kinds[type(value)], name


def test_training_and_predict_tasks_get_a_gpu_shm_secret_env_and_placement(ir):
    spec, k8s = ir
    tasks = _tasks(spec)
    gpu_tasks = {name: ex for name, (_, ex) in tasks.items() if name.startswith(("train", "predict"))}
    assert {n.split("-")[0] for n in gpu_tasks} == {"train", "predict"} and len(
        gpu_tasks
    ) == 3  # replication, fold, predict
    for name, executor in gpu_tasks.items():
        accel = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]["accelerator"]
        assert accel["resourceType"] == "nvidia.com/gpu" and accel["resourceCount"] == "1", name
        mounts = k8s[executor]["emptyDirMounts"]
        assert {"mountPath": "/dev/shm", "medium": "Memory", "volumeName": "dshm", "sizeLimit": "16Gi"} in mounts, name
        assert "nodeSelector" in k8s[executor] and "tolerations" in k8s[executor], name
    for executor in {ex for n, ex in gpu_tasks.items() if n.startswith("train")} | {
        tasks["prepare-dataset"][1],
        tasks["publish"][1],
    }:
        (secret,) = k8s[executor]["secretAsEnv"]
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("minio_secret")
        envs = {m["envVar"] for m in secret["keyToEnv"]}
        assert {"MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE"} <= envs


def test_trainings_retry_and_publish_is_never_cached(ir):
    spec, _ = ir
    tasks = _tasks(spec)
    trainings = [t for n, (t, _) in tasks.items() if n.startswith("train")]
    assert len(trainings) == 2
    for task in trainings:
        assert task["retryPolicy"]["maxRetryCount"] == 3
        assert task["retryPolicy"]["backoffDuration"] == "60s"
    assert tasks["publish"][0]["cachingOptions"] == {}  # enableCache absent: off


@pytest.mark.parametrize("name", ["run8_kfold.yaml", "run8_kfold-kfp2.5.yaml", "sweep_then_train.yaml"])
def test_tasks_that_read_the_dataset_or_the_output_store_are_never_cached(name):
    """KFP's cache key holds the URI, not what is behind it: a dataset re-pushed to the same URI
    (or checkpoints left by an earlier attempt) must be read again. Tasks fed only upstream
    artifacts may stay cached: a fresh upstream artifact is a cache miss."""
    from pipelines.compile import COMPILED_DIR

    spec = next(yaml.safe_load_all((COMPILED_DIR / name).read_text()))
    external = {"dataset_uri", "output_uri"}
    readers = {
        task_name: task
        for task_name, (task, executor) in _tasks(spec).items()  # containers: a sub-DAG's
        if executor and external & set(task.get("inputs", {}).get("parameters", {}))
    }  # tasks are checked inside
    assert {"validate-run", "prepare-dataset", "train", "publish"} <= set(readers) or name == "sweep_then_train.yaml"
    cached = sorted(n for n, task in readers.items() if task.get("cachingOptions", {}).get("enableCache"))
    assert cached == [], f"{name}: {cached} read external state yet are cached"
    split = _tasks(spec)["split-folds"][0]
    assert "dataset_uri" not in split["inputs"].get("parameters", {}) and split["cachingOptions"].get("enableCache")


def test_folds_fan_out_in_parallel_and_fan_in_with_collected(ir):
    spec, _ = ir
    tasks = _tasks(spec)
    loop, _ = tasks["for-loop-1"]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 5
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("choose-config-Output")
    loop_dag = spec["components"][loop["componentRef"]["name"]]
    assert set(loop_dag["dag"]["tasks"]) == {"train-2", "predict"}
    collected = loop_dag["dag"]["outputs"]["artifacts"]
    for key in PREDICTED:  # test and calibration words and maps of every fold reach the ensemble
        ens = tasks["ensemble"][0]["inputs"]["artifacts"][key]["taskOutputArtifact"]
        assert ens["producerTask"] == "for-loop-1" and ens["outputArtifactKey"] in collected
        (selector,) = collected[ens["outputArtifactKey"]]["artifactSelectors"]
        assert selector == {"outputArtifactKey": key, "producerSubtask": "predict"}
        assert spec["components"]["comp-ensemble"]["inputDefinitions"]["artifacts"][key]["isArtifactList"] is True
    calibration = {"componentInputParameter": "calibration"}  # one parameter: held out, predicted, chosen on
    assert tasks["split-folds"][0]["inputs"]["parameters"]["hold_out"] == calibration
    assert tasks["ensemble"][0]["inputs"]["parameters"]["calibration"] == calibration
    assert loop_dag["dag"]["tasks"]["predict"]["inputs"]["parameters"]["calibration"] == {
        "componentInputParameter": "pipelinechannel--calibration"
    }
    assert spec["root"]["inputDefinitions"]["parameters"]["calibration"]["defaultValue"] == "val"
    pub = tasks["publish"][0]["inputs"]["artifacts"]["models"]["taskOutputArtifact"]
    assert pub["producerTask"] == "for-loop-1" and pub["outputArtifactKey"] in collected
    assert spec["components"]["comp-ensemble"]["inputDefinitions"]["artifacts"]["predictions"]["isArtifactList"] is True


def test_compiled_pipeline_holds_no_credentials_and_one_pinned_image(ir):
    spec, _ = ir
    from components import DEFAULT_IMAGE

    images = {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}
    assert images == {DEFAULT_IMAGE} and ":" in DEFAULT_IMAGE and not DEFAULT_IMAGE.endswith(":latest")
    text = COMPILED.read_text()
    for key in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        assert f"{key}=" not in text and f"{key}:" not in text.replace(f"envVar: {key}", "").replace(
            f"secretKey: {key}", ""
        )
    assert "pip install" not in text  # pods need no network: kfp and receiptflow come with the image


# --------------------------------------------------------------------------- decision rule


@pytest.mark.parametrize(
    "hmean, outcome",
    [
        (0.9649, FALLBACK),
        (0.9650, ACCEPTABLE),
        (0.9659, ACCEPTABLE),
        (0.9660, SUCCESS),
        (0.96499999, FALLBACK),
        (0.999, SUCCESS),
        (0.0, FALLBACK),
    ],
)
def test_choose_config_rule_at_its_boundaries(hmean, outcome):
    assert decide(hmean, 0.966, 0.965) == outcome


def test_choose_config_component_writes_the_decision_and_the_fold_plan(tmp_path):
    from kfp.dsl import Markdown

    from components.choose_config import choose_config

    md = Markdown(name="decision", uri=str(tmp_path / "decision"))
    md.path = str(tmp_path / "decision.md")
    run8 = dict(
        run8_lr=SEED_DEFAULTS["run8_lr"],
        run8_weight_decay=SEED_DEFAULTS["run8_weight_decay"],
        run8_t_max=24,
        run8_eta_min=SEED_DEFAULTS["run8_eta_min"],
    )
    run3 = dict(
        run3_lr=SEED_DEFAULTS["run3_lr"],
        run3_weight_decay=SEED_DEFAULTS["run3_weight_decay"],
        run3_t_max=22,
        run3_eta_min=SEED_DEFAULTS["run3_eta_min"],
    )
    plan = choose_config.python_func(
        hmean=0.9649, success_hmean=0.966, acceptable_hmean=0.965, folds=5, decision=md, **run8, **run3
    )
    assert [p["fold"] for p in plan] == [0, 1, 2, 3, 4]
    assert {(p["config"], p["lr"], p["weight_decay"], p["t_max"], p["eta_min"]) for p in plan} == {
        ("run3", SEED_DEFAULTS["run3_lr"], SEED_DEFAULTS["run3_weight_decay"], 22, SEED_DEFAULTS["run3_eta_min"])
    }
    text = Path(md.path).read_text()
    assert "0.9649" in text and "fall back to Run 3" in text and "| Run 3 (chosen) | 0.0003845588887231477 |" in text
    plan = choose_config.python_func(
        hmean=0.9655, success_hmean=0.966, acceptable_hmean=0.965, folds=2, decision=md, **run8, **run3
    )
    assert {p["config"] for p in plan} == {"run8"} and plan[0]["lr"] == SEED_DEFAULTS["run8_lr"]
    assert "acceptable, Run 8 kept" in Path(md.path).read_text()


# ------------------------------------------------------------------------------- parameters


def test_params_are_typed_from_the_pipeline_signature():
    from pipelines.params import parse_params

    got = parse_params(
        [
            "epochs=3",
            "run8_lr=5e-4",
            "strict=true",
            "preset=cpu_tiny",
            'overrides=["a.b=1", "c=2"]',
            'node_selector={"gpu": "a100"}',
            "run_id=0123",
        ]
    )
    assert got == {
        "epochs": 3,
        "run8_lr": 0.0005,
        "strict": True,
        "preset": "cpu_tiny",
        "overrides": ["a.b=1", "c=2"],
        "node_selector": {"gpu": "a100"},
        "run_id": "0123",
    }
    assert isinstance(parse_params(["thresh=1"])["thresh"], float)


@pytest.mark.parametrize(
    "item, message",
    [
        ("epoch=3", "unknown pipeline parameter 'epoch'; did you mean epochs"),
        ("epochs=three", 'epochs="three": expected an integer'),
        ("epochs=2.5", "expected an integer"),
        ("strict=maybe", "expected true or false"),
        ("overrides=a=1", "expected a list"),
        ("epochs", "expected KEY=VALUE"),
    ],
)
def test_bad_params_are_clear_errors(item, message):
    from pipelines.params import parse_params

    with pytest.raises(DataError, match=message):
        parse_params([item])


def test_params_file_names_the_file_on_errors(tmp_path):
    from pipelines.params import load_params_file

    bad = tmp_path / "p.yaml"
    bad.write_text("epochs: 2\nmin_votes: 3\n")
    with pytest.raises(DataError, match=rf"{bad}: unknown pipeline parameter 'min_votes'; did you mean min_vote"):
        load_params_file(bad)
    assert load_params_file("demo")["preset"] == "cpu_tiny"  # pipelines/params/demo.yaml by name


# ---------------------------------------------------------------------------- local runs


TINY = [
    "--param",
    "preset=cpu_tiny",
    "--param",
    "epochs=1",
    "--param",
    "folds=2",
    "--param",
    "min_vote=1",
    "--param",
    'overrides=["dataset.batch_size=4", "dataset.num_workers=0", "trainer.eval_workers=0"]',
]
# Enough training for every model to detect words: on tiny_data's 32 train images (16 per fold) and
# batches of 2, cpu_tiny at lr 3e-3 reached val/hmean 0.83 (replication) and 0.64 / 0.65 (folds) after
# 8 epochs, the ensemble test/hmean 0.67 with 291 words on the 7 test images (2 cores, 6 min under
# load); 4 epochs or batches of 4 left the folds at 0.0 and the submission empty.
LEARNING = [
    "--param",
    "preset=cpu_tiny",
    "--param",
    "epochs=8",
    "--param",
    "folds=2",
    "--param",
    "min_vote=1",
    "--param",
    "run8_lr=0.003",
    "--param",
    "run3_lr=0.003",
    "--param",
    "run8_t_max=8",
    "--param",
    "run3_t_max=8",
    "--param",
    'overrides=["dataset.batch_size=2", "dataset.num_workers=0", "trainer.eval_workers=0"]',
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "data"
    proc = _cli("synth", "--out", str(out), "--n", "48", "--seed", "5", "--workers", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 150 s alone on 2 cores, 6 min with the cores shared
def test_local_run_end_to_end_publishes_to_s3(tiny_data, tmp_path, s3_server):
    """The whole pipeline through kfp.local, dataset read from and results published to a real S3
    server on loopback: a valid submission for exactly the test images, the ensemble, the decision."""
    from model.storage import download, upload
    from model.submission import check_submission, list_test_images

    upload(tiny_data, f"s3://{s3_server.bucket}/datasets/tiny", progress=False)
    proc = _cli(
        "pipeline",
        "run",
        "--local",
        "--data",
        f"s3://{s3_server.bucket}/datasets/tiny",
        "--output",
        f"s3://{s3_server.bucket}",
        "--pipeline-root",
        str(tmp_path / "kfp"),
        "--param",
        "run_id=e2e",
        *LEARNING,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "epoch=1 train/loss=" in out and "decision: replication val/hmean=" in out  # task logs stream through
    assert "[KFP Executor" not in out  # kfp's JSON dumps are filtered
    assert (
        "# Configuration decision" in out
        and "| fold_1 |" in out
        and f"s3://{s3_server.bucket}/runs/e2e/submission.csv" in out
    )
    # the ensemble's method was chosen on the val split, which no fold trained on; the table is in the run's output
    assert (
        "chosen on the val split (images no fold model trained on) among 23 candidates" in out
    )  # 15 maps, 6 votes, 2 folds
    assert "| **chosen** |" in out and "test/hmean: ensemble" in out
    (manifest,) = (tmp_path / "kfp").glob("*/split-folds/folds/folds.json")
    manifest = json.loads(manifest.read_text())
    assert manifest["held_out"] == "val" and set(manifest["sources"].values()) == {"train"}

    keys = {
        o.object_name for o in s3_server.client().list_objects(s3_server.bucket, prefix="runs/e2e/", recursive=True)
    }
    expected = (
        {"submission.csv", "ensemble.json", "decision.md", "summary.md"}
        | {
            f"models/{t}/{f}"
            for t in ("replication", "fold_0", "fold_1")
            for f in ("best.pt", "model.onnx", "metrics.jsonl", "summary.json")
        }
        | {"models/ensemble.json"}
        | {f"checkpoints/{t}/last.pt" for t in ("replication", "fold_0", "fold_1")}
    )
    assert expected <= {k.removeprefix("runs/e2e/") for k in keys}
    assert not [k for k in keys if ".receiptflow-tmp" in k]

    got = tmp_path / "got"
    download(f"s3://{s3_server.bucket}/runs/e2e/", got, progress=False)
    tests = list_test_images(tiny_data)
    assert check_submission(got / "submission.csv", tests).problems == []
    # a valid file is not enough: the trained models found words on every test image
    rows = list(csv.DictReader(io.StringIO((got / "submission.csv").read_text())))
    assert [r["filename"] for r in rows if not r["polygons"]] == [] and len(rows) == len(tests)
    hmean = float(re.search(r"test/hmean: ensemble \*\*([\d.]+)\*\*", (got / "summary.md").read_text()).group(1))
    assert hmean > 0.3  # measured 0.67
    assert set(json.loads((got / "ensemble.json").read_text())["images"]) == set(tests)
    assert "Replication (Run 8) val/hmean" in (got / "decision.md").read_text()
    # each published model also runs without its checkpoint: the .onnx predicts the test images through onnxruntime
    from model.predict import predict

    assert set(predict(got / "models" / "fold_1" / "model.onnx", tiny_data, split="test")) == set(tests)
    plan = json.loads((got / "models" / "ensemble.json").read_text())  # how to fuse them: the run's own choice
    assert (
        plan["chosen_on"] == "val" and plan["members"] and all((got / "models" / m).is_file() for m in plan["members"])
    )
    assert plan["method"] in ("maps", "boxes", "fold")
    summary = json.loads((got / "models" / "fold_1" / "summary.json").read_text())
    assert summary["fold"] == 1 and summary["preset"] == "cpu_tiny" and len(summary["history"]) == 8
    # every published model carries the post-processing its training chose on its own val split (model/tune.py)
    for t in ("replication", "fold_0", "fold_1"):
        tuned = load_checkpoint(got / "models" / t / "best.pt")["tuned"]
        assert tuned["split"].endswith("val") and set(tuned["postprocess"]) == {
            "thresh",
            "box_thresh",
            "unclip_ratio",
        }, t

    # the UI views: the ensemble's HTML page and the run summary are artifacts of the local run
    html = list((tmp_path / "kfp").glob("*/ensemble/view"))
    assert len(html) == 1 and html[0].read_text().count('<img src="data:image/jpeg;base64,') == min(
        4, len(tests)
    )  # model/report.py: max_images=4


@pytest.mark.slow
def test_local_run_with_a_local_output_folder_and_strict_bad_data_stops_first(tiny_data, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_data, bad)
    first = sorted((bad / "images" / "train").iterdir())[0]
    first.write_bytes(first.read_bytes()[:200])  # truncated JPEG
    proc = _cli(
        "pipeline",
        "run",
        "--local",
        "--data",
        str(bad),
        "--output",
        str(tmp_path / "out"),
        "--pipeline-root",
        str(tmp_path / "kfp"),
        "--param",
        "strict=true",
        *TINY,
        timeout=300,
    )
    assert proc.returncode == 2
    assert (
        f"strict mode and 1 problem(s): {bad}/jsons/train.json: image '{first.name}': cannot decode image"
        in proc.stdout
    )
    assert "Executing task \x1b[96m'train'" not in proc.stdout  # stopped before any training
    assert "pipeline run" in proc.stderr and "failed" in proc.stderr


@pytest.mark.parametrize(
    "params, message",
    [
        ({"run3_lr": -1.0}, "the run3 training would not start: models.optimizer.lr=-1.0: must be > 0"),
        ({"thresh": 1.5}, "models.head.postprocess.thresh=1.5: must lie between 0 and 1"),
        ({"overrides": ["trainer.max_epoch=3"]}, "trainer.max_epoch"),
        ({"preset": "run9"}, "run9"),
        ({"min_vote": 6}, "min_vote=6: must be between 1 and folds=5"),
        ({"folds": 1, "min_vote": 1}, "folds=1: K-fold training needs at least 2 folds"),
        ({"calibration": "test"}, "calibration='test': must be one of val, none"),
    ],
)
def test_a_run_that_would_fail_late_is_refused_before_it_starts(params, message):
    from pipelines.params import check_run

    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_run(params)


def test_submit_to_an_unreachable_endpoint_is_one_clear_error():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _cli("pipeline", "submit", "--host", f"http://127.0.0.1:{port}", "--param", "epochs=3", timeout=120)
    assert proc.returncode == 2
    assert f"http://127.0.0.1:{port}: cannot reach the KFP API" in proc.stderr and "Traceback" not in proc.stderr


def test_the_first_task_checks_the_parameters_and_the_dataset_before_any_work(ir, tmp_path):
    """On a cluster nobody ran `check_run` locally: validate_run is the first task, everything waits for it."""
    from components.validate_run import validate_run

    spec, _ = ir
    tasks = _tasks(spec)
    assert tasks["prepare-dataset"][0]["dependentTasks"] == ["validate-run"]
    assert "dependentTasks" not in tasks["validate-run"][0]
    good = {
        name: SEED_DEFAULTS.get(name)
        for name in ("preset", "epochs", "thresh", "box_thresh", "max_candidates", "folds", "min_vote")
    }
    good |= {k: v for k, v in SEED_DEFAULTS.items() if k.startswith(("run8_", "run3_"))}
    good |= {"ensemble_iou": 0.5, "overrides": [], "dataset_uri": str(tmp_path), "calibration": "none", "init_from": ""}
    with pytest.raises(DataError, match=rf"dataset_uri={tmp_path}: no dataset root there \(no jsons/train.json\)"):
        validate_run.python_func(**good)
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "train.json").write_text("{}")
    validate_run.python_func(**good)
    with pytest.raises(DataError, match=rf"dataset_uri={tmp_path}: no labelled val split to calibrate the ensemble on"):
        validate_run.python_func(**(good | {"calibration": "val"}))
    for bad, message in [
        ({"run8_t_max": 0}, "models.scheduler.T_max=0: must be > 0"),
        ({"overrides": ["dataset.image_sise=512"]}, "dataset.image_sise"),
        ({"min_vote": 9}, "min_vote=9: must be between 1 and folds=5"),
    ]:
        with pytest.raises(DataError, match=re.escape(message)):
            validate_run.python_func(**(good | bad))


def test_init_from_reaches_every_training_and_the_first_tasks_check(ir):
    """One pretrained checkpoint for the whole run: the replication and the fold loop's training take
    the run's init_from (the loop through its pipelinechannel), and validate_run checks it first."""
    spec, _ = ir
    assert spec["root"]["inputDefinitions"]["parameters"]["init_from"] == {
        "defaultValue": "",
        "isOptional": True,
        "parameterType": "STRING",
    }
    tasks = _tasks(spec)
    trainings = {n: t for n, (t, _) in tasks.items() if t["componentRef"]["name"].startswith("comp-train")}
    assert set(trainings) == {"train", "train-2"}
    for task in [*trainings.values(), tasks["validate-run"][0]]:
        assert task["inputs"]["parameters"]["init_from"]["componentInputParameter"] in (
            "init_from",
            "pipelinechannel--init_from",
        )
    loop = next(c for c in spec["components"].values() if "train-2" in c.get("dag", {}).get("tasks", {}))
    assert loop["inputDefinitions"]["parameters"]["pipelinechannel--init_from"]["parameterType"] == "STRING"


def test_init_from_is_a_config_override_that_the_runs_overrides_can_still_override():
    from components.common import training_args

    args = training_args("cpu_tiny", 1e-3, 0.0, 3, 1e-5, 3, 0.3, 0.25, 600, ["init_from=null"], " s3://b/pre/best.pt ")
    assert args.index("init_from=s3://b/pre/best.pt") < args.index("init_from=null")  # overrides come last and win
    assert not [a for a in training_args("cpu_tiny", 1e-3, 0.0, 3, 1e-5, 3, 0.3, 0.25, 600, []) if "init_from" in a]


def test_the_first_task_refuses_an_init_from_checkpoint_that_is_not_there(tmp_path, s3_server):
    from components.validate_run import validate_run

    good = {
        name: SEED_DEFAULTS.get(name)
        for name in ("preset", "epochs", "thresh", "box_thresh", "max_candidates", "folds", "min_vote")
    }
    good |= {k: v for k, v in SEED_DEFAULTS.items() if k.startswith(("run8_", "run3_"))}
    good |= {"ensemble_iou": 0.5, "overrides": [], "dataset_uri": str(tmp_path), "calibration": "none", "init_from": ""}
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "train.json").write_text("{}")
    validate_run.python_func(**good)
    uri = f"s3://{s3_server.bucket}/runs/pre/checkpoints/replication/best.pt"
    for missing in (str(tmp_path / "best.pt"), uri):
        with pytest.raises(
            DataError, match=re.escape(f"init_from={missing}: no such checkpoint; give the URI of a run's best.pt")
        ):
            validate_run.python_func(**(good | {"init_from": missing}))
    (tmp_path / "best.pt").write_bytes(b"weights")
    s3_server.client().put_object(s3_server.bucket, uri.split("/", 3)[3], io.BytesIO(b"weights"), 7)
    for there in (str(tmp_path / "best.pt"), uri):
        validate_run.python_func(**(good | {"init_from": there}))
    with pytest.raises(DataError, match=re.escape("init_part=all: expected one of model, encoder")):
        validate_run.python_func(**(good | {"init_from": uri, "overrides": ["init_part=all"]}))


# ------------------------------------------------------------------------- kfp.local retries


def _flaky(counter_dir: str, name: str, failures: int) -> str:
    """Fails its first `failures` attempts (counted in a file: every attempt is a new process)."""
    import pathlib

    counter = pathlib.Path(counter_dir) / name
    attempt = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempt))
    if attempt <= failures:
        raise RuntimeError(f"{name}: attempt {attempt} fails on purpose")
    return f"{name}: attempt {attempt}"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*non-Python base image")
def test_kfp_local_retries_a_failed_task_with_the_trainings_policy(tmp_path, capfd):
    """The trainings' policy (run8_kfold.retried, 1 s backoff instead of 60 s) through kfp.local as
    `pipeline run --local` drives it: a task that fails once is retried and the run succeeds, at the
    root and inside a ParallelFor (kfp.local's two orchestrators); one that keeps failing runs
    1 + TRAIN_RETRIES times, backing off 1 s, 2 s, 4 s (kfp 2.17.3 task_executor.py:132-175)."""
    from kfp import dsl, local

    from components import component
    from pipelines.run8_kfold import TRAIN_RETRIES, retried

    flaky = component(_flaky)
    counters = tmp_path / "counters"
    counters.mkdir()

    @dsl.pipeline(name="flaky-once")
    def once(counter_dir: str) -> str:
        first = retried(flaky(counter_dir=counter_dir, name="root", failures=1), backoff="1s")
        with dsl.ParallelFor(["a", "b"]) as item:
            retried(flaky(counter_dir=counter_dir, name=item, failures=1), backoff="1s").after(first)
        return first.output

    @dsl.pipeline(name="flaky-always")
    def always(counter_dir: str) -> str:
        return retried(flaky(counter_dir=counter_dir, name="always", failures=99), backoff="1s").output

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"), raise_on_error=True)
    assert once(counter_dir=str(counters)).output == "root: attempt 2"
    assert {p.name: p.read_text() for p in counters.iterdir()} == {"root": "2", "a": "2", "b": "2"}

    with pytest.raises(RuntimeError, match="flaky-always"):
        always(counter_dir=str(counters))
    assert (counters / "always").read_text() == str(1 + TRAIN_RETRIES)
    log = capfd.readouterr()
    waits = re.findall(r"Task flaky failed \(attempt (\d)/(\d)\)\. Retrying in ([\d.]+)s", log.out + log.err)
    assert [w for w in waits if w[1] == str(1 + TRAIN_RETRIES)][-TRAIN_RETRIES:] == [
        ("1", "4", "1.0"),
        ("2", "4", "2.0"),
        ("3", "4", "4.0"),
    ]

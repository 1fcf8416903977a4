"""Best-trial selection on generated Katib Trials (what Katib v0.19.0 makes of our Experiment,
built through the Katib API models: tests/katib_trials.py; not recorded from a cluster), the Experiment runner's progress line, and the
sweep_then_train pipeline that chains them to run8-kfold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.katib.trials import summarize, trial_from_katib, trial_parameters
from model.errors import DataError
from tests.katib_trials import NAMESPACE

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _items(name: str) -> list[dict]:
    data = json.loads((FIXTURES / name).read_text())
    return data["items"] if isinstance(data, dict) else data


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """Katib's Trial list over real HTTP on loopback (tests/kube_standin.py), reached by the real
    kubernetes client through a kubeconfig; set `cluster.items` to the Trials it holds."""
    from tests.kube_standin import TrialsApi, serving

    with serving(TrialsApi(), tmp_path, monkeypatch) as server:
        yield server


def _select(tmp_path, experiment="receiptflow-run8-sweep"):
    from kfp.dsl import Markdown

    from components.select_best_trial import select_best_trial

    md = Markdown(name="selection", uri=str(tmp_path / "selection"))
    md.path = str(tmp_path / "selection.md")
    return select_best_trial.python_func(
        experiment_name=experiment, namespace=NAMESPACE, objective="val/hmean", selection=md
    ), Path(md.path).read_text()


def test_the_early_stopped_best_trial_is_selected_with_full_precision_parameters(cluster, tmp_path):
    items = _items("katib_trials_early_stopped_best.json")
    cluster.items = items
    best, text = _select(tmp_path)
    raw = max(
        items,
        key=lambda o: float(next(m["max"] for m in o["status"]["observation"]["metrics"] if m["name"] == "val/hmean")),
    )
    assert best.trial == raw["metadata"]["name"]
    assert any(c["type"] == "EarlyStopped" and c["status"] == "True" for c in raw["status"]["conditions"])
    given = {p["name"]: p["value"] for p in raw["spec"]["parameterAssignments"]}
    assert (best.lr, best.weight_decay, best.t_max, best.eta_min) == (
        float(given["lr"]),
        float(given["weight_decay"]),
        int(given["T_max"]),
        float(given["eta_min"]),
    )
    assert f"**{best.trial}** (EarlyStopped)" in text


def test_failed_killed_and_running_trials_do_not_win(cluster, tmp_path):
    cluster.items = _items("katib_trials_failed_running.json")
    best, _ = _select(tmp_path)
    assert best.trial.endswith("e5done") and best.hmean == pytest.approx(0.9631)


def test_no_usable_trial_is_a_clear_error(cluster, tmp_path):
    cluster.items = _items("katib_trials_none_succeeded.json")
    with pytest.raises(DataError, match=r"no trial has a usable val/hmean"):
        _select(tmp_path)


def test_trial_parameters_need_every_hyperparameter():
    obj = _items("katib_trials_early_stopped_best.json")[0]
    obj["spec"]["parameterAssignments"] = [p for p in obj["spec"]["parameterAssignments"] if p["name"] != "eta_min"]
    with pytest.raises(DataError, match=r"no numeric eta_min among its parameters"):
        trial_parameters(trial_from_katib(obj))


def test_experiment_progress_line():
    status = {
        "trials": 12,
        "trialsSucceeded": 3,
        "trialsEarlyStopped": 8,
        "trialsFailed": 1,
        "currentOptimalTrial": {
            "observation": {"metrics": [{"name": "val/hmean", "latest": "0.9655", "max": "0.966"}]}
        },
    }
    assert summarize(status) == "12 trials, 3 succeeded, 8 earlystopped, 1 failed; best so far val/hmean=0.966"
    assert summarize({}) == "no trials yet"


def test_sweep_then_train_creates_the_rendered_experiment_then_feeds_the_best_trial_to_run8_kfold():
    from pipelines.compile import COMPILED_DIR
    from pipelines.sweep import experiment

    spec = next(yaml.safe_load_all((COMPILED_DIR / "sweep_then_train.yaml").read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"run-katib-experiment", "select-best-trial", "run8-kfold"}
    embedded = tasks["run-katib-experiment"]["inputs"]["parameters"]["experiment"]["runtimeValue"]["constant"]
    assert embedded == experiment(dataset_uri="@DATASET_URI@", output_uri="@OUTPUT_URI@", minio_secret="@MINIO_SECRET@")
    sweep_in = tasks["run-katib-experiment"]["inputs"]["parameters"]
    assert sweep_in["minio_secret"] == {
        "componentInputParameter": "minio_secret"
    }  # the run's Secret reaches the trials
    assert sweep_in["namespace"] == {"componentInputParameter": "namespace"}
    assert spec["root"]["inputDefinitions"]["parameters"]["namespace"]["defaultValue"] == ""  # the pod's own namespace
    feed = tasks["run8-kfold"]["inputs"]["parameters"]
    for param, output in (
        ("run8_lr", "lr"),
        ("run8_weight_decay", "weight_decay"),
        ("run8_t_max", "t_max"),
        ("run8_eta_min", "eta_min"),
    ):
        assert feed[param]["taskOutputParameter"] == {"producerTask": "select-best-trial", "outputParameterKey": output}
    select_in = tasks["select-best-trial"]["inputs"]["parameters"]
    for param, output in (
        ("experiment_name", "name"),
        ("namespace", "namespace"),
    ):  # the Experiment it created, where it is
        assert select_in[param]["taskOutputParameter"] == {
            "producerTask": "run-katib-experiment",
            "outputParameterKey": output,
        }

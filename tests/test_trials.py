"""components/katib/trials.py: Katib Trial objects, exports and the best-trial rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.katib.trials import (
    Trial,
    best_trial,
    list_trials,
    load_trials,
    rank_trials,
    status_from_conditions,
    trial_from_katib,
)
from model.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
KATIB_FIXTURES = [
    "katib_trials_early_stopped_best.json",
    "katib_trials_failed_running.json",
    "katib_trials_none_succeeded.json",
]


def _items(name: str) -> list[dict]:
    data = json.loads((FIXTURES / name).read_text())
    return data["items"] if isinstance(data, dict) else data


def _json_normal(d):
    """to_dict() gives datetimes; the cluster gives RFC 3339 strings ending in Z."""
    return json.loads(json.dumps(d, default=lambda o: o.isoformat().replace("+00:00", "Z")))


@pytest.mark.parametrize("name", KATIB_FIXTURES)
def test_fixtures_are_shaped_like_the_clusters_trials(name):
    from kubeflow_katib_api.models import V1beta1Trial

    items = _items(name)
    assert items
    for obj in items:
        # from_dict drops unknown fields: equality proves every field is a real Trial field
        assert _json_normal(V1beta1Trial.from_dict(obj).to_dict()) == obj
        assert obj["kind"] == "Trial" and obj["apiVersion"] == "kubeflow.org/v1beta1"


def test_fixtures_are_what_katib_makes_of_our_experiment():
    """Generated (tests/katib_trials.py), not recorded: the files are its output, rendered with the
    default image, and every Trial carries our Experiment's name, objective and StdOut filter."""
    import os
    import subprocess
    import sys

    from components import DEFAULT_IMAGE, IMAGE
    from model.metric_lines import KATIB_METRICS_FILTER
    from pipelines.sweep import NAME
    from tests.katib_trials import build

    if IMAGE == DEFAULT_IMAGE:
        built = json.loads(json.dumps(build()))
    else:  # RECEIPTFLOW_IMAGE set here: the fixtures hold the default image
        code = "import json, sys; from tests.katib_trials import build; json.dump(build(), sys.stdout)"
        env = {k: v for k, v in os.environ.items() if k != "RECEIPTFLOW_IMAGE"}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=FIXTURES.parents[1]
        )
        assert proc.returncode == 0, proc.stderr
        built = json.loads(proc.stdout)
    for name, data in built.items():
        assert json.loads((FIXTURES / name).read_text()) == data, f"{name}: rerun `python -m tests.katib_trials`"
    for name in KATIB_FIXTURES:
        for obj in _items(name):
            assert obj["metadata"]["labels"] == {"katib.kubeflow.org/experiment": NAME}
            assert obj["spec"]["metricsCollector"]["source"]["filter"]["metricsFormat"] == [KATIB_METRICS_FILTER]
            assert obj["spec"]["objective"]["objectiveMetricName"] == "val/hmean"


def test_trial_from_katib_reads_parameters_metrics_and_status():
    obj = next(o for o in _items("katib_trials_early_stopped_best.json") if o["metadata"]["name"].endswith("8hm3r5tw"))
    t = trial_from_katib(obj)
    assert t.name == "receiptflow-run8-sweep-8hm3r5tw"
    assert t.status == "EarlyStopped"
    assert t.parameters == {
        "lr": 0.0005134333170096499,
        "weight_decay": 6.797303101020006e-05,
        "T_max": 24.0,
        "eta_min": 6.388390006720873e-06,
    }
    assert t.metric == 0.9660
    # our Experiment's strategy for val/precision and val/recall is "latest": not their max (0.9731, 0.9601)
    assert t.metrics == {"val/hmean": 0.9660, "val/precision": 0.9712, "val/recall": 0.9583}


def test_metric_is_max_not_latest_and_falls_back_to_latest():
    obj = next(o for o in _items("katib_trials_failed_running.json") if o["metadata"]["name"].endswith("e5done"))
    assert trial_from_katib(obj).metric == 0.9631  # max 0.9631, latest 0.9625
    obj = json.loads(json.dumps(obj))
    m = obj["status"]["observation"]["metrics"][0]
    del m["max"]
    assert trial_from_katib(obj).metric == 0.9625
    m["latest"] = "unavailable"
    assert trial_from_katib(obj).metric is None


def test_status_is_the_last_true_condition():
    assert status_from_conditions([]) == "Pending"
    assert status_from_conditions([{"type": "Created", "status": "True"}]) == "Pending"
    assert (
        status_from_conditions([{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}])
        == "Running"
    )
    assert (
        status_from_conditions(
            [
                {"type": "Created", "status": "True"},
                {"type": "Running", "status": "False"},
                {"type": "Succeeded", "status": "True"},
            ]
        )
        == "Succeeded"
    )
    assert (
        status_from_conditions(
            [
                {"type": "Created", "status": "True"},
                {"type": "Running", "status": "False"},
                {"type": "Killed", "status": "True"},
            ]
        )
        == "Killed"
    )


def test_best_is_the_early_stopped_trial_that_beats_the_succeeded_ones():
    trials = load_trials(FIXTURES / "katib_trials_early_stopped_best.json")  # kubectl get trials -o json
    assert len(trials) == 4
    best = best_trial(trials)
    assert best.name == "receiptflow-run8-sweep-8hm3r5tw" and best.status == "EarlyStopped"
    assert best.metric > max(t.metric for t in trials if t.status == "Succeeded")


def test_best_skips_failed_killed_and_counts_running():
    trials = load_trials(FIXTURES / "katib_trials_failed_running.json")  # a plain list of Trials
    by = {t.name.rsplit("-", 1)[1]: t for t in trials}
    assert by["a1failed"].status == "Failed" and by["a1failed"].metric is None
    assert by["c3killed"].status == "Killed" and by["c3killed"].metric == 0.9702
    assert by["d4running"].status == "Running"
    best = best_trial(trials)
    assert best.name.endswith("e5done")  # the killed trial's 0.9702 does not count
    assert [t.name.rsplit("-", 1)[1] for t in rank_trials(trials)] == ["e5done", "f6done", "d4running"]


def test_no_usable_trial_is_a_clear_error():
    trials = load_trials(FIXTURES / "katib_trials_none_succeeded.json")
    assert {t.status for t in trials} == {"Failed", "MetricsUnavailable"}
    with pytest.raises(DataError, match=r"among 3 trial\(s\) \(2 Failed, 1 MetricsUnavailable; 3 without a metric\)"):
        best_trial(trials)


def test_best_minimize_and_ties_go_to_the_earlier_name():
    ts = [
        Trial("run10", {}, 0.5, "Succeeded"),
        Trial("run2", {}, 0.5, "EarlyStopped"),
        Trial("run3", {}, 0.7, "Succeeded"),
    ]
    assert best_trial(ts, maximize=False).name == "run2"  # natural order: run2 before run10
    assert best_trial(ts).name == "run3"


def test_load_seed_csv():
    trials = load_trials(FIXTURES / "seed_sweep.csv")
    assert len(trials) == 12
    run8 = next(t for t in trials if t.name == "run8")
    assert run8.status == "EarlyStopped" and run8.metric == 0.9660
    assert run8.parameters == {
        "lr": 0.0005134333170096499,
        "weight_decay": 6.797303101020006e-05,
        "T_max": 24.0,
        "eta_min": 6.388390006720873e-06,
    }
    assert sum(t.status == "Succeeded" for t in trials) == 3


def test_csv_curve_and_bad_rows(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("name,status,metric,lr,curve\na,Succeeded,0.9,0.001,0.5;0.8;0.9\nb,완료,,0.002,\n")
    a, b = load_trials(p)
    assert a.curve == [0.5, 0.8, 0.9] and a.parameters == {"lr": 0.001}
    assert b.status == "Succeeded" and b.metric is None and b.curve is None
    p.write_text("name,status,metric,lr\na,Succeeded,0.9,0.001\nb,Succeeded,high,0.002\n")
    with pytest.raises(DataError, match=r"s\.csv: row 3 \(b\): metric 'high' is not a number"):
        load_trials(p)
    p.write_text("name,status,metric,lr\na,Exploded,0.9,0.001\n")
    with pytest.raises(DataError, match=r"s\.csv: row 2 \(a\): unknown status 'Exploded'"):
        load_trials(p)
    p.write_text("name,metric,lr\na,0.9,0.001\n")
    with pytest.raises(DataError, match=r"s\.csv: missing column\(s\) status"):
        load_trials(p)


def test_flat_json_records(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(
        json.dumps(
            [
                {
                    "name": "a",
                    "parameters": {"lr": "0.001", "opt": "adam"},
                    "metric": 0.91,
                    "status": "EarlyStopped",
                    "curve": [0.5, 0.91],
                }
            ]
        )
    )
    (t,) = load_trials(p)
    assert t.parameters == {"lr": 0.001, "opt": "adam"} and t.curve == [0.5, 0.91] and t.status == "EarlyStopped"
    p.write_text(json.dumps([{"name": "a", "metric": 0.9}, {"metric": 0.8}]))
    with pytest.raises(DataError, match=r"t\.json: item 1"):
        load_trials(p)


@pytest.fixture
def trials_api(tmp_path, monkeypatch):
    """Katib's Trial list over real HTTP on loopback; KUBECONFIG points the real kubernetes client at it."""
    from tests.kube_standin import TrialsApi, serving

    with serving(TrialsApi(), tmp_path, monkeypatch) as server:
        yield server


def test_list_trials_queries_katib_by_experiment_label(trials_api):
    from tests.katib_trials import NAMESPACE

    items = _items("katib_trials_early_stopped_best.json")
    other = json.loads(json.dumps(items[0]))
    other["metadata"]["labels"]["katib.kubeflow.org/experiment"] = "another-sweep"
    other["metadata"]["name"] = "another-sweep-1"
    trials_api.items = items + [other]
    trials = list_trials("receiptflow-run8-sweep", NAMESPACE)
    assert trials_api.requests == [
        (
            f"/apis/kubeflow.org/v1beta1/namespaces/{NAMESPACE}/trials",
            {"labelSelector": "katib.kubeflow.org/experiment=receiptflow-run8-sweep"},
        )
    ]
    assert [t.name for t in trials] == sorted(o["metadata"]["name"] for o in items)


def test_list_trials_error_names_the_experiment(trials_api):
    trials_api.refuse = 403
    with pytest.raises(DataError, match=r"kubeflow-user/my-exp: HTTP 403 Forbidden"):
        list_trials("my-exp", "kubeflow-user")


def test_an_experiment_without_trials_names_the_kubectl_command(trials_api):
    with pytest.raises(DataError, match=r"kubeflow-user/my-exp: no Trials .*kubectl -n kubeflow-user get experiments"):
        list_trials("my-exp", "kubeflow-user")


def test_the_katib_helpers_import_inside_a_running_task():
    """Component bodies import them at run time, where kfp's runtime-only `kfp.dsl` (_KFP_RUNTIME=true)
    cannot build pipelines: they must import there, and never pipelines/*."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, components.kube, components.katib.trials, components.katib.experiments; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'pipelines'); print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        env={**os.environ, "_KFP_RUNTIME": "true"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

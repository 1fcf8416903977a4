"""The Katib Trial fixtures (tests/fixtures/katib_trials_*.json): generated, not recorded from a
cluster. Each Trial is what Katib v0.19.0's experiment controller makes of our rendered Experiment
(pipelines/sweep.py, its real name, objective, metric strategies, StdOut filter
`model.metric_lines.KATIB_METRICS_FILTER` and trial template): getTrialInstance,
pkg/controller.v1beta1/experiment/experiment_controller_util.go:39-95 at v0.19.0, copies the
objective, metrics collector, primary container, success/failure conditions and `retain`, and
renders the run spec with the trial's parameter assignments. Built through kubeflow-katib-api's
V1beta1Trial models (which mirror Katib's Go types; the Trial CRD itself has no schema at v0.19.0:
manifests/v1beta1/components/crd/trial.yaml is `x-kubernetes-preserve-unknown-fields: true`).

The scenarios (parameter values, outcomes, metric values) are made up to exercise the best-trial
rule; tests/test_trials.py checks that the files are what this module writes.

    python -m tests.katib_trials      # rewrite the fixtures
"""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NAMESPACE = "kubeflow-user-example-com"
EXPERIMENT_UID = "6f1c2a9e-0b8d-4d7e-9a51-3c2f7d1e8b40"
CREATED, EARLY, DONE = "2026-02-02T04:01:12Z", "2026-02-02T06:02:40Z", "2026-02-02T08:15:03Z"
# the Experiment webhook's defaults for a batch/v1 Job trial (pkg/apis/controller/experiments/v1beta1/
# constants.go:27,30 at v0.19.0), which the Trial inherits when the template sets none
JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
# medianstop's rule for every trial after min_trials_required (katib pkg/earlystopping/v1beta1/medianstop/service.py)
EARLY_STOPPING_RULES = [{"name": "val/hmean", "value": "0.9612", "comparison": "less", "startStep": 10}]

# outcome -> (condition type, reason, message, end time); the reasons and messages are Katib's
# (pkg/controller.v1beta1/trial/trial_controller_util.go and util/status_util.go at v0.19.0)
OUTCOMES = {
    "Succeeded": ("Succeeded", "TrialSucceeded", "Trial has succeeded", DONE),
    "EarlyStopped": ("EarlyStopped", "TrialEarlyStopped", "Trial is early stopped", EARLY),
    "Failed": (
        "Failed",
        "TrialFailed",
        "Trial has failed. Job message: Job has reached the specified backoff limit",
        EARLY,
    ),
    "FailedOOM": ("Failed", "TrialFailed", "Trial has failed. Job message: Pod OOMKilled", EARLY),
    "Killed": ("Killed", "TrialKilled", "Trial has been killed", EARLY),
    "MetricsUnavailable": ("MetricsUnavailable", "MetricsUnavailable", "Metrics are not available", EARLY),
    "Running": (None, None, None, None),
}
PRECISION, RECALL = ("0.9712", "0.9731", "0.9012"), ("0.9583", "0.9601", "0.8855")  # latest, max, min

# file -> (a `kubectl get trials -o json` List or a plain list, [(name suffix, (lr, weight_decay, T_max,
# eta_min), outcome, val/hmean (latest, max, min) or None or "unavailable")])
SCENARIOS = {
    "katib_trials_early_stopped_best.json": (
        "List",
        [
            (
                "4xk2pq7z",
                ("0.0003845588887231477", "0.00013939498132089153", "22", "1.8596851896215065e-05"),
                "Succeeded",
                ("0.9647", "0.9647", "0.9011"),
            ),
            (
                "8hm3r5tw",
                ("0.0005134333170096499", "6.797303101020006e-05", "24", "6.388390006720873e-06"),
                "EarlyStopped",
                ("0.9660", "0.9660", "0.9034"),
            ),
            ("c9vb2n6s", ("0.00041117", "0.00012301", "22", "1.8811e-05"), "Succeeded", ("0.9629", "0.9629", "0.8977")),
            (
                "q2w7e4ra",
                ("0.00027912", "7.0133e-05", "24", "6.3801e-06"),
                "EarlyStopped",
                ("0.9561", "0.9564", "0.8802"),
            ),
        ],
    ),
    "katib_trials_failed_running.json": (
        "list",
        [
            ("a1failed", ("0.00059", "0.00049", "20", "4.9e-05"), "Failed", None),
            ("b2failed", ("0.00026", "0.00045", "22", "4.1e-05"), "FailedOOM", None),
            ("c3killed", ("0.00050", "6.1e-05", "24", "6.0e-06"), "Killed", ("0.9702", "0.9702", "0.9100")),
            ("d4running", ("0.00044", "0.000116", "24", "1.66e-05"), "Running", ("0.9581", "0.9581", "0.8803")),
            ("e5done", ("0.000396", "8.0e-05", "22", "1.93e-05"), "Succeeded", ("0.9625", "0.9631", "0.8990")),
            ("f6done", ("0.000413", "0.000134", "20", "1.94e-05"), "Succeeded", ("0.9623", "0.9623", "0.8950")),
        ],
    ),
    "katib_trials_none_succeeded.json": (
        "List",
        [
            ("x1", ("0.00059", "0.00049", "20", "4.9e-05"), "Failed", None),
            ("x2", ("0.00031", "0.00021", "22", "2.2e-05"), "MetricsUnavailable", "unavailable"),
            ("x3", ("0.00027", "0.00033", "24", "3.0e-05"), "FailedOOM", None),
        ],
    ),
}


def _experiment() -> dict:
    from pipelines.sweep import experiment

    body = experiment(
        dataset_uri="s3://receiptflow/datasets/receipts",
        output_uri="s3://receiptflow",
        minio_secret="receiptflow-minio",
    )
    body["metadata"]["namespace"] = NAMESPACE
    return body


def _run_spec(template: dict, name: str, assignments: dict[str, str]) -> dict:
    """The trial template with `${trialParameters.X}` replaced (katib GetRunSpecWithHyperParameters)."""
    text = json.dumps(template["trialSpec"])
    for p in template["trialParameters"]:
        ref = p["reference"]
        value = name if ref == "${trialSpec.Name}" else assignments[ref]
        text = text.replace("${trialParameters.%s}" % p["name"], value)
    spec = json.loads(text)
    spec["metadata"] = {"name": name, "namespace": NAMESPACE}
    return spec


def trial(exp: dict, suffix: str, values: tuple[str, ...], outcome: str, hmean) -> dict:
    from kubeflow_katib_api.models import V1beta1Trial

    spec, template = exp["spec"], exp["spec"]["trialTemplate"]
    name = f"{exp['metadata']['name']}-{suffix}"
    assignments = dict(zip([p["name"] for p in spec["parameters"]], values))
    conditions = [
        {
            "type": "Created",
            "status": "True",
            "reason": "TrialCreated",
            "message": "Trial is created",
            "lastUpdateTime": CREATED,
            "lastTransitionTime": CREATED,
        }
    ]
    kind, reason, message, end = OUTCOMES[outcome]
    status = {"startTime": CREATED, "conditions": conditions}
    if kind is None:
        conditions.append(
            {
                "type": "Running",
                "status": "True",
                "reason": "TrialRunning",
                "message": "Trial is running",
                "lastUpdateTime": CREATED,
                "lastTransitionTime": CREATED,
            }
        )
        status["lastReconcileTime"] = CREATED
    else:
        conditions += [
            {
                "type": "Running",
                "status": "False",
                "reason": "TrialRunning",
                "message": "Trial is not running",
                "lastUpdateTime": end,
                "lastTransitionTime": end,
            },
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastUpdateTime": end,
                "lastTransitionTime": end,
            },
        ]
        status |= {"completionTime": end, "lastReconcileTime": end}
    if hmean == "unavailable":
        status["observation"] = {
            "metrics": [{"name": spec["objective"]["objectiveMetricName"], "latest": hmean, "max": hmean, "min": hmean}]
        }
    elif hmean is not None:
        names = [spec["objective"]["objectiveMetricName"], *spec["objective"]["additionalMetricNames"]]
        status["observation"] = {
            "metrics": [
                {"name": n, "latest": v[0], "max": v[1], "min": v[2]} for n, v in zip(names, (hmean, PRECISION, RECALL))
            ]
        }
    obj = {
        "apiVersion": exp["apiVersion"],
        "kind": "Trial",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": CREATED,
            "generation": 1,
            "finalizers": ["clean-metrics-in-db"],
            "labels": {"katib.kubeflow.org/experiment": exp["metadata"]["name"]},
            "ownerReferences": [
                {
                    "apiVersion": exp["apiVersion"],
                    "kind": "Experiment",
                    "name": exp["metadata"]["name"],
                    "uid": EXPERIMENT_UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "objective": spec["objective"],
            "parameterAssignments": [{"name": k, "value": v} for k, v in assignments.items()],
            "earlyStoppingRules": EARLY_STOPPING_RULES,
            "runSpec": _run_spec(template, name, assignments),
            "retainRun": template["retain"],
            "metricsCollector": spec["metricsCollectorSpec"],
            "primaryContainerName": template["primaryContainerName"],
            "successCondition": template.get("successCondition", JOB_SUCCESS),
            "failureCondition": template.get("failureCondition", JOB_FAILURE),
        },
        "status": status,
    }
    model = V1beta1Trial.from_dict(obj)  # Katib's types: an unknown or misspelled field is dropped, a wrong type raises
    return json.loads(json.dumps(model.to_dict(), default=lambda o: o.isoformat().replace("+00:00", "Z")))


def build() -> dict[str, object]:
    exp = _experiment()
    out = {}
    for file, (shape, rows) in SCENARIOS.items():
        items = [trial(exp, *row) for row in rows]
        out[file] = (
            {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
            if shape == "List"
            else items
        )
    return out


def text(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    for file, data in build().items():
        (FIXTURES / file).write_text(text(data), encoding="utf-8")
        print(f"wrote {FIXTURES / file}")

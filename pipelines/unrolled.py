"""The fan-in components in the form a KFP 2.5 backend can feed: one input per fold, no lists.

The kfp-2.14 build hands `ensemble` and `publish` the folds' outputs through `dsl.Collected` of a
ParallelFor, which the backend resolves only from 2.14.0 on (PR #11725). The 2.5.0 driver skips
ParallelFor DAGs when it looks up an upstream task (backend/src/v2/driver/driver.go:1764-1772 at
2.5.0) and resolves every input artifact to exactly one artifact (driver.go:2002-2004; of several
artifact selectors the last wins, 1969-1975), and the SDK refuses a Python list of task outputs
for an `Input[List[Artifact]]`. So the kfp-2.5 build unrolls the folds and uses these wrappers:
the same names (the UI shows the same components), one artifact input per fold, and a body that
calls the real component's function with the list. `choose_config` also returns the chosen
hyperparameters as scalars for the unrolled folds (a loop-free pipeline cannot index the plan).
Their signatures spell out DEFAULT_FOLDS inputs: `FOLDS` below is checked against it when the
kfp-2.5 pipeline is built.
"""

import inspect
from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components import component


@component
def choose_config(
    hmean: float,
    success_hmean: float,
    acceptable_hmean: float,
    run8_lr: float,
    run8_weight_decay: float,
    run8_t_max: int,
    run8_eta_min: float,
    run3_lr: float,
    run3_weight_decay: float,
    run3_t_max: int,
    run3_eta_min: float,
    folds: int,
    decision: Output[Markdown],
) -> NamedTuple("Chosen", [("config", str), ("lr", float), ("weight_decay", float), ("t_max", int), ("eta_min", float)]):
    """components.choose_config's rule and decision; returns the chosen config's hyperparameters."""
    from collections import namedtuple

    from components.choose_config import choose_config as rule

    rule = getattr(rule, "python_func", rule)  # the plain function inside a running task (components.component)
    plan = rule(hmean=hmean, success_hmean=success_hmean, acceptable_hmean=acceptable_hmean, run8_lr=run8_lr,
                run8_weight_decay=run8_weight_decay, run8_t_max=run8_t_max, run8_eta_min=run8_eta_min, run3_lr=run3_lr,
                run3_weight_decay=run3_weight_decay, run3_t_max=run3_t_max, run3_eta_min=run3_eta_min, folds=folds,
                decision=decision)
    chosen = plan[0]  # every fold of the plan has the same config
    return namedtuple("Chosen", "config lr weight_decay t_max eta_min")(
        chosen["config"], chosen["lr"], chosen["weight_decay"], chosen["t_max"], chosen["eta_min"])


@component
def ensemble(
    predictions_0: Input[Artifact],
    predictions_1: Input[Artifact],
    predictions_2: Input[Artifact],
    predictions_3: Input[Artifact],
    predictions_4: Input[Artifact],
    maps_0: Input[Artifact],
    maps_1: Input[Artifact],
    maps_2: Input[Artifact],
    maps_3: Input[Artifact],
    maps_4: Input[Artifact],
    calibration_predictions_0: Input[Artifact],
    calibration_predictions_1: Input[Artifact],
    calibration_predictions_2: Input[Artifact],
    calibration_predictions_3: Input[Artifact],
    calibration_predictions_4: Input[Artifact],
    calibration_maps_0: Input[Artifact],
    calibration_maps_1: Input[Artifact],
    calibration_maps_2: Input[Artifact],
    calibration_maps_3: Input[Artifact],
    calibration_maps_4: Input[Artifact],
    dataset: Input[Dataset],
    calibration: str,
    min_vote: int,
    iou: float,
    thresh: float,
    box_thresh: float,
    fused: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    view: Output[HTML],
) -> str:
    """components.ensemble on the folds' test and calibration predictions and maps, one input per fold."""
    from components.ensemble import ensemble as fan_in

    fan_in = getattr(fan_in, "python_func", fan_in)  # the plain function inside a running task (components.component)
    return fan_in(predictions=[predictions_0, predictions_1, predictions_2, predictions_3, predictions_4],
                  maps=[maps_0, maps_1, maps_2, maps_3, maps_4],
                  calibration_predictions=[calibration_predictions_0, calibration_predictions_1, calibration_predictions_2,
                                           calibration_predictions_3, calibration_predictions_4],
                  calibration_maps=[calibration_maps_0, calibration_maps_1, calibration_maps_2, calibration_maps_3,
                                    calibration_maps_4],
                  dataset=dataset, calibration=calibration, min_vote=min_vote, iou=iou, thresh=thresh,
                  box_thresh=box_thresh, fused=fused, metrics=metrics, report=report, view=view)


@component
def publish(
    submission: Input[Artifact],
    fused: Input[Artifact],
    replication: Input[Model],
    models_0: Input[Model],
    models_1: Input[Model],
    models_2: Input[Model],
    models_3: Input[Model],
    models_4: Input[Model],
    decision: Input[Markdown],
    data_report: Input[Markdown],
    ensemble_metrics: Input[Metrics],
    ensemble_report: Input[Markdown],
    output_uri: str,
    run_id: str,
    job_id: str,
    summary: Output[Markdown],
) -> str:
    """components.publish with the fold models, one input per fold."""
    from components.publish import publish as fan_in

    fan_in = getattr(fan_in, "python_func", fan_in)  # the plain function inside a running task (components.component)
    return fan_in(submission=submission, fused=fused, replication=replication,
                  models=[models_0, models_1, models_2, models_3, models_4], decision=decision, data_report=data_report,
                  ensemble_metrics=ensemble_metrics, ensemble_report=ensemble_report, output_uri=output_uri, run_id=run_id,
                  job_id=job_id, summary=summary)


def _per_fold(func, prefix: str) -> int:
    return sum(name.startswith(prefix) for name in inspect.signature(func).parameters)


FOLDS = _per_fold(ensemble.python_func, "predictions_")
assert all(FOLDS == _per_fold(ensemble.python_func, prefix) for prefix in ("maps_", "calibration_predictions_", "calibration_maps_")), \
    "ensemble must take every per-fold input once per fold"
assert FOLDS == _per_fold(publish.python_func, "models_"), "ensemble and publish must take the same number of folds"

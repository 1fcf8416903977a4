"""select_best_trial: a finished Katib Experiment's best trial by absolute metric, early-stopped
trials included (the seed's lesson, docs/design.md §1), as the replication's hyperparameters."""

from typing import NamedTuple

from kfp.dsl import Markdown, Output

from components import component


@component
def select_best_trial(experiment_name: str, namespace: str, objective: str, selection: Output[Markdown]) -> NamedTuple(
    "BestTrial",
    [("trial", str), ("hmean", float), ("lr", float), ("weight_decay", float), ("t_max", int), ("eta_min", float)],
):
    """Read the Experiment's Trials in `namespace` (empty: the pod's own, as run_katib_experiment
    defaults it); pick the best by `objective` (maximize), early-stopped ones included, failed ones
    and ones without metrics excluded (none left: a clear error)."""
    from collections import namedtuple

    from components.katib.trials import best_trial, list_trials, trial_parameters
    from components.kube import default_namespace
    from model.report import table

    namespace = default_namespace(namespace)
    trials = list_trials(experiment_name, namespace)
    best = best_trial(trials, objective=objective)
    lr, weight_decay, t_max, eta_min = trial_parameters(best)
    rows = sorted(((t.name, t.status, t.metric) for t in trials if t.metric is not None), key=lambda r: -r[2])
    with open(selection.path, "w", encoding="utf-8") as f:
        f.write(
            f"# Best trial of `{namespace}/{experiment_name}`\n\n**{best.name}** ({best.status}): {objective} = "
            f"{best.metric!r}\n\nlr={lr!r} weight_decay={weight_decay!r} T_max={t_max} eta_min={eta_min!r}\n\n"
            + table(("trial", "status", objective), rows)
            + "\n"
        )
    print(
        f"best trial {best.name} ({best.status}) {objective}={best.metric!r}: lr={lr!r} weight_decay={weight_decay!r} "
        f"T_max={t_max} eta_min={eta_min!r}",
        flush=True,
    )
    return namedtuple("BestTrial", ["trial", "hmean", "lr", "weight_decay", "t_max", "eta_min"])(
        best.name, best.metric, lr, weight_decay, t_max, eta_min
    )

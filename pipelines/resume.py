"""`--resume RUN_ID`: start run8_kfold again under the run id of a run that failed, so that every
training restores its mirrored checkpoint (`<output_uri>/runs/<RUN_ID>/checkpoints/<task>/last.pt`,
components/common.py `run_prefix`, model/train.py `_restore_mirror`) and loses at most one epoch.

This is the recovery that works on every backend. Retry policies do not cover it: KFP backends up
to 2.3 ignore them, 2.4-2.5 retry only root-DAG tasks (not the folds in the ParallelFor), and Argo's
default policy never retries a pod that was deleted (preemption, eviction, node drain) — see
docs/fault-tolerance.md. A run without an explicit `run_id` publishes under the KFP run's id, so
`--resume <KFP run id>` finds its checkpoints."""

from __future__ import annotations

from typing import Any, Callable

from model.errors import DataError


def with_run_id(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """`params` with run_id=`run_id`; a different run_id already there (--param, --params-file) is an error."""
    from components.common import run_prefix

    try:
        run_prefix("x", run_id, "")
    except ValueError as exc:
        raise DataError(f"--resume {run_id!r}: {exc}") from None
    given = params.get("run_id")
    if given not in (None, "", run_id):
        raise DataError(f"--resume {run_id} conflicts with run_id={given}: --resume sets run_id; drop one of them")
    return {**params, "run_id": run_id}


def checkpointed(output_uri: str, run_id: str, folds: int) -> list[str]:
    """The trainings of run `run_id` (replication, fold_0, ...) that have a checkpoint to resume from."""
    from components.common import REPLICATION, run_prefix, task_name
    from model.storage import exists

    prefix = run_prefix(output_uri, run_id, "")
    tasks = [task_name(REPLICATION)] + [task_name(i) for i in range(folds)]
    return [t for t in tasks if exists(f"{prefix}/checkpoints/{t}/last.pt")]


def check_resumable(params: dict[str, Any], *, warn: Callable[[str], None] | None = None) -> None:
    """Refuse a resume that would find no checkpoint at all (a mistyped id would silently retrain from
    scratch, hours of GPU time); print which trainings will resume. `params` are complete (defaults
    filled in). With `warn`, a store this machine cannot reach (a laptop submitting to a cluster
    whose MinIO is in-cluster only) is a warning, not an error: the run itself will tell."""
    run_id, output_uri = params["run_id"], params["output_uri"]
    prefix = f"{output_uri.rstrip('/')}/runs/{run_id}"
    try:
        found = checkpointed(output_uri, run_id, int(params["folds"]))
    except DataError as exc:
        if warn is None:
            raise
        warn(f"warning: cannot check {prefix}/checkpoints/ from here ({exc}); submitting the resume anyway")
        return
    if not found:
        raise DataError(
            f"--resume {run_id}: no checkpoint under {prefix}/checkpoints/ (no <task>/last.pt), "
            "so nothing would resume. Check the run id (the run_id the run was given, else its KFP run "
            "id) and output_uri; to start over under this id on purpose, pass --param run_id=" + run_id
        )
    print(f"resuming run {run_id} from {prefix}/checkpoints/: {', '.join(found)}", flush=True)

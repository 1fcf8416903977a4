"""What several components share: where a run's files live and how a task names its split.

Imported inside component bodies (they run where the receiptflow package is installed)."""

REPLICATION = -1  # the `fold` of the replication training: the dataset root's own train/val split


def run_prefix(output_uri: str, run_id: str, job_id: str) -> str:
    """``<output_uri>/runs/<run id>``: `run_id` when given, else the KFP run's own id.

    Training checkpoints are mirrored under it, so a retried pod (same run) resumes; give the same
    `run_id` to a new run to resume an interrupted one."""
    run = (run_id or job_id).strip()
    if not run or "/" in run or run in (".", ".."):
        raise ValueError(f"run id {run!r}: expected a plain name (letters, digits, '-', '_')")
    return f"{output_uri.rstrip('/')}/runs/{run}"


def task_name(fold: int) -> str:
    return "replication" if int(fold) == REPLICATION else f"fold_{int(fold)}"


def training_args(preset: str, lr: float, weight_decay: float, t_max: int, eta_min: float, epochs: int,
                  thresh: float, box_thresh: float, max_candidates: int, overrides=()) -> list[str]:
    """`receiptflow train` arguments for the pipeline's hyperparameters (floats at full precision);
    `overrides` come last and win."""
    return [
        f"preset={preset}",
        f"models.optimizer.lr={lr!r}",
        f"models.optimizer.weight_decay={weight_decay!r}",
        f"models.scheduler.T_max={t_max}",
        f"models.scheduler.eta_min={eta_min!r}",
        f"trainer.max_epochs={epochs}",
        f"models.head.postprocess.thresh={thresh!r}",
        f"models.head.postprocess.box_thresh={box_thresh!r}",
        f"models.head.postprocess.max_candidates={max_candidates}",
        *overrides,
    ]


def split_overrides(dataset_path: str, folds_path: str, fold: int) -> list[str]:
    """Config overrides that point a run at the artifact's dataset root, and at fold `fold`."""
    fold = int(fold)
    args = [f"dataset.root={dataset_path}"]
    if fold == REPLICATION:
        return args + ["dataset.folds=null", "dataset.fold=null"]
    return args + [f"dataset.folds={folds_path}", f"dataset.fold={fold}"]


SUCCESS, ACCEPTABLE, FALLBACK = "success", "acceptable", "fallback"


def decide(hmean: float, success_hmean: float = 0.966, acceptable_hmean: float = 0.965) -> str:
    """The seed's rule (report §7.1) on the Run 8 replication's val/hmean: success when
    hmean >= success_hmean, acceptable when >= acceptable_hmean (Run 8 kept either way), else
    fallback (Run 3). Thresholds compare exactly: 0.965 is acceptable, 0.96499 is not."""
    if not acceptable_hmean <= success_hmean:
        raise ValueError(f"acceptable_hmean={acceptable_hmean} must not exceed success_hmean={success_hmean}")
    if hmean >= success_hmean:
        return SUCCESS
    if hmean >= acceptable_hmean:
        return ACCEPTABLE
    return FALLBACK

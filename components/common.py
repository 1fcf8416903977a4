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


def training_args(
    preset: str,
    lr: float,
    weight_decay: float,
    t_max: int,
    eta_min: float,
    epochs: int,
    thresh: float,
    box_thresh: float,
    max_candidates: int,
    overrides=(),
    init_from: str = "",
) -> list[str]:
    """`receiptflow train` arguments for the pipeline's hyperparameters (floats at full precision);
    `init_from` (a checkpoint URI, "" none) as the config's init_from; `overrides` come last and win."""
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
        *([f"init_from={init_from.strip()}"] if init_from.strip() else []),
        *overrides,
    ]


def split_overrides(dataset_path: str, folds_path: str, fold: int) -> list[str]:
    """Config overrides that point a run at the artifact's dataset root, and at fold `fold`."""
    fold = int(fold)
    args = [f"dataset.root={dataset_path}"]
    if fold == REPLICATION:
        return args + ["dataset.folds=null", "dataset.fold=null"]
    return args + [f"dataset.folds={folds_path}", f"dataset.fold={fold}"]


CALIBRATION_SPLITS = ("val", "none")  # the pipeline's `calibration` values (model.data.folds.check_hold_out)

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


def check_run_parameters(p: dict, *, check_dataset: bool = True) -> None:
    """The run8-kfold parameters `p` (all of them, by pipeline name) that would otherwise fail
    late: both trainings' configs (preset, hyperparameters, overrides: unknown keys, lr <= 0,
    T_max = 0, thresholds outside (0, 1), a preset that does not exist), the fold and vote counts,
    and whether the dataset and the `init_from` checkpoint are there (a root needs jsons/train.json;
    `check_dataset=False` where the store is out of reach, e.g. a laptop submitting to a cluster).
    One DataError with the fix. Whether the checkpoint's weights fit the model is checked when each
    training starts (model.checkpoint.init_weights): that needs the model, and its weights read."""
    from pathlib import Path

    from model.config import ConfigError, load_config
    from model.errors import DataError
    from model.s3 import is_remote
    from model.storage import exists

    for run in ("run8", "run3"):
        args = training_args(
            p["preset"],
            p[f"{run}_lr"],
            p[f"{run}_weight_decay"],
            p[f"{run}_t_max"],
            p[f"{run}_eta_min"],
            p["epochs"],
            p["thresh"],
            p["box_thresh"],
            p["max_candidates"],
            p["overrides"],
            p.get("init_from", ""),
        )
        try:
            load_config(args)
        except ConfigError as exc:
            raise DataError(f"the {run} training would not start: {exc}") from None
    if p["folds"] < 2:
        raise DataError(f"folds={p['folds']}: K-fold training needs at least 2 folds")
    if not 1 <= p["min_vote"] <= p["folds"]:
        raise DataError(
            f"min_vote={p['min_vote']}: must be between 1 and folds={p['folds']} (a word needs that many fold models)"
        )
    if not 0 < p["ensemble_iou"] <= 1:
        raise DataError(f"ensemble_iou={p['ensemble_iou']}: must lie in (0, 1]")
    if p["calibration"] not in CALIBRATION_SPLITS:
        raise DataError(
            f"calibration={p['calibration']!r}: must be one of {', '.join(CALIBRATION_SPLITS)} (the split the "
            "ensemble's method is chosen on, kept out of the folds; none: pool it and vote with min_vote)"
        )
    uri = p["dataset_uri"].rstrip("/")
    if check_dataset and not exists(f"{uri}/jsons/train.json"):
        raise DataError(
            f"dataset_uri={uri}: no dataset root there (no jsons/train.json); make one with "
            "`receiptflow synth --out DIR` or `receiptflow convert`, push it with `receiptflow data push`"
        )
    if check_dataset and p["calibration"] != "none" and not exists(f"{uri}/jsons/{p['calibration']}.json"):
        raise DataError(
            f"dataset_uri={uri}: no labelled {p['calibration']} split to calibrate the ensemble on "
            f"(no jsons/{p['calibration']}.json); add one, or run with calibration=none"
        )
    init = p.get("init_from", "").strip()
    if check_dataset and init and not (exists(init) if is_remote(init) else Path(init).is_file()):
        raise DataError(
            f"init_from={init}: no such checkpoint; give the URI of a run's best.pt (e.g. a pretraining "
            "run's s3://BUCKET/runs/RUN/checkpoints/replication/best.pt), or init_from= (empty) for none"
        )

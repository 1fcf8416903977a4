"""validate_run: the run's parameters and dataset checked before any heavy work (the first task)."""

from typing import List

from components import component


@component
def validate_run(
    dataset_uri: str,
    preset: str,
    epochs: int,
    thresh: float,
    box_thresh: float,
    max_candidates: int,
    run8_lr: float,
    run8_weight_decay: float,
    run8_t_max: int,
    run8_eta_min: float,
    run3_lr: float,
    run3_weight_decay: float,
    run3_t_max: int,
    run3_eta_min: float,
    folds: int,
    calibration: str,
    min_vote: int,
    ensemble_iou: float,
    overrides: List[str],
    init_from: str = "",
):
    """Fail in seconds, with the fix in the message, on what would otherwise fail hours in: both
    trainings' configs, the fold and vote counts, the calibration split, a dataset URI with no
    dataset root (or no labelled calibration split) behind it, an init_from checkpoint that is not there."""
    from components.common import check_run_parameters

    check_run_parameters(dict(locals()))
    print(
        f"parameters checked: preset {preset}, {epochs} epochs, {folds} folds, calibration {calibration}, "
        f"min_vote {min_vote}; "
        f"dataset {dataset_uri}{f'; every training starts from {init_from}' if init_from.strip() else ''}",
        flush=True,
    )

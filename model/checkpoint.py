"""Checkpoints: written atomically, read with `weights_only=True`, errors that name the file; the
check that a resumed run asks for the configuration its checkpoint was trained with."""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from model.errors import DataError


class CheckpointError(DataError):
    """A checkpoint that is missing, truncated, corrupt or not ours; the message names the file."""


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a full disk surfaces from torch.save as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: could not write the checkpoint (disk full?): {reason}; "
                              "the previous file there is unchanged") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with `weights_only=True` (tensors and plain containers only: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path}: not a receiptflow checkpoint (no 'model' entry)")
    return payload


# Settings a resumed run may change: they say where the run's files are, where and how fast it runs and
# what it prints, or how long it goes on; none changes what the saved optimizer, scheduler and weights
# go on to compute. Everything else must equal the checkpoint's value: resuming restores the old
# optimizer and scheduler (lr, T_max, eta_min...), so a changed hyperparameter would be silently ignored.
# - preset, exp_name: names (`preset=runs/x/config.yaml` resumes from a saved config under another name)
# - output_dir, checkpoint_mirror, resume, dataset.root, dataset.folds: locations; a pipeline's retried
#   or resumed task gets new artifact paths for the same data (their content is not compared)
# - trainer.max_epochs: stop earlier or go on longer (the cosine schedule keeps its saved T_max)
# - trainer.accelerator, dataset.num_workers, trainer.eval_workers: hardware and worker processes
#   (a rescheduled pod may land on another node; the metric is identical with any eval_workers)
# - trainer.log_every_n_steps, wandb: progress output
RESUMABLE_CHANGES = (
    "preset", "exp_name", "output_dir", "checkpoint_mirror", "resume", "dataset.root", "dataset.folds",
    "trainer.max_epochs", "trainer.accelerator", "dataset.num_workers", "trainer.eval_workers",
    "trainer.log_every_n_steps", "wandb",
)


def config_changes(saved: Mapping, requested: Mapping, allowed: tuple[str, ...] = RESUMABLE_CHANGES) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, requested value) of every setting that differs, outside `allowed`.

    Both are plain resolved configs (`OmegaConf.to_container(cfg, resolve=True)`). A key the saved
    config lacks is not compared: the checkpoint predates that setting, so nothing says it differs.
    """
    old, new = _flatten(saved), _flatten(requested)
    return [(k, old[k], v) for k, v in new.items() if k in old and old[k] != v and k not in allowed]


def check_resume_config(path: str | Path, saved: Mapping, requested: Mapping) -> None:
    """CheckpointError (one line: the keys, old -> new, and the ways out) when the requested config
    changes a setting the checkpoint at `path` was trained with, beyond `RESUMABLE_CHANGES`."""
    changes = config_changes(saved, requested)
    if not changes:
        return
    shown = ", ".join(f"{k} {_show(old)} -> {_show(new)}" for k, old, new in changes)
    raise CheckpointError(
        f"{path}: cannot resume, the config differs from the checkpoint's: {shown} (resuming would keep its optimizer "
        "and schedule); train into a new output_dir (a pipeline: a new run_id), or revert these values, or resume=never "
        f"to start over in place; on resume only {', '.join(RESUMABLE_CHANGES)} may change")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {prefix.rstrip("."): node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": value})
    return out


def _show(value: Any) -> str:
    return "null" if value is None else str(value)

"""Checkpoints: written atomically, read with `weights_only=True`, errors that name the file; the
check that a resumed run asks for the configuration its checkpoint was trained with; the check that
a checkpoint's weights fit the model a fresh run initialises from them (`init_from=`)."""

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
        raise CheckpointError(
            f"{path}: could not write the checkpoint (disk full?): {reason}; the previous file there is unchanged"
        ) from None
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
# - trainer.tune_postprocess: what happens to best.pt after the last epoch (model.tune)
# Not init_from/init_part: they only choose the weights at step 0, which a resume replaces with last.pt's,
# so a changed value would be silently ignored too: whoever changes it beside a last.pt means to start
# from the new weights, and is told to use a new output_dir or resume=never. The same value resumes
# (the file need not exist any more); the checkpoint records which one initialised the run ("init").
RESUMABLE_CHANGES = (
    "preset",
    "exp_name",
    "output_dir",
    "checkpoint_mirror",
    "resume",
    "dataset.root",
    "dataset.folds",
    "trainer.max_epochs",
    "trainer.accelerator",
    "dataset.num_workers",
    "trainer.eval_workers",
    "trainer.log_every_n_steps",
    "wandb",
    "trainer.tune_postprocess",
)


# init_part= -> the state-dict prefix it copies; DBNet's modules are encoder/decoder/head (model/net)
INIT_PARTS = {"model": "", "encoder": "encoder."}
# model settings that change tensor shapes or names: named in the fix when a checkpoint does not fit
_SHAPE_KEYS = ("models.encoder.model_name", "models.encoder.out_indices", "models.decoder.", "models.head.upscale")


def init_weights(
    path: str | Path,
    payload: Mapping,
    model_state: Mapping[str, torch.Tensor],
    part: str,
    requested: Mapping | None = None,
) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint `payload` (read from `path`) that initialise `part` ("model" or
    "encoder") of a model whose state dict is `model_state`: every key of that part, with its shape.

    Otherwise a CheckpointError, one line: the keys with other shapes (checkpoint vs model), missing
    from the checkpoint or not in the model (the first few of each, and how many), and the fix (the
    architecture settings the checkpoint's config has otherwise than `requested`, a resolved config).
    """
    prefix = INIT_PARTS[part]
    have = {k: v for k, v in payload["model"].items() if k.startswith(prefix)}
    want = {k: v for k, v in model_state.items() if k.startswith(prefix)}
    wrong = [
        f"{k} {list(have[k].shape)} vs {list(v.shape)}"
        for k, v in want.items()
        if k in have and have[k].shape != v.shape
    ]
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    if not (wrong or missing or unexpected):
        return have
    found = [_few(wrong, "with other shapes (checkpoint vs model)")] if wrong else []
    found += [_few(missing, "missing from the checkpoint")] if missing else []
    found += [_few(unexpected, "not in the model")] if unexpected else []
    old, new = (
        _flatten((payload.get("config") or {}).get("models") or {}, "models."),
        _flatten((requested or {}).get("models") or {}, "models."),
    )
    differ = [f"{k}={_show(old[k])}" for k in old if k in new and old[k] != new[k] and k.startswith(_SHAPE_KEYS)]
    fix = (
        f"train with the checkpoint's settings ({', '.join(differ)})"
        if differ
        else "train with the models.* settings the checkpoint was trained with (its config.yaml)"
    )
    if part == "model":
        fix += ", or init_part=encoder to take its encoder alone"
    raise CheckpointError(
        f"init_from={path}: the checkpoint's {'weights' if part == 'model' else 'encoder'} do not fit "
        f"this model: {'; '.join(found)}; {fix}"
    )


def _few(keys: list[str], what: str, n: int = 3) -> str:
    """'3 WHAT: a, b, c' or '7 WHAT: a, b, c, ... (+4 more)'."""
    more = f", ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return f"{len(keys)} {what}: {', '.join(keys[:n])}{more}"


def config_changes(
    saved: Mapping, requested: Mapping, allowed: tuple[str, ...] = RESUMABLE_CHANGES
) -> list[tuple[str, Any, Any]]:
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
        f"to start over in place; on resume only {', '.join(RESUMABLE_CHANGES)} may change"
    )


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {prefix.rstrip("."): node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": value})
    return out


def _show(value: Any) -> str:
    return "null" if value is None else str(value)

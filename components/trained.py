"""The Model artifact a training leaves, whoever ran it: components/train.py (in the task's pod)
and components/run_training_job.py (from the checkpoint mirror of a TrainJob or PyTorchJob).

    <model>/best.pt        weights and config (no optimizer state), loads with weights_only=True
    <model>/metrics.jsonl  one line per epoch, as the training wrote it
    <model>/summary.json   task, fold, hyperparameters, the best epoch and the history

Imported inside component bodies (they run where the receiptflow package is installed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def export_model(work: Path, model, metrics, summary: dict) -> dict:
    """Write the artifact from a training's output folder `work` (best.pt, metrics.jsonl) into
    `model` (kfp Output[Model]) and log the best epoch's values and the learning curve to `metrics`
    (Output[Metrics]); `summary` holds the task's fields (task, fold, preset, hyperparameters).
    Returns the best epoch's line of metrics.jsonl."""
    from model.checkpoint import load_checkpoint, save_checkpoint

    work = Path(work)
    history = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if not history:
        raise ValueError(f"{work / 'metrics.jsonl'} is empty: the training finished no epoch")
    best = max(history, key=lambda m: m["val/hmean"])  # the first epoch with the top value: best.pt's
    saved = load_checkpoint(work / "best.pt")
    out = Path(model.path)
    out.mkdir(parents=True, exist_ok=True)
    # the weights and what predicting needs: the config and the post-processing tuned on val (model/tune.py)
    keep = ("model", "config", "epoch", "best_hmean", "history", "tuned")
    save_checkpoint(out / "best.pt", {k: saved[k] for k in keep if k in saved})
    shutil.copy(work / "metrics.jsonl", out / "metrics.jsonl")
    (out / "summary.json").write_text(json.dumps({**summary, "best": best, "history": history}, indent=1))

    model.metadata.update(
        {"task": summary["task"], "fold": int(summary["fold"]), "val/hmean": best["val/hmean"], "epoch": best["epoch"]}
    )
    for key in ("val/hmean", "val/precision", "val/recall"):
        metrics.log_metric(key, best[key])
    metrics.log_metric("best_epoch", best["epoch"])
    for m in history:  # the learning curve, one entry per epoch
        metrics.log_metric(f"curve/epoch_{m['epoch']:02d}/val_hmean", m["val/hmean"])
        metrics.log_metric(f"curve/epoch_{m['epoch']:02d}/train_loss", m["train/loss"])
    print(
        f"{summary['task']}: best val/hmean={best['val/hmean']!r} at epoch {best['epoch']} of {len(history)}",
        flush=True,
    )
    return best

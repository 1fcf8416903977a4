"""Training: one plain loop, top to bottom.

    receiptflow train preset=run8 dataset.root=DATA models.encoder.pretrained=false

Each epoch trains over the train split, validates on the val split with the competition metric
(`val/hmean`: mean over images of per-image CLEval hmean), prints one flushed metric line led by
its UTC time —
``2026-11-29T04:12:36.120Z epoch=10 train/loss=0.41 val/precision=0.971 val/recall=0.962 val/hmean=0.966 lr=0.000451``,
exactly what a Katib StdOut collector parses (see `metric_lines`) — appends the same values and
time to ``metrics.jsonl``, writes ``last.pt`` atomically and ``best.pt`` on a new best ``val/hmean``.

Resuming: ``resume=auto`` continues from ``last.pt`` when there is one (model, optimizer,
scheduler, AMP scaler, RNG state, epoch and position within it). SIGTERM (pod preemption) lets
the current step finish, saves ``last.pt`` and exits with status 143; augmentations are seeded
per (seed, epoch, sample), so an interrupted and resumed run on CPU ends with the same numbers
as an uninterrupted one. Multi-GPU: launch with ``torchrun`` (DDP; rank 0 validates and saves).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.data.dataset import DetectionDataset, EpochSampler, collate
from model.config import augment_config, target_options
from model.data.transforms import eval_transform, train_transform
from model.evaluate import validate
from model.net import build_model
from model.net.loss import DBLoss
from model.data.splits import load_split
from model.data.ufo import write_text_atomic


# The StdOut metrics filter our Katib Experiments use. Katib's default, `([\w|-]+)\s*=\s*...`, does
# not match the "/" of val/hmean; tests parse real training output with exactly this one. The value
# must hold a digit: Katib's default value part (`\d*(\.\d+)?...`) also matches the empty string, so
# `train/loss=nan` would yield "" and, once stop rules are active, the collector's
# strconv.ParseFloat fails and klog.Fatalf kills it (katib v0.19.0
# cmd/metricscollector/v1beta1/file-metricscollector/main.go:205-216 parses every match on the line).
# Group 1 is the name, group 2 the value (the webhook requires two groups: pkg/webhook/v1beta1/
# experiment/validator/validator.go:557-570); no ";" (the collector splits its -f flag on it, main.go:404).
KATIB_METRICS_FILTER = r"([\w|/-]+)\s*=\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[Ee][+-]?\d+)?)"


PREVIOUS = "last.prev.pt"  # the checkpoint before last.pt, kept for when last.pt turns out unreadable


class TrainingInterrupted(Exception):
    """SIGTERM arrived; the run was saved to last.pt and can resume."""


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full float32
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def train(cfg: DictConfig) -> dict:
    """Train as `cfg` says; returns the last epoch's metrics (and the best val/hmean).

    With `checkpoint_mirror` set, output_dir is copied there after every checkpoint write (each
    epoch, and on SIGTERM before exiting) and restored from there first when it has no last.pt:
    a pipeline's retried pod resumes where the preempted one stopped.
    """
    rt = _runtime(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    on_checkpoint = None
    if cfg.checkpoint_mirror:
        if rt.main:
            _restore_mirror(cfg, out)
        on_checkpoint = _mirror_sync(cfg.checkpoint_mirror)
    torch.manual_seed(cfg.seed)
    if rt.device.type == "cpu" and cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    # data
    train_split = load_split(cfg.dataset, "train")
    val_split = load_split(cfg.dataset, "val")
    size = cfg.dataset.image_size
    train_set = DetectionDataset(train_split, train_transform(augment_config(cfg)), seed=cfg.seed, **target_options(cfg))
    sampler = EpochSampler(len(train_set), seed=cfg.seed, shuffle=True, rank=rt.rank, world_size=rt.world_size)
    train_loader = _loader(cfg, train_set, sampler, rt)
    val_set = DetectionDataset(val_split, eval_transform(size), with_targets=False)
    val_loader = _loader(cfg, val_set, None, rt)

    # model, loss, optimizer, schedule
    model = build_model(cfg.models).to(rt.device)
    if rt.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    core = model
    if rt.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    criterion = DBLoss(cfg.models.loss)
    opt_cfg = cfg.models.optimizer
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt_cfg.name.lower()]
    optimizer = opt_cls(core.parameters(), lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.models.scheduler.T_max, eta_min=cfg.models.scheduler.eta_min)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)

    # resume: where the run stands is saved in every checkpoint, so a resumed run continues exactly
    state = {"epoch": 0, "samples_done": 0, "loss_sum": 0.0, "steps": 0, "best_hmean": -1.0, "history": []}
    ckpt = _resume_path(cfg, out, rt)
    if ckpt is not None:
        saved, ckpt = _load_resumable(ckpt, rt)
        core.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng"]["torch"])
        if torch.cuda.is_available() and saved["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        state = {k: saved[k] for k in state}
        _say(rt, f"resuming from {ckpt}: epoch {state['epoch'] + 1}, {state['samples_done']} samples into it")
        if rt.main:  # the checkpoint's history is the truth (an older checkpoint may have been resumed)
            write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in state["history"]))

    params = sum(p.numel() for p in core.parameters())
    _say(rt, f"training {cfg.exp_name}: {len(train_set)} train / {len(val_set)} val images at {size} px, "
             f"{cfg.models.encoder.model_name} ({params / 1e6:.2f}M parameters), {rt.device}"
             f"{'' if rt.amp_dtype is None else ' ' + str(rt.amp_dtype).removeprefix('torch.')}, world size {rt.world_size}, "
             f"epochs {state['epoch'] + 1}-{cfg.trainer.max_epochs}, output {out}")
    stop = _install_sigterm()
    pp = OmegaConf.to_container(cfg.models.head.postprocess)
    metrics: dict = state["history"][-1] if state["history"] else {}
    for epoch in range(state["epoch"], cfg.trainer.max_epochs):
        sampler.set_epoch(epoch)
        sampler.start_at(state["samples_done"])
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.tensor(state["loss_sum"], device=rt.device, dtype=torch.float64)
        steps = state["steps"]
        total = steps + len(train_loader)  # a resumed epoch's loader holds only the batches left
        bar = _progress(rt, train_loader, epoch, cfg.trainer.max_epochs)
        for batch in bar:
            batch = batch.to(rt.device, non_blocking=True)
            image = batch.image.contiguous(memory_format=torch.channels_last) if rt.device.type == "cuda" else batch.image
            with _autocast(rt):
                pred = model(image)
            loss, parts = criterion(pred, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.trainer.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.trainer.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().double()
            steps += 1
            state["samples_done"] += len(batch.names) * rt.world_size
            _log_step(rt, bar, cfg, epoch, steps, total, loss, parts)
            if stop.requested:
                if rt.main:
                    partial = {"epoch": epoch, "loss_sum": float(loss_sum), "steps": steps}
                    _save_last(out, core, optimizer, scheduler, scaler, state | partial, cfg)
                    if on_checkpoint:
                        on_checkpoint(out)
                _say(rt, f"SIGTERM: saved {out / 'last.pt'} at epoch {epoch + 1}, sample {state['samples_done']}; resume with resume=auto")
                raise TrainingInterrupted(str(out / "last.pt"))
        train_loss = _mean_over_ranks(loss_sum, steps, rt)
        scheduler.step()

        if rt.main:
            result = validate(core, val_loader, val_split, rt.device, amp_dtype=rt.amp_dtype, postprocess_options=pp,
                              workers=cfg.trainer.eval_workers)
            metrics = {
                "time": utc_timestamp(),
                "epoch": epoch + 1,
                "train/loss": train_loss,
                "val/precision": result.precision,
                "val/recall": result.recall,
                "val/hmean": result.hmean,
                "lr": lr,
            }
            for line in metric_lines(metrics):
                print(line, flush=True)
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
            state["history"].append(metrics)
            is_best = result.hmean > state["best_hmean"]
            state["best_hmean"] = max(state["best_hmean"], result.hmean)
            done = state | {"epoch": epoch + 1, "samples_done": 0, "loss_sum": 0.0, "steps": 0}
            _save_last(out, core, optimizer, scheduler, scaler, done, cfg)
            if is_best:
                _save(out / "best.pt", core, optimizer, scheduler, scaler, done, cfg)
            if on_checkpoint:
                on_checkpoint(out)
        state.update(epoch=epoch + 1, samples_done=0, loss_sum=0.0, steps=0)
        if rt.world_size > 1:
            dist.barrier()
    return {**metrics, "best/hmean": state["best_hmean"]}


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-29T04:12:36.120Z``."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def metric_lines(metrics: dict) -> list[str]:
    """The epoch's metric line, and a note when a value is not finite.

    The line starts with ``metrics["time"]`` and a space: Katib's collector takes the first
    space-separated token as the observation time when time.Parse(RFC3339Nano) accepts it, else
    stamps 0001-01-01 (katib v0.19.0 pkg/metricscollector/v1beta1/file-metricscollector/
    file-metricscollector.go:89-99), and the DB orders observations by time alone (pkg/db/v1beta1/
    mysql/mysql.go:134), so without it median stop's "first start_step values" and "latest" are
    arbitrary. A nan/inf value is left out of the line (the collector dies on a value that is not a
    float once stop rules are active) and named on a second line without "=", which no filter matches.
    """
    finite = {k: v for k, v in metrics.items() if k != "time" and not (isinstance(v, float) and not math.isfinite(v))}
    lines = [f"{metrics['time']} " + " ".join(f"{k}={v!r}" for k, v in finite.items())]
    bad = [f"{k} is {v!r}" for k, v in metrics.items() if k != "time" and k not in finite]
    if bad:
        lines.append(f"epoch {metrics.get('epoch')}: not finite, left out of the metric line: {', '.join(bad)}")
    return lines


def _restore_mirror(cfg: DictConfig, out: Path) -> None:
    """resume=auto with no local last.pt: bring the mirror's copy of the run back first."""
    from model.storage import download, exists

    mirror = cfg.checkpoint_mirror
    if str(cfg.resume) == "auto" and not (out / "last.pt").exists() and exists(f"{mirror.rstrip('/')}/last.pt"):
        print(f"restoring the run from its mirror {mirror}", flush=True)
        download(mirror, out, progress=False)


def _mirror_sync(mirror: str) -> Callable[[Path], None]:
    from model.storage import upload

    def sync(out: Path) -> None:
        upload(out, mirror, progress=False)  # unchanged files (same sha256) are skipped

    return sync


def _runtime(cfg: DictConfig) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    want = cfg.trainer.accelerator
    cuda = torch.cuda.is_available() and want in ("auto", "cuda", "gpu")
    if want in ("cuda", "gpu") and not torch.cuda.is_available():
        raise RuntimeError("trainer.accelerator=cuda but no CUDA device is visible")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    precision = str(cfg.trainer.precision)
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "16") if cuda else "32"
    amp = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}.get(precision, "bad")
    if amp == "bad":
        raise ValueError(f"trainer.precision={precision!r}: use auto, 32, bf16 or 16")
    if amp is not None and not cuda:
        amp = None  # mixed precision is a GPU speed-up; CPU runs stay float32 and deterministic
    return Runtime(device, amp, rank, world)


def _loader(cfg, dataset, sampler, rt: Runtime) -> DataLoader:
    workers = cfg.dataset.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.dataset.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=rt.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def _autocast(rt: Runtime):
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype) if rt.amp_dtype is not None else nullcontext()


def _resume_path(cfg, out: Path, rt: Runtime) -> Path | None:
    resume = str(cfg.resume)
    if resume in ("never", "false", "none", "None"):
        return None
    if resume == "auto":
        for candidate in (out / "last.pt", out / PREVIOUS):  # no last.pt but a previous one: a save died in between
            if candidate.exists():
                return candidate
        _say(rt, f"resume=auto: no checkpoint at {out / 'last.pt'}; starting fresh")
        return None
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"resume={resume}: no such checkpoint")
    return path


def _save_last(out: Path, *args) -> None:
    """last.pt, keeping the one before it as last.prev.pt: if the new one is ever unreadable
    (a copy cut short, a full disk), resuming falls back to the previous epoch instead of to nothing."""
    if (out / "last.pt").exists():
        os.replace(out / "last.pt", out / PREVIOUS)
    _save(out / "last.pt", *args)


def _load_resumable(ckpt: Path, rt: Runtime) -> tuple[dict, Path]:
    try:
        return load_checkpoint(ckpt), ckpt
    except CheckpointError as exc:
        previous = ckpt.with_name(PREVIOUS)
        if ckpt.name != "last.pt" or not previous.exists():
            raise
        _say(rt, f"{exc}; resuming from the previous checkpoint {previous} instead")
        return load_checkpoint(previous), previous


def _save(path, model, optimizer, scheduler, scaler, state, cfg) -> None:
    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    save_checkpoint(path, {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng,
        "config": OmegaConf.to_container(cfg, resolve=True),
        **state,
    })


class _Stop:
    requested = False


def _install_sigterm() -> _Stop:
    stop = _Stop()

    def handler(signum, frame):
        stop.requested = True

    signal.signal(signal.SIGTERM, handler)
    return stop


def _progress(rt: Runtime, loader, epoch: int, epochs: int):
    if rt.main and sys.stderr.isatty():
        return tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)
    return loader


def _log_step(rt, bar, cfg, epoch, step, total, loss, parts) -> None:
    if not rt.main:
        return
    if isinstance(bar, tqdm):
        bar.set_postfix(loss=f"{loss.item():.4f}")
    elif step % max(1, cfg.trainer.log_every_n_steps) == 0 or step == total:
        detail = " ".join(f"{k}={v.item():.4f}" for k, v in parts.items())
        print(f"epoch {epoch + 1} step {step}/{total} loss={loss.item():.4f} {detail}", flush=True)


def _mean_over_ranks(loss_sum, steps, rt) -> float:
    """Mean train loss of the epoch's steps, over all processes."""
    total = torch.stack([loss_sum, torch.tensor(float(steps), device=loss_sum.device, dtype=torch.float64)])
    if rt.world_size > 1:
        dist.all_reduce(total)
    return float(total[0] / total[1]) if total[1] > 0 else math.nan


def _say(rt: Runtime, text: str) -> None:
    if rt.main:
        print(text, flush=True)

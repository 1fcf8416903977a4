"""Training: one plain loop, top to bottom.

    receiptflow train preset=run8 dataset.root=DATA models.encoder.pretrained=false

Each epoch trains over the train split, validates on the val split with the competition metric
(`val/hmean`: mean over images of per-image CLEval hmean), prints one flushed metric line led by
its UTC time —
``2026-11-29T04:12:36.120Z epoch=10 train/loss=0.41 val/precision=0.971 val/recall=0.962 val/hmean=0.966 lr=0.000451``,
exactly what a Katib StdOut collector parses (see `metric_lines`) — appends the same values and
time to ``metrics.jsonl``, writes ``last.pt`` atomically and ``best.pt`` on a new best ``val/hmean``.
``config.yaml`` beside them is the resolved config of the run (`preset=OUTPUT_DIR/config.yaml`
loads it back), written atomically when training starts.

Resuming: ``resume=auto`` continues from ``last.pt`` when there is one (model, optimizer,
scheduler, AMP scaler, RNG state, epoch and position within it); ``resume=never`` (or false)
starts fresh, ``resume=PATH`` continues from that checkpoint. The requested config must equal the
checkpoint's but for the settings `model.checkpoint.RESUMABLE_CHANGES` lists (names, locations,
workers, accelerator, logging, trainer.max_epochs); any other change is refused with the keys,
old -> new. SIGTERM (pod preemption) lets
the current step finish, saves ``last.pt`` and exits with status 143; augmentations are seeded
per (seed, epoch, sample), so an interrupted and resumed run on CPU ends with the same numbers
as an uninterrupted one.

Initialising: ``init_from=CHECKPOINT`` (a path or s3:// URI) starts a fresh run (epoch 1, new
optimizer and schedule) from the weights of another run's checkpoint, ``init_part=model`` all of
them or ``init_part=encoder`` the encoder's alone (decoder and head keep their fresh init); every
tensor of that part must be there with its shape (`model.checkpoint.init_weights`). It replaces
``models.encoder.pretrained``/``weights`` (no hub download). A run that resumes takes its
checkpoint instead and says that init_from is not applied again; the checkpoint records ("init")
which one initialised the run.

Several GPUs or nodes: launch with ``torchrun`` (DDP, docs/distributed.md). Every rank runs the
same number of steps (`EpochSampler` pads), rank 0 alone restores the mirror, reads the checkpoint
and hands it to the others, validates and saves; a SIGTERM to any rank stops all of them at the
same step (a stop flag all-reduced each step), rank 0 saves once and every rank exits 143.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import NoReturn

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from model import metrics_pool
from model.checkpoint import CheckpointError, check_resume_config, init_weights, load_checkpoint, save_checkpoint
from model.config import augment_config, target_options, to_yaml
from model.data.dataset import Batch, DetectionDataset, EpochSampler, collate, seed_worker
from model.data.splits import load_split
from model.data.transforms import eval_transform, train_transform
from model.data.ufo import Split, write_text_atomic
from model.errors import DataError
from model.evaluate import validate
from model.metric_lines import metric_lines, utc_timestamp
from model.net import build_model
from model.net.loss import DBLoss
from model.s3 import is_remote

CONFIG_FILE = "config.yaml"  # the run's resolved config, beside its checkpoints
PREVIOUS = "last.prev.pt"  # the checkpoint before last.pt, kept for when last.pt turns out unreadable

# How long a rank waits in a collective before it fails instead of hanging. The others wait at the
# epoch-end barrier while rank 0 validates, saves and uploads to the mirror, so it must cover that;
# a rank that died frees the rest after at most this long (on one node torchrun stops the others at
# once; over gloo a closed peer connection fails them at once too). 30 min is torch's gloo default;
# NCCL's is 10 min (torch 2.14.1 torch/distributed/constants.py:12-21), which a long validation of
# rank 0 could exceed. Seconds, overridable per job.
DDP_TIMEOUT_ENV = "RECEIPTFLOW_DDP_TIMEOUT_S"
DDP_TIMEOUT_S = 1800


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


@dataclass
class RunState:
    """Where the run stands: what every checkpoint holds beside the weights, so that a resumed run
    continues exactly. The checkpoint format is a contract: `to_payload` gives these keys, in this
    order, with these values, and `from_payload` reads them back, from older checkpoints too.
    Rank 0 validates, so only its best_hmean and history grow; other ranks keep the checkpoint's."""

    epoch: int = 0
    """Epochs finished; the one in progress is epoch + 1 (as printed)."""
    samples_done: int = 0
    """Samples of the epoch in progress trained so far, over all ranks (the sampler starts there)."""
    loss_sum: float = 0.0
    """The epoch in progress's train-loss sum over all ranks' steps, as saved: up to date only in a
    checkpoint written mid-epoch (SIGTERM); while an epoch trains, its running sum is a tensor of
    `_train_epoch`, which rank 0 starts from this one."""
    loss_steps: int = 0
    """The steps of all ranks that `loss_sum` adds up, as saved (see loss_sum)."""
    steps: int = 0
    """Steps of the epoch in progress done by each rank (every rank does as many)."""
    best_hmean: float = -1.0
    """The best val/hmean so far (best.pt's); -1 before the first validation."""
    history: list[dict] = field(default_factory=list)
    """Every finished epoch's metrics, as metrics.jsonl has them (the checkpoint's is the truth)."""
    init: dict | None = None
    """Which checkpoint's weights started the run (init_from): {"from", "part", "epoch"}; None when
    it started from models.encoder's weights."""

    @classmethod
    def from_payload(cls, payload: Mapping) -> RunState:
        """The state a checkpoint holds. Checkpoints of single-process runs from before loss_steps was
        kept count it as steps; those from before init have none."""
        return cls(
            epoch=payload["epoch"],
            samples_done=payload["samples_done"],
            loss_sum=payload["loss_sum"],
            loss_steps=payload.get("loss_steps", payload["steps"]),
            steps=payload["steps"],
            best_hmean=payload["best_hmean"],
            history=payload["history"],
            init=payload.get("init"),
        )

    def to_payload(self) -> dict:
        """The checkpoint's keys for this state (`_save` writes them beside the weights)."""
        return {
            "epoch": self.epoch,
            "samples_done": self.samples_done,
            "loss_sum": self.loss_sum,
            "loss_steps": self.loss_steps,
            "steps": self.steps,
            "best_hmean": self.best_hmean,
            "history": self.history,
            "init": self.init,
        }

    def record(self, metrics: dict) -> bool:
        """Adds a validated epoch's metrics; whether its val/hmean is a new best."""
        self.history.append(metrics)
        is_best = metrics["val/hmean"] > self.best_hmean
        self.best_hmean = max(self.best_hmean, metrics["val/hmean"])
        return is_best

    def next_epoch(self) -> None:
        """The epoch in progress is finished: the next one starts with nothing of it done."""
        self.epoch += 1
        self.samples_done, self.loss_sum, self.loss_steps, self.steps = 0, 0.0, 0, 0

    def result(self) -> dict:
        """What `train` returns: the last epoch's metrics (none before any), and the best val/hmean.
        Only rank 0 validates: another rank's are those of the checkpoint it started from."""
        return {**(self.history[-1] if self.history else {}), "best/hmean": self.best_hmean}


@dataclass
class _Data:
    """The run's splits as it reads them: the training set, sampler and loader, the val split (its
    labels are what validation scores against) with its set and loader."""

    train_set: DetectionDataset
    sampler: EpochSampler
    train_loader: DataLoader
    val_split: Split
    val_set: DetectionDataset
    val_loader: DataLoader


@dataclass
class _Nets:
    """What trains: `model` runs the steps (wrapped in DDP with several processes), `core` is the bare
    network that is saved, validated and resumed; loss, optimizer, schedule and AMP scaler."""

    model: torch.nn.Module
    core: torch.nn.Module
    criterion: DBLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


@dataclass
class _Run:
    """What a run works with, fixed once built; `RunState` is what changes."""

    cfg: DictConfig
    out: Path
    rt: Runtime
    on_checkpoint: Callable[[Path], None]
    """Called on rank 0 with `out` after each checkpoint write (the mirror's upload, or nothing)."""
    data: _Data
    nets: _Nets


@dataclass
class _Trained:
    """An epoch's training, for its metric line: the mean train loss over all ranks' steps (nan if
    there were none) and the learning rate it trained at (group 0's)."""

    loss: float
    lr: float


def train(cfg: DictConfig) -> dict:
    """Train as `cfg` says; returns the last epoch's metrics (and the best val/hmean).

    With `checkpoint_mirror` set, output_dir is copied there after every checkpoint write (each
    epoch, and on SIGTERM before exiting) and restored from there first when it has no last.pt:
    a pipeline's retried pod resumes where the preempted one stopped.
    """
    out = Path(cfg.output_dir)
    rt = _start(cfg, out)
    on_checkpoint = _checkpoint_hook(cfg)
    _seed(cfg, rt)
    data = _data(cfg, rt)
    nets = _nets(cfg, rt)
    run = _Run(cfg, out, rt, on_checkpoint, data, nets)
    state = _resume_or_init(run)
    _open_run(run, state)
    stop = _install_sigterm()
    _warm_up_eval(run)
    while state.epoch < cfg.trainer.max_epochs:
        trained = _train_epoch(run, state, stop)  # on SIGTERM: saved, TrainingInterrupted
        _end_epoch(run, state, trained)
    _tune(run)
    return state.result()


# ---- the phases of train(), in order -----------------------------------------------------------------


def _start(cfg: DictConfig, out: Path) -> Runtime:
    """Bad resume=/init_from= values refused (rank 0, before anything is written), the processes and
    device set up, output_dir made."""
    if int(os.environ.get("RANK", "0")) == 0:
        _check_resume_value(cfg, out)
        _check_init_value(cfg)
    rt = _runtime(cfg)
    out.mkdir(parents=True, exist_ok=True)
    return rt


def _checkpoint_hook(cfg: DictConfig) -> Callable[[Path], None]:
    """What runs after each checkpoint write: the upload to checkpoint_mirror, or nothing."""
    return _mirror_sync(cfg.checkpoint_mirror) if cfg.checkpoint_mirror else _no_mirror


def _no_mirror(out: Path) -> None:
    """No checkpoint_mirror: nothing to copy."""


def _seed(cfg: DictConfig, rt: Runtime) -> None:
    torch.manual_seed(cfg.seed)
    if rt.device.type == "cpu" and cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _data(cfg: DictConfig, rt: Runtime) -> _Data:
    train_split = load_split(cfg.dataset, "train")
    val_split = load_split(cfg.dataset, "val")
    train_set = DetectionDataset(
        train_split, train_transform(augment_config(cfg)), seed=cfg.seed, **target_options(cfg)
    )
    sampler = EpochSampler(len(train_set), seed=cfg.seed, shuffle=True, rank=rt.rank, world_size=rt.world_size)
    train_loader = _loader(cfg, train_set, sampler, rt)
    val_set = DetectionDataset(val_split, eval_transform(cfg.dataset.image_size), with_targets=False)
    val_loader = _loader(cfg, val_set, None, rt)
    return _Data(train_set, sampler, train_loader, val_split, val_set, val_loader)


def _nets(cfg: DictConfig, rt: Runtime) -> _Nets:
    """The network (freshly initialised from the seed), loss, optimizer, schedule and scaler."""
    model = build_model(_models_settings(cfg, rt)).to(rt.device)
    if rt.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    core = model
    if rt.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
    criterion = DBLoss(cfg.models.loss)
    opt_cfg = cfg.models.optimizer
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt_cfg.name.lower()]
    optimizer = opt_cls(_param_groups(core, opt_cfg), lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=cfg.models.scheduler.T_max, eta_min=cfg.models.scheduler.eta_min
    )
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    return _Nets(model, core, criterion, optimizer, scheduler, scaler)


def _resume_or_init(run: _Run) -> RunState:
    """Where the run starts: fresh, from init_from's weights (a fresh run that records them) or, when
    it resumes, from the checkpoint's weights, optimizer, schedule, scaler, random state and state."""
    saved = _resume_checkpoint(run.cfg, run.out, run.rt, run.nets.core)
    if saved is None:
        return RunState()
    if "init_weights" in saved:
        return _init_from(run, saved)
    return _resume_from(run, saved)


def _init_from(run: _Run, saved: dict) -> RunState:
    """init_from's weights loaded into the fresh network: `saved` is `_load_init`'s."""
    part = run.cfg.init_part
    run.nets.core.load_state_dict(saved["init_weights"], strict=part == "model")  # init_weights checked the part's keys
    state = RunState(init={"from": saved["path"], "part": part, "epoch": saved.get("epoch")})
    _say(
        run.rt,
        f"initialised from {saved['path']} ({_init_what(part)}, {len(saved['init_weights'])} tensors, "
        f"its epoch {saved.get('epoch')}): a fresh run, epoch 1 with a new optimizer and schedule",
    )
    return state


def _resume_from(run: _Run, saved: dict) -> RunState:
    """Everything of the checkpoint `saved` restored: this process continues where it stopped."""
    nets = run.nets
    nets.core.load_state_dict(saved["model"])
    nets.optimizer.load_state_dict(saved["optimizer"])
    nets.scheduler.load_state_dict(saved["scheduler"])
    nets.scaler.load_state_dict(saved["scaler"])
    _set_rng(saved["rng"], run.rt)
    state = RunState.from_payload(saved)
    _say(run.rt, f"resuming from {saved['path']}: epoch {state.epoch + 1}, {state.samples_done} samples into it")
    return state


def _open_run(run: _Run, state: RunState) -> None:
    """Rank 0 writes metrics.jsonl and config.yaml; the run's first line says what it trains."""
    cfg, out, rt = run.cfg, run.out, run.rt
    if rt.main:
        # the checkpoint's history is the truth (an older checkpoint may have been resumed); a fresh start
        # (resume=never in place) begins an empty one instead of appending to the old run's
        write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in state.history))
        # this run's settings (a resume may have changed the allowed ones), mirrored with the checkpoints
        write_text_atomic(out / CONFIG_FILE, to_yaml(cfg, resolve=True))
    params = sum(p.numel() for p in run.nets.core.parameters())
    _say(
        rt,
        f"training {cfg.exp_name}: {len(run.data.train_set)} train / {len(run.data.val_set)} val images at "
        f"{cfg.dataset.image_size} px, {cfg.models.encoder.model_name} ({params / 1e6:.2f}M parameters), {rt.device}"
        f"{'' if rt.amp_dtype is None else ' ' + str(rt.amp_dtype).removeprefix('torch.')}, world size {rt.world_size}, "
        f"epochs {state.epoch + 1}-{cfg.trainer.max_epochs}, output {out}",
    )


def _warm_up_eval(run: _Run) -> None:
    if run.rt.main and run.cfg.trainer.eval_workers > 1:
        # CLEval's worker processes (forkserver: safe beside CUDA and DataLoader threads) start while epoch 1 trains
        metrics_pool.warm_up(run.cfg.trainer.eval_workers)


def _train_epoch(run: _Run, state: RunState, stop: _Stop) -> _Trained:
    """The epoch in progress trained from where `state` stands (all of it, or what a resumed one has
    left), `state` kept up to date step by step; the schedule steps at its end. A SIGTERM on any rank
    saves last.pt and raises TrainingInterrupted on every rank (`_interrupt`)."""
    cfg, rt, nets = run.cfg, run.rt, run.nets
    run.data.sampler.set_epoch(state.epoch)
    run.data.sampler.start_at(state.samples_done)
    nets.model.train()
    lr = nets.optimizer.param_groups[0]["lr"]
    # this rank's [loss sum, steps]; rank 0 carries what the checkpoint holds of all ranks' earlier steps
    carried = [state.loss_sum, state.loss_steps] if rt.main else [0.0, 0]
    loss_sum = torch.tensor(carried, device=rt.device, dtype=torch.float64)
    total = state.steps + len(run.data.train_loader)  # a resumed epoch's loader holds only the batches left
    bar = _progress(rt, run.data.train_loader, state.epoch, cfg.trainer.max_epochs)
    for batch in bar:
        loss, parts = _step(run, batch)
        loss_sum[0] += loss.detach().double()
        loss_sum[1] += 1
        state.steps += 1
        state.samples_done += len(batch.names) * rt.world_size  # the same on every rank: equal batches
        _log_step(rt, bar, cfg, state.epoch, state.steps, total, loss, parts)
        if _stop_agreed(stop, rt):  # every rank leaves here at the same step
            _interrupt(run, state, loss_sum)
    totals = _sum_over_ranks(loss_sum, rt)
    train_loss = float(totals[0] / totals[1]) if totals[1] > 0 else math.nan
    nets.scheduler.step()
    return _Trained(loss=train_loss, lr=lr)


def _step(run: _Run, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step on `batch`: its loss and the loss's named parts."""
    rt, nets = run.rt, run.nets
    batch = batch.to(rt.device, non_blocking=True)
    image = batch.image.contiguous(memory_format=torch.channels_last) if rt.device.type == "cuda" else batch.image
    with _autocast(rt):
        pred = nets.model(image)
    loss, parts = nets.criterion(pred, batch)
    nets.optimizer.zero_grad(set_to_none=True)
    nets.scaler.scale(loss).backward()
    if run.cfg.trainer.grad_clip:
        nets.scaler.unscale_(nets.optimizer)
        torch.nn.utils.clip_grad_norm_(nets.core.parameters(), run.cfg.trainer.grad_clip)
    nets.scaler.step(nets.optimizer)
    nets.scaler.update()
    return loss, parts


def _interrupt(run: _Run, state: RunState, loss_sum: torch.Tensor) -> NoReturn:
    """SIGTERM mid-epoch: rank 0 saves last.pt where the run stands (with all ranks' loss so far), every
    rank waits for it and raises TrainingInterrupted."""
    rt, out = run.rt, run.out
    totals = _sum_over_ranks(loss_sum, rt)
    rng = _gather_rng(rt)
    if rt.main:
        _save_last(run, replace(state, loss_sum=float(totals[0]), loss_steps=int(totals[1])), rng)
        run.on_checkpoint(out)
    _barrier(rt)  # nobody exits before last.pt is written: torchrun stops the rest when one rank ends
    if rt.world_size > 1:
        # Already stopping with 143: a second SIGTERM (torchrun's, sent to the others once one rank
        # has exited) must not kill a rank whose interpreter is finalizing, where CPython has put
        # the default action back (_PySignal_Fini resets handlers, not SIG_IGN): seen as exit -15.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _say(
        rt,
        f"SIGTERM: saved {out / 'last.pt'} at epoch {state.epoch + 1}, sample {state.samples_done}; resume with resume=auto",
    )
    raise TrainingInterrupted(str(out / "last.pt"))


def _end_epoch(run: _Run, state: RunState, trained: _Trained) -> None:
    """Rank 0 validates the epoch, reports it and saves last.pt (best.pt on a new best); every rank
    moves `state` on to the next epoch and waits for rank 0 at the barrier."""
    rt = run.rt
    rng = _gather_rng(rt)  # before rank 0 validates: the others wait at the barrier below
    is_best = False
    if rt.main:
        is_best = state.record(_validate(run, state, trained))
    state.next_epoch()  # what the checkpoints hold: the epoch done, nothing of the next one yet
    if rt.main:
        _save_last(run, state, rng)
        if is_best:
            _save(run.out / "best.pt", run, state, rng)
        run.on_checkpoint(run.out)
    _barrier(rt)  # the others wait here while rank 0 validates and saves (at most DDP_TIMEOUT_S)


def _validate(run: _Run, state: RunState, trained: _Trained) -> dict:
    """The epoch in progress's metrics (val/* on the val split), printed as its metric line and
    appended to metrics.jsonl."""
    cfg, rt, data = run.cfg, run.rt, run.data
    result = validate(
        run.nets.core,
        data.val_loader,
        data.val_split,
        rt.device,
        amp_dtype=rt.amp_dtype,
        postprocess_options=OmegaConf.to_container(cfg.models.head.postprocess),
        workers=cfg.trainer.eval_workers,
    )
    metrics = {
        "time": utc_timestamp(),
        "epoch": state.epoch + 1,
        "train/loss": trained.loss,
        "val/precision": result.precision,
        "val/recall": result.recall,
        "val/hmean": result.hmean,
        "lr": trained.lr,
    }
    for line in metric_lines(metrics):
        print(line, flush=True)
    with open(run.out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(metrics) + "\n")
    return metrics


def _tune(run: _Run) -> None:
    """The end: rank 0 tunes best.pt's post-processing (trainer.tune_postprocess) and mirrors it."""
    if run.rt.main and run.cfg.trainer.tune_postprocess and (run.out / "best.pt").is_file():
        _tune_best(run.out / "best.pt", run.data.val_split, run.rt, run.cfg.trainer.eval_workers)
        run.on_checkpoint(run.out)


# ---- helpers ------------------------------------------------------------------------------------------


def _tune_best(path: Path, val_split, rt, workers: int) -> None:
    """best.pt's own post-processing, chosen on the val split (model.tune); a failure to tune is said,
    never fatal: the checkpoint keeps the preset's settings."""
    from model.predict import load_model
    from model.tune import store, tune

    net, cfg = load_model(path, tuned=False)
    try:
        result = tune(net.to(rt.device), cfg, val_split, device=rt.device, workers=workers)
    except DataError as exc:
        _say(rt, f"post-processing not tuned: {exc}")
        return
    store(path, result)
    _say(rt, f"{path}: {result.summary()}")


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
        raise DataError(
            f"trainer.accelerator={want}: no CUDA device is visible to torch "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}, torch "
            f"{torch.__version__} built for CUDA {torch.version.cuda or 'none'}); use trainer.accelerator=auto "
            "or cpu, or run where a GPU and its driver are visible"
        )
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(DDP_TIMEOUT_ENV, DDP_TIMEOUT_S)))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
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
        # training samples are seeded per (seed, epoch, index) anyway; this covers int-indexed use
        worker_init_fn=seed_worker,
    )


def _autocast(rt: Runtime) -> AbstractContextManager:
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype) if rt.amp_dtype is not None else nullcontext()


# resume= values that mean "start fresh": a YAML false or null on the command line reaches the
# str-typed key as "False" / "None"
FRESH = ("never", "false", "no", "off", "none", "null")


def _check_resume_value(cfg, out: Path) -> None:
    """resume= values that cannot work, refused before anything is written (rank 0's resume=PATH is
    checked again when it is read)."""
    resume = str(cfg.resume)
    if resume.strip().lower() in ("true", "yes", "on"):
        raise DataError(
            f"resume={resume}: ambiguous; use resume=auto (continue from {out / 'last.pt'} if there is one), "
            "resume=never (start fresh) or resume=PATH (a checkpoint file)"
        )
    if resume.strip().lower() not in FRESH and resume != "auto" and not Path(resume).is_file():
        raise CheckpointError(
            f"resume={resume}: no such checkpoint file; use resume=auto (continue from "
            f"{out / 'last.pt'} if there is one), resume=never (start fresh) or the path of a checkpoint"
        )


def _resume_path(cfg, out: Path, rt: Runtime) -> Path | None:
    """The checkpoint resume= names (resume=auto: last.pt, or last.prev.pt when a save died between the
    two); None: there is none to resume from (resume=never, or resume=auto with neither there)."""
    resume = str(cfg.resume)
    _check_resume_value(cfg, out)
    if resume.strip().lower() in FRESH:
        return None
    if resume == "auto":
        for candidate in (out / "last.pt", out / PREVIOUS):  # no last.pt but a previous one: a save died in between
            if candidate.exists():
                return candidate
        _say(rt, f"resume=auto: no checkpoint at {out / 'last.pt'}; starting fresh")
        return None
    return Path(resume)


def _save_last(run: _Run, state: RunState, ranks_rng: list[dict]) -> None:
    """last.pt, keeping the one before it as last.prev.pt: if the new one is ever unreadable
    (a copy cut short, a full disk), resuming falls back to the previous epoch instead of to nothing."""
    if (run.out / "last.pt").exists():
        os.replace(run.out / "last.pt", run.out / PREVIOUS)
    _save(run.out / "last.pt", run, state, ranks_rng)


def _param_groups(core: torch.nn.Module, opt_cfg) -> list[dict]:
    """One group at `lr`, or, with `encoder_lr` set, a second group of the encoder's parameters at
    their own rate (the cosine schedule scales both alike; group 0, whose rate is logged, stays `lr`)."""
    if opt_cfg.encoder_lr is None:
        return [{"params": list(core.parameters())}]
    encoder = list(core.encoder.parameters())
    ids = {id(p) for p in encoder}
    return [
        {"params": [p for p in core.parameters() if id(p) not in ids]},
        {"params": encoder, "lr": opt_cfg.encoder_lr},
    ]


def _resume_checkpoint(cfg, out: Path, rt: Runtime, core: torch.nn.Module) -> dict | None:
    """The checkpoint to resume from (its payload, with its "path"), the same on every rank; with
    init_from and nothing to resume, {"init_weights": the tensors that initialise `core`, "path", "epoch"};
    None: neither, the run starts fresh.

    Rank 0 alone restores the mirror, looks for it and sends its bytes to the others, who wait in
    the broadcast (a barrier) until rank 0 is done: with one disk per node only rank 0's holds
    last.pt, and every rank must start from the same optimizer, scheduler and position. The bytes
    are read back with weights_only=True, as from a file. A rank-0 failure (a corrupt checkpoint, an unreachable
    mirror) stops every rank at once instead of leaving them in the broadcast.
    """
    saved = None
    if rt.main:
        try:
            if cfg.checkpoint_mirror:
                _restore_mirror(cfg, out)
            ckpt = _resume_path(cfg, out, rt)
            if ckpt is not None:
                saved, ckpt = _load_resumable(ckpt, rt)
                # a changed hyperparameter would be silently ignored: the saved optimizer and schedule win
                check_resume_config(ckpt, saved.get("config") or {}, OmegaConf.to_container(cfg, resolve=True))
                saved["path"] = str(ckpt)
                if cfg.init_from:
                    _say(
                        rt,
                        f"init_from={cfg.init_from} is not applied again: the run resumes from {ckpt}, whose "
                        "weights it already started from",
                    )
            elif cfg.init_from:
                saved = _load_init(cfg, out, core)
        except BaseException:
            _broadcast_bytes(rt, None)  # the others stop with a pointer to rank 0's error
            raise
        if rt.world_size == 1:
            return saved
        buf = io.BytesIO()
        if saved is not None:
            torch.save(saved, buf)
        _broadcast_bytes(rt, buf.getvalue())
        return saved
    data = _broadcast_bytes(rt, b"")
    if data is None:
        raise DataError(f"rank {rt.rank}: rank 0 could not resume the run (its error is above); stopping too")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True) if data else None


def _check_init_value(cfg) -> None:
    """A local init_from that is not there, refused before anything is written when the run cannot
    be resuming (a resumed run does not read it; an s3:// one is checked where it is downloaded)."""
    init, resume, out = cfg.init_from, str(cfg.resume), Path(cfg.output_dir)
    may_resume = resume.strip().lower() not in FRESH and (
        resume != "auto" or cfg.checkpoint_mirror or (out / "last.pt").exists() or (out / PREVIOUS).exists()
    )
    if init and not is_remote(str(init)) and not Path(init).is_file() and not may_resume:
        raise CheckpointError(
            f"init_from={init}: no such checkpoint file; give the path (or s3:// URI) of a run's "
            "best.pt or last.pt, or init_from=null to start from models.encoder.pretrained/weights"
        )


def _models_settings(cfg, rt: Runtime) -> dict:
    """The `models` section to build the network from: with init_from, without the hub or weights
    file (init_from's checkpoint, or a resumed one, replaces every encoder weight anyway)."""
    models = OmegaConf.to_container(cfg.models, resolve=True)
    enc = models["encoder"]
    if cfg.init_from and (enc["pretrained"] or enc["weights"]):
        given = f"weights={enc['weights']}" if enc["weights"] else "pretrained=true"
        _say(
            rt,
            f"init_from overrides models.encoder.{given}: the encoder's weights come from {cfg.init_from} "
            "(or from the checkpoint the run resumes)",
        )
        enc.update(pretrained=False, weights=None)
    return models


def _init_what(part: str) -> str:
    return "every weight" if part == "model" else "the encoder; decoder and head fresh"


def _load_init(cfg, out: Path, core: torch.nn.Module) -> dict:
    """init_from's checkpoint read (an s3:// one downloaded into a hidden folder of output_dir, then
    removed: it is not mirrored) and checked against `core`: {"init_weights", "path", "epoch"}."""
    from model.storage import download, exists

    uri = str(cfg.init_from)
    local = Path(uri)
    tmp = out / ".init_from"
    try:
        if is_remote(uri):
            if not exists(uri):
                raise CheckpointError(
                    f"init_from={uri}: no such object; give the s3:// URI of a run's best.pt or last.pt"
                )
            local = tmp / PurePosixPath(uri).name
            download(uri, local, progress=False)  # atomic: a temporary object renamed into place
        try:
            payload = load_checkpoint(local)
        except CheckpointError as exc:
            raise CheckpointError(f"init_from={uri}: {str(exc).removeprefix(str(local) + ': ')}") from None
        weights = init_weights(
            uri, payload, core.state_dict(), cfg.init_part, OmegaConf.to_container(cfg, resolve=True)
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"init_weights": weights, "path": uri, "epoch": payload.get("epoch")}


def _broadcast_bytes(rt: Runtime, data: bytes | None) -> bytes | None:
    """Rank 0's `data` on every rank (None: rank 0 failed); a no-op in a single process."""
    if rt.world_size == 1:
        return data
    size = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=rt.device)
    dist.broadcast(size, src=0)
    n = int(size.item())
    if n <= 0:
        return None if n < 0 else b""
    payload = (
        torch.frombuffer(bytearray(data), dtype=torch.uint8).to(rt.device)
        if rt.main
        else torch.empty(n, dtype=torch.uint8, device=rt.device)
    )
    dist.broadcast(payload, src=0)
    return payload.cpu().numpy().tobytes()


def _load_resumable(ckpt: Path, rt: Runtime) -> tuple[dict, Path]:
    try:
        return load_checkpoint(ckpt), ckpt
    except CheckpointError as exc:
        previous = ckpt.with_name(PREVIOUS)
        if ckpt.name != "last.pt" or not previous.exists():
            raise
        _say(rt, f"{exc}; resuming from the previous checkpoint {previous} instead")
        return load_checkpoint(previous), previous


def _save(path: Path, run: _Run, state: RunState, ranks_rng: list[dict]) -> None:
    """The checkpoint: weights, optimizer, schedule, scaler, random state, config and `state`'s keys.
    `ranks_rng`: every rank's random state (`_gather_rng`) in a DDP run, none in a single process;
    rank 0's is taken now."""
    nets = run.nets
    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    if ranks_rng:
        rng["ranks"] = [_own_rng(bool(ranks_rng[0]["cuda"].numel()))] + list(ranks_rng[1:])
    save_checkpoint(
        path,
        {
            "model": nets.core.state_dict(),
            "optimizer": nets.optimizer.state_dict(),
            "scheduler": nets.scheduler.state_dict(),
            "scaler": nets.scaler.state_dict(),
            "rng": rng,
            "config": OmegaConf.to_container(run.cfg, resolve=True),
            **state.to_payload(),
        },
    )


def _own_rng(cuda: bool) -> dict:
    """This process's CPU random state and its current GPU's (`_runtime` set it), empty on CPU."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if cuda else torch.empty(0, dtype=torch.uint8),
    }


def _gather_rng(rt: Runtime) -> list[dict]:
    """Every rank's random state (collective), so that each rank resumes its own stream: rank 0's
    differs from the others' once it has validated (a val DataLoader with workers draws a seed).
    Empty in a single process: its checkpoint holds rank 0's alone."""
    if rt.world_size == 1:
        return []
    own = _own_rng(rt.device.type == "cuda")
    states = []
    for key in ("torch", "cuda"):
        mine = own[key].to(rt.device)
        parts = [torch.empty_like(mine) for _ in range(rt.world_size)]
        dist.all_gather(parts, mine)
        states.append([p.cpu() for p in parts])
    return [{"torch": t, "cuda": c} for t, c in zip(*states)]


def _set_rng(rng: dict, rt: Runtime) -> None:
    """Restore this rank's random state: its own when the checkpoint holds one per rank of the same
    world size, else rank 0's (a single-process checkpoint, or a changed world size)."""
    ranks = rng.get("ranks") or []
    if len(ranks) == rt.world_size > 1:
        torch.set_rng_state(ranks[rt.rank]["torch"])
        if rt.device.type == "cuda" and ranks[rt.rank]["cuda"].numel():
            torch.cuda.set_rng_state(ranks[rt.rank]["cuda"], rt.device)
        return
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])


class _Stop:
    requested = False


def _stop_agreed(stop: _Stop, rt: Runtime) -> bool:
    """Whether any rank got SIGTERM; all ranks get the same answer at the same step. One signal
    may reach one rank only (a `kill` of one process); Kubernetes signals every container."""
    if rt.world_size == 1:
        return stop.requested
    flag = torch.tensor([int(stop.requested)], device=rt.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _barrier(rt: Runtime) -> None:
    if rt.world_size > 1:
        dist.barrier(device_ids=[rt.device.index] if rt.device.type == "cuda" else None)


def _install_sigterm() -> _Stop:
    stop = _Stop()

    def handler(signum, frame):
        stop.requested = True

    signal.signal(signal.SIGTERM, handler)
    return stop


def _progress(rt: Runtime, loader, epoch: int, epochs: int) -> Iterable:
    """The loader's batches, through a tqdm bar on rank 0 when stderr is a terminal."""
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


def _sum_over_ranks(values: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """[loss sum, steps] added over all ranks (a copy)."""
    total = values.clone()
    if rt.world_size > 1:
        dist.all_reduce(total)
    return total


def _say(rt: Runtime, text: str) -> None:
    if rt.main:
        print(text, flush=True)

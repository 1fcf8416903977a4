"""DDP on CPU: training samples/s with 1 and with 2 gloo ranks (torchrun), one core each, and the
scaling efficiency (2-rank samples/s over twice the 1-rank samples/s).

Each rank runs train()'s step as it is (EpochSampler shard, decode + augment + DB targets in the
process, forward, DBLoss, backward with DDP's gradient all-reduce, AdamW, the per-step stop-flag
all-reduce) on the SROIE sample at cpu_tiny's 384 px and batch 8 per rank. Weak scaling: the
global batch grows with the ranks, as it does when a run gets more GPUs. The time is that of the
slowest rank, after one warm-up step. On a machine whose cores are busy with other work, the
2-rank figure drops with it: the report gives the load average next to the numbers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

STEPS = 6  # timed steps per rank, after one warm-up step
REPO = Path(__file__).resolve().parents[2]


def run(root) -> dict:
    rates = {world: _launch(root, world) for world in (1, 2)}
    return {
        "image_size": 384,
        "batch_per_rank": 8,
        "timed_steps_per_rank": STEPS,
        "samples_per_s_1_rank": round(rates[1], 2),
        "samples_per_s_2_ranks": round(rates[2], 2),
        "scaling_efficiency": f"{rates[2] / (2 * rates[1]):.0%}",
        "cpu_cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def _launch(root, world: int) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(world),
            "--master_port",
            str(port),
            "-m",
            "tests.benchmarks.bench_ddp",
            str(root),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench_ddp with {world} rank(s) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["samples_per_s"]


def _worker(root: str) -> None:
    """One rank (under torchrun): train()'s step, timed; rank 0 prints the global samples/s."""
    import torch
    import torch.distributed as dist

    from model.config import augment_config, load_config, target_options
    from model.data.dataset import DetectionDataset, EpochSampler
    from model.data.splits import load_split
    from model.data.transforms import train_transform
    from model.net import build_model
    from model.net.loss import DBLoss
    from model.train import _loader, _runtime, _Stop, _stop_agreed

    torch.set_num_threads(1)
    cfg = load_config(["preset=cpu_tiny", f"dataset.root={root}", "dataset.num_workers=0"])
    rt = _runtime(cfg)
    torch.manual_seed(0)
    data = DetectionDataset(
        load_split(cfg.dataset, "train"), train_transform(augment_config(cfg)), seed=0, **target_options(cfg)
    )
    sampler = EpochSampler(len(data), seed=0, rank=rt.rank, world_size=rt.world_size)
    batches = iter(_loader(cfg, data, sampler, rt))
    core = build_model(cfg.models)
    model = torch.nn.parallel.DistributedDataParallel(core) if rt.world_size > 1 else core
    criterion = DBLoss(cfg.models.loss)
    optimizer = torch.optim.AdamW(core.parameters(), lr=cfg.models.optimizer.lr)
    stop = _Stop()
    model.train()

    def step() -> int:
        batch = next(batches).to(rt.device)  # normalises the image, as in train()
        loss, _ = criterion(model(batch.image), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _stop_agreed(stop, rt)
        return len(batch.names)

    step()
    if rt.world_size > 1:
        dist.barrier()
    start = time.perf_counter()
    samples = sum(step() for _ in range(STEPS))
    if rt.world_size > 1:
        dist.barrier()  # the slowest rank's time
    elapsed = time.perf_counter() - start
    if rt.main:
        print(json.dumps({"samples_per_s": samples * rt.world_size / elapsed}), flush=True)
    if rt.world_size > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1])

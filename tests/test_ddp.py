"""DDP that cannot hang: equal steps on every rank, one node or two, SIGTERM to one rank, exact resume.

The runs are real `torchrun` launches on CPU (gloo) of the tiny model on tiny synthetic receipts,
with 5 train images: odd, so before `EpochSampler` padded, rank 0 ran one step more than rank 1
and the job hung in DDP's gradient all-reduce.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from model.checkpoint import load_checkpoint
from model.data.dataset import EpochSampler
from tests.conftest import slow_fixture
from tests.test_train import REPO, jsonl, metric_lines

TRAIN_IMAGES = 5  # odd: 2 ranks x batch 2 -> 3 samples per rank (one repeated), 2 steps each


# ---- the sampler: equal steps, every sample, exact resume (fast) ---------------------------------------


@pytest.mark.parametrize("n,world,batch", [(97, 4, 8), (5, 2, 2), (10, 3, 4), (1, 4, 8), (2, 8, 1), (64, 4, 8)])
def test_every_rank_gets_the_same_number_of_batches_and_every_sample(n, world, batch):
    shards = [EpochSampler(n, seed=7, rank=r, world_size=world) for r in range(world)]
    for s in shards:
        s.set_epoch(2)
    batches = [len(DataLoader(s, batch_size=batch, collate_fn=list)) for s in shards]
    samples = [list(s) for s in shards]
    assert len(set(batches)) == 1, batches  # 97 images, 4 ranks, batch 8: was 4/3/3/3 steps
    assert all(len(s) == len(x) for s, x in zip(shards, samples))
    seen = [i for x in samples for _, i in x]
    assert set(seen) == set(range(n))
    assert len(seen) - n == -n % world  # padded like DistributedSampler(drop_last=False): < world repeats


def test_resume_within_an_epoch_continues_exactly_where_the_ranks_stopped():
    n, world, batch = 97, 4, 8
    whole = []
    for r in range(world):
        s = EpochSampler(n, seed=3, rank=r, world_size=world)
        s.set_epoch(1)
        whole.append(list(s))
    done = 2 * batch * world  # two steps on every rank: samples_done as train() counts it
    for r in range(world):
        s = EpochSampler(n, seed=3, rank=r, world_size=world)
        s.set_epoch(1)
        s.start_at(done)
        assert list(s) == whole[r][2 * batch :]


def test_a_resume_with_another_world_size_sees_each_remaining_sample_once():
    n, done = 97, 2 * 8 * 4  # stopped by 4 ranks after 2 steps, resumed by 3
    full = EpochSampler(n, seed=3)
    full.set_epoch(1)
    order = [i for _, i in full]
    rest = []
    for r in range(3):
        s = EpochSampler(n, seed=3, rank=r, world_size=3)
        s.set_epoch(1)
        s.start_at(done)
        rest += [i for _, i in s]
    assert set(rest) == set(order[done:]) and len(rest) - len(order[done:]) < 3


# ---- real torchrun runs (gloo on CPU) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from model.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth-odd")
    write_synthetic_dataset(
        root, 8, seed=5, splits=(5 / 8, 2 / 8, 1 / 8), workers=1, width=(300, 340), height=(420, 480), progress=False
    )
    return root


def args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "preset=cpu_tiny",
        f"dataset.root={data}",
        f"output_dir={out}",
        "dataset.image_size=96",
        "dataset.batch_size=2",
        "dataset.num_workers=0",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        "models.scheduler.T_max=2",
        "seed=3",
        *extra,
    ]


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "RECEIPTFLOW_DDP_TIMEOUT_S": "120"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*launcher: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "model.cli", "train"]


def single_node(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        torchrun("--nproc_per_node", "2", "--master_port", str(_free_port())) + argv,
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@slow_fixture(scope="module")
def two_ranks(data, tmp_path_factory) -> Path:
    """One uninterrupted 2-rank run on one node: the reference the other runs must match."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = single_node(args(data, out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "5 train" in proc.stdout and "world size 2" in proc.stdout
    assert "epoch 1 step 2/2" in proc.stdout and "epoch 2 step 2/2" in proc.stdout  # 3 samples, batch 2, per rank
    assert len(metric_lines(proc.stdout)) == 2
    return out


@pytest.mark.slow
def test_two_ranks_on_an_odd_dataset_finish(two_ranks):
    assert [h["epoch"] for h in jsonl(two_ranks / "metrics.jsonl")] == [1, 2]
    saved = load_checkpoint(two_ranks / "last.pt")
    assert saved["epoch"] == 2 and len(saved["rng"]["ranks"]) == 2


@pytest.mark.slow
def test_two_nodes_on_loopback_match_two_ranks_on_one_node(data, two_ranks, tmp_path):
    """2 nodes x 1 process, c10d rendezvous on 127.0.0.1, one output_dir ("disk") per node: only
    rank 0's gets files, and the numbers are those of the single-node run."""
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = []
    for node in range(2):
        launcher = [
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            endpoint,
            "--rdzv_id",
            "receiptflow-test",
        ]
        nodes.append(
            subprocess.Popen(
                torchrun(*launcher) + args(data, tmp_path / f"node{node}"),
                cwd=REPO,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = [p.communicate(timeout=300)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    with_files = [tmp_path / f"node{i}" for i in range(2) if (tmp_path / f"node{i}" / "metrics.jsonl").exists()]
    assert len(with_files) == 1, logs  # rank 0's node alone
    assert not (
        next(tmp_path / f"node{i}" for i in range(2) if tmp_path / f"node{i}" not in with_files) / "last.pt"
    ).exists()
    assert jsonl(with_files[0] / "metrics.jsonl") == jsonl(two_ranks / "metrics.jsonl")


def _workers(launcher_pid: int) -> dict[int, int]:
    """rank -> pid of the training processes torchrun started (its children)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(
                v.split("=", 1)
                for v in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in v
            )
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if ppid == launcher_pid and "RANK" in env:
            found[int(env["RANK"])] = int(entry.name)
    return found


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_all_at_one_step_then_resume_matches(data, two_ranks, tmp_path):
    """`kill` of rank 1 alone mid-run: every rank stops at the same step, rank 0 saves last.pt once (and
    mirrors it), both exit 143; a new launch on an empty disk restores the mirror on rank 0, hands the
    checkpoint to rank 1 and ends with the uninterrupted 2-rank run's numbers."""
    out, mirror = tmp_path / "cut", tmp_path / "mirror"
    proc = subprocess.Popen(
        torchrun("--nproc_per_node", "2", "--master_port", str(_free_port()))
        + args(data, out, f"checkpoint_mirror={mirror}"),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 1 step 1/"):  # the stop lands at epoch 1 step 2 or epoch 2 step 1: mid-run
            deadline = time.monotonic() + 30
            while len(ranks := _workers(proc.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            os.kill(ranks[1], signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=300)
    log = "".join(seen) + rest
    assert proc.returncode != 0, log  # torchrun reports its workers' failure
    assert log.count("SIGTERM: saved") == 1, log  # rank 0 speaks (and saves) once
    # torchrun's summary names each failed rank with its exit code
    assert "rank      : 0" in log and "rank      : 1" in log and log.count("exitcode  : 143") == 2, log
    saved = load_checkpoint(mirror / "last.pt")
    assert saved["samples_done"] > 0 and saved["loss_steps"] == 2 * saved["steps"]

    fresh = tmp_path / "new-pod"
    resumed = single_node(args(data, fresh, "resume=auto", f"checkpoint_mirror={mirror}"))
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert f"restoring the run from its mirror {mirror}" in resumed.stdout and "resuming from" in resumed.stdout
    assert jsonl(fresh / "metrics.jsonl") == jsonl(two_ranks / "metrics.jsonl")


@pytest.mark.slow
def test_a_rank_0_that_cannot_resume_stops_every_rank_with_its_error(data, tmp_path):
    out = tmp_path / "bad"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not a checkpoint at all")
    proc = single_node(args(data, out, "resume=auto"))
    assert proc.returncode != 0
    assert f"{out / 'last.pt'}: not a readable checkpoint" in proc.stderr  # and rank 1 did not wait for it

"""Record the sweeps the replay harness uses (tests/fixtures/curves/): real trainings, every value measured.

Run once, from the repository root, on CPU:

    OMP_NUM_THREADS=1 python tests/record_curves.py [--set cpu_tiny|sroie_dev] [--work DIR] [--out FILE]

`--set sroie_dev` (tests/fixtures/curves/sroie_dev_lite0.json, ~1 h on 2 shared cores): ten trainings of the
real-receipt recipe `cpu_receipts` (ImageNet Lite0) on ../shared/data/sroie-dev -- receipts no fold of
`make bench-quality` holds out -- made affordable for ten runs: 48 train / 24 val receipts, 512 px, 8 epochs.
Eight learning rates log-spaced 1e-4 to 1e-2 under the preset's cosine schedule, and two with a schedule that
decays half as fast (T_max 16). The floor is fixed here, before any value is recorded: 0.9653, the checked-in
sweep's (pipelines/sweep.py: the seed's bar), so the replay judges the rule a user gets by default.

`--set cpu_tiny` (the default; tests/fixtures/curves/cpu_tiny_lr.json, about 10-15 min on one shared core): twelve real trainings of `cpu_tiny` from scratch on 40 synthetic receipts (the data of tests/learned.py:
300-400 x 500-700 px, 320 px, batch 2), 10 epochs, seed 0, one learning rate each, log-spaced 10x below to
10x above the preset's 3e-3. The fixture keeps each trial's per-epoch `val/hmean` as metrics.jsonl wrote it
and the exact commands; "created" is the order the replay creates the trials in, a fixed shuffle so that
early, low and high rates mix as a Bayesian search's first trials do (the order is ours, not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from pipelines.sweep import FLOOR

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EPOCHS = 10
LRS = (0.0003, 0.0005, 0.0008, 0.0012, 0.002, 0.003, 0.0045, 0.007, 0.01, 0.015, 0.02, 0.03)
# Creation order, as indices into LRS: the preset's rate first (a user's first trial), then a shuffle.
ORDER = (5, 0, 9, 3, 7, 1, 11, 4, 8, 2, 10, 6)
SYNTH = ["synth", "--n", "40", "--seed", "11", "--width", "300", "400", "--height", "500", "700", "--workers", "1"]


def train_args(root: Path, out: Path, lr: float) -> list[str]:
    return [
        "train",
        "preset=cpu_tiny",
        f"dataset.root={root}",
        f"output_dir={out}",
        "dataset.image_size=320",
        "dataset.batch_size=2",
        "dataset.num_workers=0",
        f"trainer.max_epochs={EPOCHS}",
        f"models.scheduler.T_max={EPOCHS}",
        f"models.optimizer.lr={lr}",
        "seed=0",
        "trainer.eval_workers=0",
        "resume=never",
        "trainer.log_every_n_steps=1000",
    ]


SROIE_EPOCHS = 8
# (lr, T_max): the preset's cosine over the run at eight rates, then two decaying half as fast.
SROIE_TRIALS = (
    (0.0001, 8),
    (0.0002, 8),
    (0.0005, 8),
    (0.001, 8),
    (0.002, 8),
    (0.003, 8),
    (0.005, 8),
    (0.01, 8),
    (0.0005, 16),
    (0.002, 16),
)
# Creation order: the preset's rate first, then a shuffle mixing low, high and slow-decay trials.
SROIE_ORDER = (3, 7, 0, 8, 5, 1, 9, 6, 2, 4)
SROIE_FLOOR = FLOOR  # 0.9653, the checked-in sweep's floor, fixed before recording (pipelines/sweep.py)
CONVERT = ["convert", "sroie", "--split", "0.4,0.2,0.4", "--seed", "42"]  # 48 train / 24 val / 48 unused


def sroie_name(lr: float, t_max: int) -> str:
    return f"lr{lr:g}" + ("" if t_max == SROIE_EPOCHS else f"-tmax{t_max}")


def sroie_train_args(root: Path, out: Path, lr: float, t_max: int) -> list[str]:
    return [
        "train",
        "preset=cpu_receipts",
        f"dataset.root={root}",
        f"output_dir={out}",
        "dataset.image_size=512",
        "dataset.num_workers=0",
        f"trainer.max_epochs={SROIE_EPOCHS}",
        f"models.scheduler.T_max={t_max}",
        f"models.optimizer.lr={lr}",
        "seed=0",
        "trainer.eval_workers=0",
        "resume=never",
        "trainer.log_every_n_steps=1000",
    ]


def _values(out: Path) -> list[float]:
    return [round(json.loads(line)["val/hmean"], 6) for line in (out / "metrics.jsonl").read_text().splitlines()]


def record_sroie_dev(work: Path, train: bool) -> dict:
    root = work / "data"
    src = SHARED / "data" / "sroie-dev"
    if train:
        _run([*CONVERT, str(src), str(root), "--overwrite"])
    trials = []
    commands = ["python -m model.cli " + shlex.join([*CONVERT, "../shared/data/sroie-dev", "DATA", "--overwrite"])]
    for created, i in enumerate(SROIE_ORDER):
        lr, t_max = SROIE_TRIALS[i]
        name = sroie_name(lr, t_max)
        out = work / name
        if train:
            _run(sroie_train_args(root, out, lr, t_max))
        trials.append({"name": name, "created": created, "lr": lr, "T_max": t_max, "values": _values(out)})
        commands.append(
            "python -m model.cli " + shlex.join(sroie_train_args(Path("DATA"), Path(f"RUNS/{name}"), lr, t_max))
        )
    return {
        "description": "cpu_receipts (ImageNet Lite0) on sroie-dev, 48 train / 24 val receipts at 512 px, 8 epochs: "
        "8 learning rates 1e-4 to 1e-2 (cosine over the run) and 2 decaying half as fast; val/hmean "
        "per epoch (recorded by tests/record_curves.py --set sroie_dev; every value is measured, "
        "only the creation order is chosen)",
        "objective": "maximize",
        "metric": "val/hmean",
        "recorded": "all values",
        "commands": commands,
        # the floor was fixed before recording (SROIE_FLOOR); start_step 4 is Katib's default
        "replay": {"parallel": 2, "start_step": 4, "min_trials_required": 3, "floor": SROIE_FLOOR},
        "trials": trials,
    }


def _run(args: list[str]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print("$ python -m model.cli " + shlex.join(args), flush=True)
    subprocess.run([sys.executable, "-m", "model.cli", *args], cwd=REPO, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("cpu_tiny", "sroie_dev"), default="cpu_tiny", help="which sweep to record")
    ap.add_argument("--work", help="scratch folder for the data and the runs (default build/curves[-sroie_dev])")
    ap.add_argument(
        "--out", help="the fixture (default tests/fixtures/curves/cpu_tiny_lr.json or sroie_dev_lite0.json)"
    )
    ap.add_argument("--no-train", action="store_true", help="rebuild the fixture from the runs already in --work")
    args = ap.parse_args(argv)
    tiny = args.set == "cpu_tiny"
    work = (REPO / (args.work or ("build/curves" if tiny else "build/curves-sroie_dev"))).resolve()
    dest = REPO / (
        args.out or ("tests/fixtures/curves/cpu_tiny_lr.json" if tiny else "tests/fixtures/curves/sroie_dev_lite0.json")
    )
    fixture = record_cpu_tiny(work, not args.no_train) if tiny else record_sroie_dev(work, not args.no_train)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {dest}")
    return 0


def record_cpu_tiny(work: Path, train: bool) -> dict:
    root = work / "data"
    if train:
        _run([*SYNTH, "--out", str(root), "--force"])
    trials, commands = [], [" ".join(["python -m model.cli", *SYNTH, "--out", "DATA", "--force"])]
    for created, i in enumerate(ORDER):
        lr = LRS[i]
        name = f"lr{lr:g}"
        out = work / name
        if train:
            _run(train_args(root, out, lr))
        trials.append({"name": name, "created": created, "lr": lr, "values": _values(out)})
        commands.append("python -m model.cli " + shlex.join(train_args(Path("DATA"), Path(f"RUNS/{name}"), lr)))
    default = next(t for t in trials if t["lr"] == 0.003)
    return {
        "description": "cpu_tiny from scratch, 12 learning rates, 10 epochs each, val/hmean per epoch (recorded by "
        "tests/record_curves.py; every value is measured, only the creation order is chosen)",
        "objective": "maximize",
        "metric": "val/hmean",
        "recorded": "all values",
        "commands": commands,
        # Replay settings: the checked-in sweep's slots and min_trials_required; start_step 4 (Katib's default,
        # 40 % of 10 epochs, near the checked-in 10 of 22); floor = the best val/hmean of the preset's own rate,
        # i.e. "never stop a trial already as good as the default configuration".
        "replay": {"parallel": 2, "start_step": 4, "min_trials_required": 3, "floor": max(default["values"])},
        "trials": trials,
    }


if __name__ == "__main__":
    sys.exit(main())

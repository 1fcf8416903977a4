"""Record the `cpu_tiny` learning-rate sweep the replay harness uses (tests/fixtures/curves/cpu_tiny_lr.json).

Run once, from the repository root, on CPU (about 10-15 min on one shared core):

    OMP_NUM_THREADS=1 python tests/record_curves.py [--work build/curves] [--out tests/fixtures/curves/cpu_tiny_lr.json]

Twelve real trainings of `cpu_tiny` from scratch on 40 synthetic receipts (the data of tests/learned.py:
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

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 10
LRS = (0.0003, 0.0005, 0.0008, 0.0012, 0.002, 0.003, 0.0045, 0.007, 0.01, 0.015, 0.02, 0.03)
# Creation order, as indices into LRS: the preset's rate first (a user's first trial), then a shuffle.
ORDER = (5, 0, 9, 3, 7, 1, 11, 4, 8, 2, 10, 6)
SYNTH = ["synth", "--n", "40", "--seed", "11", "--width", "300", "400", "--height", "500", "700", "--workers", "1"]


def train_args(root: Path, out: Path, lr: float) -> list[str]:
    return ["train", "preset=cpu_tiny", f"dataset.root={root}", f"output_dir={out}", "dataset.image_size=320",
            "dataset.batch_size=2", "dataset.num_workers=0", f"trainer.max_epochs={EPOCHS}",
            f"models.scheduler.T_max={EPOCHS}", f"models.optimizer.lr={lr}", "seed=0", "trainer.eval_workers=0",
            "resume=never", "trainer.log_every_n_steps=1000"]


def _run(args: list[str]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print("$ python -m model.cli " + shlex.join(args), flush=True)
    subprocess.run([sys.executable, "-m", "model.cli", *args], cwd=REPO, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="build/curves", help="scratch folder for the data and the runs")
    ap.add_argument("--out", default="tests/fixtures/curves/cpu_tiny_lr.json")
    ap.add_argument("--no-train", action="store_true", help="rebuild the fixture from the runs already in --work")
    args = ap.parse_args(argv)
    work = (REPO / args.work).resolve()
    root = work / "data"
    if not args.no_train:
        _run([*SYNTH, "--out", str(root), "--force"])
    trials, commands = [], [" ".join(["python -m model.cli", *SYNTH, "--out", "DATA", "--force"])]
    for created, i in enumerate(ORDER):
        lr = LRS[i]
        name = f"lr{lr:g}"
        out = work / name
        if not args.no_train:
            _run(train_args(root, out, lr))
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        trials.append({"name": name, "created": created, "lr": lr,
                       "values": [round(m["val/hmean"], 6) for m in history]})
        commands.append("python -m model.cli " + shlex.join(train_args(Path("DATA"), Path(f"RUNS/{name}"), lr)))
    default = next(t for t in trials if t["lr"] == 0.003)
    fixture = {
        "description": "cpu_tiny from scratch, 12 learning rates, 10 epochs each, val/hmean per epoch (recorded by "
                       "tests/record_curves.py; every value is measured, only the creation order is chosen)",
        "objective": "maximize", "metric": "val/hmean", "recorded": "all values", "commands": commands,
        # Replay settings: the checked-in sweep's slots and min_trials_required; start_step 4 (Katib's default,
        # 40 % of 10 epochs, near the checked-in 10 of 22); floor = the best val/hmean of the preset's own rate,
        # i.e. "never stop a trial already as good as the default configuration".
        "replay": {"parallel": 2, "start_step": 4, "min_trials_required": 3, "floor": max(default["values"])},
        "trials": trials,
    }
    dest = REPO / args.out
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One detector that has learned, trained once per test session and shared by tests/test_learning.py
and tests/test_predict.py (through the `learned` fixture of tests/conftest.py; the run is cached here).

`cpu_tiny` from scratch on 40 synthetic receipts (28 train / 8 val / 4 test, 300-400 x 500-700 px)
at 320 px, batch 2, 12 epochs, seed 0, in a subprocess like a pod, validating with the CLEval
worker pool (trainer.eval_workers=2, the production path). Measured before choosing it (2 CPU
cores shared with other work, OMP_NUM_THREADS=1), val/hmean by epoch:

    seed 0: 0   0   0   0   .45 .51 .81 .82 .84 .85 .85 .85   (train 115 s under load 6)
    seed 1: 0   0   0   .61 .75 .80 .83 .84 .85 .85 .85 .85   (70 s)
    seed 2: 0   .74 .80 .73 .77 .85 .85 .85 .87 .86 .86 .87   (73 s)
    seed 3: 0   0   0   0   0   .47 .78 .78 .80 .83 .83 .84   (36 s on a quiet machine)

At 256 px the same run learned with seeds 0 and 2 (0.82, 0.81) but seed 1 stayed at a constant map
(val/hmean 0 for 12 epochs, also with batch 4 or lr 1.5e-3); our guess, not measured: at that
scale too many words fall under min_text_size. The tests ask val/hmean > 0.7 at the end: 0.14
under the worst seed measured, far above what an untrained or broken detector scores (0.0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_RECEIPTS, DATA_SEED = 40, 11
SPLITS = (0.7, 0.2, 0.1)
EPOCHS = 12
SEED = 0
LEARNED_HMEAN = 0.7  # the bar the learned model clears (measured 0.84-0.87 over 4 seeds)

_cache: dict[str, "Learned"] = {}


@dataclass(frozen=True)
class Learned:
    root: Path  # the synthetic dataset root (train/val/test)
    out: Path  # the run's output_dir: last.pt, best.pt, metrics.jsonl, config.yaml
    stdout: str
    stderr: str
    history: list[dict]  # metrics.jsonl

    @property
    def checkpoint(self) -> Path:
        return self.out / "last.pt"


def train_args(root: Path, out: Path) -> list[str]:
    return [
        "preset=cpu_tiny",
        f"dataset.root={root}",
        f"output_dir={out}",
        "dataset.image_size=320",
        "dataset.batch_size=2",
        "dataset.num_workers=0",
        f"trainer.max_epochs={EPOCHS}",
        f"models.scheduler.T_max={EPOCHS}",
        f"seed={SEED}",
        "trainer.eval_workers=2",
        "resume=never",
        "trainer.log_every_n_steps=1000",
    ]


def learned_run(tmp_path_factory) -> Learned:
    """The session's learned run (trained on first use)."""
    if "run" not in _cache:
        from model.data.synth import write_synthetic_dataset

        root = tmp_path_factory.mktemp("learn_data")
        write_synthetic_dataset(
            root,
            N_RECEIPTS,
            seed=DATA_SEED,
            splits=SPLITS,
            workers=1,
            width=(300, 400),
            height=(500, 700),
            progress=False,
            overwrite=True,
        )
        out = tmp_path_factory.mktemp("learned")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "model.cli", "train", *train_args(root, out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        _cache["run"] = Learned(root, out, proc.stdout, proc.stderr, history)
    return _cache["run"]

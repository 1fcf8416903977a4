"""The detector learns, and validation inside a training scores what scoring in one process does.

One seeded training (tests/learned.py: cpu_tiny from scratch on 40 synthetic receipts, 12 epochs,
validating with the CLEval worker pool as a production training does) serves every test here
and the eval-vs-score agreement in tests/test_predict.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.learned import EPOCHS, LEARNED_HMEAN, REPO

pytestmark = pytest.mark.slow


def test_cpu_tiny_learns_to_detect_synthetic_receipts(learned):
    history = learned.history
    assert [m["epoch"] for m in history] == list(range(1, EPOCHS + 1))
    hmeans = [m["val/hmean"] for m in history]
    assert hmeans[0] < 0.3, hmeans  # it starts from nothing (measured 0.0: a from-scratch net detects no word)
    assert hmeans[-1] > LEARNED_HMEAN, hmeans
    assert history[-1]["val/precision"] > LEARNED_HMEAN and history[-1]["val/recall"] > LEARNED_HMEAN / 2, history[-1]
    assert history[-1]["train/loss"] < 0.8 * history[0]["train/loss"], [m["train/loss"] for m in history]
    assert "CLEval worker process died" not in learned.stderr  # validated in the pool, not in the fallback


def test_validation_in_the_worker_pool_inside_training_equals_scoring_in_one_process(learned):
    """The training validated in its CLEval worker pool (forkserver processes started beside the training's
    threads); `receiptflow eval` of the same last.pt, scoring in its own process (eval_workers=0), gives the
    same numbers exactly."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.cli",
            "eval",
            str(learned.checkpoint),
            f"dataset.root={learned.root}",
            "trainer.eval_workers=0",
            "--split",
            "val",
            "--json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stderr
    scored = json.loads(proc.stdout.strip().splitlines()[-1])
    last = learned.history[-1]
    assert scored["val/hmean"] > LEARNED_HMEAN  # a comparison of real detections, not of two zeros
    assert scored == {k: last[k] for k in ("val/hmean", "val/precision", "val/recall")}

"""Reliability of whole local pipeline runs: a run killed with SIGKILL mid-epoch and resumed with
`--resume RUN_ID` ends exactly like an uninterrupted one; a dataset with 10 % bad items trains on
the rest and the run summary names every skipped item; strict mode stops before training with the
full list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_pipeline import REPO, _cli

pytestmark = pytest.mark.slow

# 3 epochs and a step line per batch, so the kill lands inside an epoch of the replication
PARAMS = [
    "--param",
    "preset=cpu_tiny",
    "--param",
    "epochs=3",
    "--param",
    "run8_t_max=3",
    "--param",
    "run3_t_max=3",
    "--param",
    "folds=2",
    "--param",
    "min_vote=1",
    "--param",
    'overrides=["dataset.batch_size=4", "dataset.num_workers=0", "trainer.eval_workers=0", "trainer.log_every_n_steps=1"]',
]


def _synth(out: Path, n: int) -> Path:
    proc = _cli("synth", "--out", str(out), "--n", str(n), "--seed", "7", "--workers", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def _run(
    data: Path, out: Path, kfp_root: Path, run_id: str, *extra: str, resume: bool = False
) -> subprocess.CompletedProcess:
    run = ["--resume", run_id] if resume else ["--param", f"run_id={run_id}"]
    return _cli(
        "pipeline",
        "run",
        "--local",
        "--data",
        str(data),
        "--output",
        str(out),
        "--pipeline-root",
        str(kfp_root),
        *run,
        *PARAMS,
        *extra,
    )


def _results(out: Path, run_id: str) -> dict:
    run = out / "runs" / run_id
    # "time" is each epoch's wall-clock stamp (Katib's observation time): the one field a rerun may change
    models = {
        p.parent.name: [{k: v for k, v in h.items() if k != "time"} for h in json.loads(p.read_text())["history"]]
        for p in sorted((run / "models").glob("*/summary.json"))
    }
    return {
        "submission": (run / "submission.csv").read_bytes(),
        "ensemble": (run / "ensemble.json").read_bytes(),
        "histories": models,
    }


def test_a_run_killed_mid_epoch_resumes_on_rerun_and_ends_like_an_uninterrupted_one(tmp_path):
    data = _synth(tmp_path / "data", 12)
    whole = _run(data, tmp_path / "out", tmp_path / "kfp-a", "whole")
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "model.cli",
        "pipeline",
        "run",
        "--local",
        "--data",
        str(data),
        "--output",
        str(tmp_path / "out"),
        "--pipeline-root",
        str(tmp_path / "kfp-b"),
        "--param",
        "run_id=killed",
        *PARAMS,
    ]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )  # its own process group: the kill takes every task with it
    seen, deadline = [], time.monotonic() + 300
    for line in proc.stdout:
        seen.append(line)
        if "epoch 2 step 2/" in line:  # the replication, inside its second epoch
            os.killpg(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen[-30:])
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-30:])
    mirror = tmp_path / "out" / "runs" / "killed" / "checkpoints" / "replication"
    assert (mirror / "last.pt").is_file() and not (tmp_path / "out" / "runs" / "killed" / "submission.csv").exists()
    assert any(
        "rerun the same command with --resume killed" in line for line in seen
    )  # said up front: SIGKILL leaves no last words

    rerun = _run(data, tmp_path / "out", tmp_path / "kfp-c", "killed", resume=True)  # the one-command recovery
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resuming run killed from {tmp_path / 'out'}/runs/killed/checkpoints/: replication" in rerun.stdout
    assert f"restoring the run from its mirror {mirror}" in rerun.stdout
    assert "resuming from" in rerun.stdout and "epoch 2, 0 samples into it" in rerun.stdout
    assert _results(tmp_path / "out", "killed") == _results(tmp_path / "out", "whole")


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """30 receipts, 4 of them broken in four different ways (> 10 %): (file, reason) of each."""
    root = _synth(tmp_path_factory.mktemp("bad") / "data", 30)
    train = json.loads((root / "jsons" / "train.json").read_text())
    names = sorted(train["images"])
    first_word = lambda n: next(iter(train["images"][n]["words"].values()))  # noqa: E731
    truncated, short, nan, missing = names[:4]
    path = root / "images" / "train" / truncated
    path.write_bytes(path.read_bytes()[:300])
    first_word(short)["points"] = first_word(short)["points"][:3]
    first_word(nan)["points"][0][0] = float("nan")
    (root / "images" / "train" / missing).unlink()
    (root / "jsons" / "train.json").write_text(json.dumps(train))
    return root, [
        (truncated, "cannot decode image"),
        (short, "has 3 point(s)"),
        (nan, "NaN"),
        (missing, "listed but missing"),
    ]


def test_lenient_run_trains_on_the_rest_and_the_summary_names_every_skipped_item(bad_data, tmp_path):
    root, broken = bad_data
    proc = _run(root, tmp_path / "out", tmp_path / "kfp", "lenient", "--param", "epochs=1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (tmp_path / "out" / "runs" / "lenient" / "summary.md").read_text()
    data = summary.split("# Data", 1)[1]
    assert "4 item(s) skipped by validation" in data
    lines = [line for line in data.splitlines() if line.startswith("- ")]
    assert len(lines) == 4
    for name, reason in broken:
        assert any(name in line and reason.lower() in line.lower() for line in lines), (name, reason, lines)
    assert all(
        line.startswith(f"- {root}/") and "/kfp/" not in line for line in lines
    )  # the user's paths, not the artifact's


def test_strict_run_stops_before_training_with_every_problem_listed(bad_data, tmp_path):
    root, broken = bad_data
    proc = _run(root, tmp_path / "out", tmp_path / "kfp", "strict", "--param", "strict=true")
    assert proc.returncode == 2
    line = next(line for line in proc.stdout.splitlines() if "DataError: " in line and "strict mode and" in line)
    assert "strict mode and 4 problem(s)" in line
    for name, reason in broken:
        assert name in line, name
    assert "Executing task \x1b[96m'train'" not in proc.stdout

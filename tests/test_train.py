"""Real training runs of a tiny model on tiny synthetic receipts, in subprocesses like a pod."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from model.checkpoint import CheckpointError, load_checkpoint
from model.metric_lines import KATIB_METRICS_FILTER

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
# A decimal that Go's strconv.ParseFloat reads as a finite float (no nan/inf words, not empty)
GO_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([Ee][+-]?\d+)?")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from model.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(
        root, 8, seed=5, splits=(0.5, 0.25, 0.25), workers=1, width=(300, 340), height=(420, 480), progress=False
    )
    return root


def args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "preset=cpu_tiny",
        f"dataset.root={data}",
        f"output_dir={out}",
        "dataset.image_size=128",
        "dataset.batch_size=2",
        "dataset.num_workers=0",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "models.scheduler.T_max=3",
        "seed=3",
        *extra,
    ]


def run_train(argv: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "model.cli", "train", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def jsonl(path: Path, *, times: bool = False) -> list[dict]:
    """metrics.jsonl's records; without their wall-clock "time" unless asked (runs compared differ in it)."""
    return [
        {k: v for k, v in json.loads(line).items() if times or k != "time"} for line in path.read_text().splitlines()
    ]


# What Katib's collector takes as the observation time: the line's first space-separated token, when Go's
# time.Parse(time.RFC3339Nano) accepts it (katib v0.19.0 file-metricscollector.go:89-99).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def metric_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if " epoch=" in line]


def test_metric_lines_parse_with_the_katib_filter_into_the_exact_values(data, tmp_path):
    proc = run_train(args(data, tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = jsonl(tmp_path / "run" / "metrics.jsonl", times=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # each metric line is led by its UTC time, the same as metrics.jsonl's, strictly increasing
    stamps = [line.split(" ", 1)[0] for line in metric_lines(proc.stdout)]
    assert stamps == [h["time"] for h in history]
    assert all(RFC3339.fullmatch(t) and t.endswith("Z") for t in stamps), stamps
    assert sorted(set(stamps)) == stamps
    parsed = []
    for line in proc.stdout.splitlines():
        found = {name: value for name, value, *_ in re.findall(KATIB_METRICS_FILTER, line)}
        if "val/hmean" in found:
            parsed.append({k: float(v) for k, v in found.items()})
    assert len(parsed) == 3
    for line, h in zip(parsed, history):
        for key in ("val/hmean", "val/precision", "val/recall", "train/loss", "lr"):
            assert line[key] == h[key], key
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "last.pt").exists()
    # Katib's default filter would see none of these names
    default = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
    assert not any("val/hmean" == n for line in proc.stdout.splitlines() for n, *_ in re.findall(default, line))


def test_a_diverged_run_never_prints_a_value_the_filter_cannot_turn_into_a_float(data, tmp_path):
    """An absurd lr makes the loss nan: Katib's collector (strconv.ParseFloat on every match, klog.Fatalf
    on an error: katib v0.19.0 file-metricscollector/main.go:205-216) must never get a match it cannot parse."""
    proc = run_train(args(data, tmp_path / "run", "models.optimizer.lr=1e6", "trainer.max_epochs=2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = jsonl(tmp_path / "run" / "metrics.jsonl")
    assert any(math.isnan(h["train/loss"]) for h in history), history  # it really diverged
    output = proc.stdout + proc.stderr  # Katib's wrapper captures both streams
    values = [m.group(2) for line in output.splitlines() for m in re.finditer(KATIB_METRICS_FILTER, line, re.ASCII)]
    assert values and all(GO_FLOAT.fullmatch(v) and math.isfinite(float(v)) for v in values), values
    assert len(metric_lines(proc.stdout)) == 2  # every epoch still reports val/hmean
    assert "not finite, left out of the metric line: train/loss is nan" in proc.stdout


def test_sigterm_mid_epoch_then_resume_ends_like_an_uninterrupted_run(data, tmp_path):
    whole = run_train(args(data, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "cut"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "model.cli", "train", *args(data, out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 2 step 1/"):  # mid-epoch: one step of epoch 2 done
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, "".join(seen) + rest
    assert "SIGTERM: saved" in rest
    saved = load_checkpoint(out / "last.pt")
    assert saved["epoch"] == 1 and saved["samples_done"] > 0

    resumed = run_train(args(data, out, "resume=auto"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout
    assert jsonl(out / "metrics.jsonl") == jsonl(tmp_path / "whole" / "metrics.jsonl")


def test_resume_auto_without_checkpoint_starts_fresh_and_says_so(data, tmp_path):
    proc = run_train(args(data, tmp_path / "fresh", "resume=auto", "trainer.max_epochs=1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no checkpoint" in proc.stdout and "starting fresh" in proc.stdout


def test_checkpoint_mirror_restores_a_run_whose_pod_lost_its_disk(data, tmp_path):
    """The pipeline's preemption path: every epoch is mirrored; a new pod (empty output_dir)
    continues from the mirror and ends like one uninterrupted run."""
    mirror = tmp_path / "mirror"
    whole = run_train(args(data, tmp_path / "whole", "trainer.max_epochs=2", "models.scheduler.T_max=2"))
    first = run_train(
        args(data, tmp_path / "pod1", "trainer.max_epochs=1", "models.scheduler.T_max=2", f"checkpoint_mirror={mirror}")
    )
    assert whole.returncode == 0 and first.returncode == 0, first.stderr[-2000:]
    assert {p.name for p in mirror.iterdir()} == {"last.pt", "best.pt", "metrics.jsonl", "config.yaml"}
    second = run_train(
        args(data, tmp_path / "pod2", "trainer.max_epochs=2", "models.scheduler.T_max=2", f"checkpoint_mirror={mirror}")
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"restoring the run from its mirror {mirror}" in second.stdout and "resuming from" in second.stdout
    assert jsonl(tmp_path / "pod2" / "metrics.jsonl") == jsonl(tmp_path / "whole" / "metrics.jsonl")
    assert jsonl(mirror / "metrics.jsonl") == jsonl(tmp_path / "whole" / "metrics.jsonl")
    assert load_checkpoint(mirror / "last.pt")["epoch"] == 2


def test_corrupt_or_truncated_checkpoint_is_a_clear_error(data, tmp_path):
    out = tmp_path / "bad"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not a checkpoint at all")
    proc = run_train(args(data, out, "resume=auto"))
    assert proc.returncode != 0
    assert str(out / "last.pt") in proc.stderr and "not a readable checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_truncated_last_checkpoint_falls_back_to_the_previous_one(data, tmp_path):
    """A last.pt cut short (a copy interrupted, a full disk) costs one epoch, not the run: resume
    takes last.prev.pt, and the run still ends exactly like an uninterrupted one."""
    whole = run_train(args(data, tmp_path / "whole"))
    cut = tmp_path / "cut"
    first = run_train(args(data, cut, "trainer.max_epochs=2"))
    assert whole.returncode == 0 and first.returncode == 0, first.stderr[-2000:]
    assert load_checkpoint(cut / "last.prev.pt")["epoch"] == 1 and load_checkpoint(cut / "last.pt")["epoch"] == 2
    data_bytes = (cut / "last.pt").read_bytes()
    (cut / "last.pt").write_bytes(data_bytes[: len(data_bytes) // 2])
    second = run_train(args(data, cut))
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming from the previous checkpoint {cut / 'last.prev.pt'} instead" in second.stdout
    assert "resuming from" in second.stdout and "epoch 2, 0 samples into it" in second.stdout
    assert jsonl(cut / "metrics.jsonl") == jsonl(tmp_path / "whole" / "metrics.jsonl")  # epoch 2 once, not twice


def test_checkpoints_load_weights_only(tmp_path):
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": {}, "extra": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}}, good)
    good.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(good)


def test_ddp_with_torchrun_validates_and_saves_once(data, tmp_path):
    """Two processes on CPU (gloo): each trains on its share, rank 0 alone validates and writes."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "model.cli",
            "train",
            *args(data, out, "trainer.max_epochs=2"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout
    assert [h["epoch"] for h in jsonl(out / "metrics.jsonl")] == [1, 2]
    assert len(metric_lines(proc.stdout)) == 2
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_the_run_writes_its_resolved_config_which_loads_back_as_a_preset(data, tmp_path):
    from omegaconf import OmegaConf

    from model.config import load_config

    out = tmp_path / "run"
    proc = run_train(args(data, out, "trainer.max_epochs=1", "models.optimizer.lr=0.002"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "config.yaml",
        "last.pt",
        "metrics.jsonl",
    ]  # no temp file left
    saved = load_config([f"preset={out / 'config.yaml'}"])
    requested = load_config(args(data, out, "trainer.max_epochs=1", "models.optimizer.lr=0.002"))
    plain = lambda cfg: {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "preset"}  # noqa: E731
    assert plain(saved) == plain(requested)
    assert plain(saved) == {k: v for k, v in load_checkpoint(out / "last.pt")["config"].items() if k != "preset"}


def test_resume_refuses_changed_hyperparameters_and_accepts_the_resumable_ones(data, tmp_path):
    """Resuming restores the saved optimizer and schedule: a changed lr or T_max would be silently ignored."""
    out = tmp_path / "run"
    first = run_train(args(data, out, "trainer.max_epochs=1"))
    assert first.returncode == 0, first.stderr[-2000:]
    config = (out / "config.yaml").read_text()

    refused = run_train(
        args(data, out, "trainer.max_epochs=2", "models.optimizer.lr=0.001", "models.scheduler.T_max=5")
    )
    assert refused.returncode == 2
    err = refused.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"{out / 'last.pt'}: cannot resume, the config differs from the checkpoint's: " in err
    assert "models.optimizer.lr 0.003 -> 0.001, models.scheduler.T_max 3 -> 5 " in err
    assert "trainer.max_epochs" not in err.split("only", 1)[0]  # an allowed change is not named as a difference
    assert "new output_dir" in err and "resume=never" in err and "may change" in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1 and (out / "config.yaml").read_text() == config  # untouched

    # more epochs, other workers (metric processes too), other logging and data location: resumes
    moved = tmp_path / "moved"
    moved.symlink_to(data, target_is_directory=True)
    allowed = run_train(
        [a.replace(f"dataset.root={data}", f"dataset.root={moved}") for a in args(data, out)]
        + ["trainer.max_epochs=2", "trainer.eval_workers=2", "dataset.num_workers=1", "trainer.log_every_n_steps=3"]
    )
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert "resuming from" in allowed.stdout and "epoch 2, 0 samples into it" in allowed.stdout
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert (
        "max_epochs: 2" in (out / "config.yaml").read_text() and "eval_workers: 2" in (out / "config.yaml").read_text()
    )


def test_resume_false_on_the_command_line_starts_fresh(data, tmp_path):
    """OmegaConf turns `resume=false` into the string "False" for the str-typed key."""
    out = tmp_path / "run"
    first = run_train(args(data, out, "trainer.max_epochs=1"))
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_train(args(data, out, "trainer.max_epochs=1", "resume=false"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" not in again.stdout and "epochs 1-1" in again.stdout
    assert [h["epoch"] for h in jsonl(out / "metrics.jsonl")] == [1]

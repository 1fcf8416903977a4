"""A write that runs out of space never leaves half a file under the final name: checkpoints,
UFO predictions and the submission CSV, each written by a process whose file-size limit
(RLIMIT_FSIZE, a real "disk full" from the kernel: EFBIG) is hit in the middle of the write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# the child process: old good file in place, then the limit, then the big write that must fail
CHILD = r"""
import errno, resource, signal, sys
from pathlib import Path
import numpy as np
import torch
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data.ufo import Word, read_ufo, write_ufo
from model.submission import read_submission, write_submission

out = Path(sys.argv[1])
kind = sys.argv[2]
big_words = {f"{i:05d}.jpg": {f"{j:04d}": Word(np.array([[j, 0], [j + 9.5, 0], [j + 9.5, 7.25], [j, 7.25]]), None, 0.9)
                             for j in range(60)} for i in range(300)}
small = {"a.jpg": {"0001": Word(np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float))}}
if kind == "checkpoint":
    target = out / "last.pt"
    save_checkpoint(target, {"model": {"w": torch.zeros(4)}, "epoch": 1})
    write = lambda: save_checkpoint(target, {"model": {"w": torch.zeros(2_000_000)}, "epoch": 2})
    check = lambda: load_checkpoint(target)["epoch"] == 1
elif kind == "ufo":
    target = out / "pred.json"
    write_ufo(small, target)
    write = lambda: write_ufo(big_words, target)
    check = lambda: list(read_ufo(target)[0]) == ["a.jpg"]
else:
    target = out / "submission.csv"
    write_submission(small, target)
    write = lambda: write_submission(big_words, target)
    check = lambda: list(read_submission(target)[0]) == ["a.jpg"]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
try:
    write()
except OSError as exc:  # UFO and CSV writers: the OS error itself
    assert exc.errno == errno.EFBIG, exc
    print("FAILED-AS-EXPECTED")
except Exception as exc:  # checkpoints: one CheckpointError naming the file (exit 2 in the CLI)
    print("FAILED-AS-EXPECTED" if type(exc).__name__ == "CheckpointError" else f"UNEXPECTED {exc!r}")
    print("MESSAGE", exc, file=sys.stderr)
else:
    print("WROTE")
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("OLD-INTACT" if check() else "OLD-DAMAGED")
print("FILES", sorted(p.name for p in out.iterdir()))
"""


try:  # what the child needs: resource.setrlimit(RLIMIT_FSIZE) and SIGXFSZ (POSIX; not on Windows)
    import resource

    HAS_FSIZE_LIMIT = (
        hasattr(resource, "setrlimit") and hasattr(resource, "RLIMIT_FSIZE") and hasattr(signal, "SIGXFSZ")
    )
except ImportError:
    HAS_FSIZE_LIMIT = False


@pytest.mark.skipif(not HAS_FSIZE_LIMIT, reason="needs resource.RLIMIT_FSIZE and SIGXFSZ (a POSIX system)")
@pytest.mark.parametrize(
    "kind, name", [("checkpoint", "last.pt"), ("ufo", "pred.json"), ("submission", "submission.csv")]
)
def test_a_write_that_runs_out_of_space_keeps_the_previous_file(kind, name, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), kind],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "FAILED-AS-EXPECTED", proc.stdout
    assert lines[1] == "OLD-INTACT"
    assert lines[2] == f"FILES {[name]!r}"  # no temporary left behind
    if kind == "checkpoint":
        assert f"{tmp_path / name}: could not write the checkpoint (disk full?)" in proc.stderr

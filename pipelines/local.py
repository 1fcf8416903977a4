"""Run run8_kfold on this machine with `kfp.local.SubprocessRunner(use_venv=False)`.

Every task runs as a subprocess of this Python environment (the installed package is what the
container image holds on a cluster); ParallelFor runs two folds at a time. Results are
published to ``<output_uri>/runs/<run_id>/`` as on a cluster; rerunning with the same
``run_id`` (`--resume RUN_ID`) resumes interrupted trainings from their mirrored checkpoints.
kfp.local 2.17 honours the trainings' retry policy (kfp/local/orchestrator/task_executor.py), but
a killed run (Ctrl-C, SIGKILL, a reboot) is recovered only by that rerun.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pipelines
from model.errors import DataError
from model.storage import download, is_remote

LOCAL_ROOT = Path(pipelines.LOCAL_ROOT)
PARALLEL_TASKS = 2  # kfp.local runs at most two ParallelFor iterations at a time


def run_local(
    params: dict, *, pipeline_root: str | Path | None = None, verbose: bool = False, resume: bool = False
) -> str:
    """Run the pipeline; print its summary; return the prefix the results were published under.
    `resume`: params["run_id"] names an earlier run with checkpoints to resume from (pipelines/resume.py)."""
    from kfp import local

    from pipelines.params import check_run, signature
    from pipelines.run8_kfold import run8_kfold

    params = dict(params)
    params.setdefault("output_uri", str(LOCAL_ROOT))
    params.setdefault("run_id", time.strftime("local-%Y%m%d-%H%M%S"))
    for key in ("dataset_uri", "output_uri"):  # tasks run as subprocesses: give them absolute paths
        if not is_remote(params[key]):
            params[key] = str(Path(params[key]).resolve())
    check_run(params)
    if resume:
        from pipelines.resume import check_resumable

        check_resumable({name: default for name, (_, default) in signature().items()} | params)
    # two fold trainings run at once: give each half the cores instead of letting both take all
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // PARALLEL_TASKS)))
    root = Path(pipeline_root) if pipeline_root else LOCAL_ROOT / "kfp"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root.resolve()), raise_on_error=True)
    print(
        f"run {params['run_id']}: dataset {params['dataset_uri']}, results under {params['output_uri']}/runs/{params['run_id']}/"
        f" (if it stops, rerun the same command with --resume {params['run_id']})",
        flush=True,
    )
    started = time.monotonic()
    with warnings.catch_warnings(), _quiet_executor(not verbose):
        # our image holds Python and the package; locally the tasks run in this environment
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            prefix = run8_kfold(**params).output
        except RuntimeError as exc:
            raise DataError(
                f"pipeline run {params['run_id']} failed: {exc} (the task's log is above); once fixed, "
                f"rerun with --resume {params['run_id']} to continue from its checkpoints"
            ) from None
    print(f"\nfinished in {(time.monotonic() - started) / 60:.1f} min\n", flush=True)
    print(read_summary(prefix), flush=True)
    print(f"submission: {prefix}/submission.csv", flush=True)
    return prefix


def read_summary(prefix: str) -> str:
    if not is_remote(prefix):
        return (Path(prefix) / "summary.md").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        download(f"{prefix}/summary.md", Path(tmp) / "summary.md", progress=False)
        return (Path(tmp) / "summary.md").read_text(encoding="utf-8")


# kfp's executor logs each task's full input and output as indented JSON; the task's own lines
# (training progress, metric lines, decisions) are what a user watches.
_NOISE = re.compile(r'^\s*(\[KFP Executor |[{}\[\]"]|[-+\d.eE]+,?\s*$|$)')


class _Filter:
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()
        self.pending = threading.local()

    def write(self, text: str) -> int:
        buf = getattr(self.pending, "text", "") + text
        *lines, self.pending.text = buf.split("\n")
        with self.lock:
            for line in lines:
                if not _NOISE.match(line):
                    self.out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def __getattr__(self, name):
        return getattr(self.out, name)


@contextlib.contextmanager
def _quiet_executor(enabled: bool):
    if not enabled:
        yield
        return
    original = sys.stdout
    sys.stdout = _Filter(original)
    try:
        yield
    finally:
        sys.stdout = original

"""The worker processes that score CLEval images in parallel (`model.metrics.evaluate(workers=N)`).

They come from a forkserver (spawn where there is none), never from `os.fork()` of the caller: the
caller is often a training process that has initialised CUDA and runs DataLoader and torch threads,
and a forked copy of it can deadlock on a lock some other thread held at the fork (Python's
multiprocessing docs, "Contexts and start methods"; CUDA cannot be used in a forked child at all).
The forkserver is a fresh interpreter, started by fork+exec, that has imported only the metric's
modules; each worker is a fork of that small, single-threaded process. (Python 3.14 makes it the
default start method on POSIX for this reason.) As with any spawn or forkserver start, a worker
imports the caller's main script: a script that calls ``evaluate(workers=N)`` needs the usual
``if __name__ == "__main__":`` guard (the `receiptflow` command, ``python -m`` modules and pytest
have it); without it the workers fail and the images are scored in the calling process instead.

Starting them costs about a second, so the pool is kept for the life of the process and reused by
every call with the same number of workers (a training validates each epoch: it pays once, and
`warm_up` lets it pay while the first epoch trains). The
images go in chunks that shrink as they go (guided scheduling): few messages at first, single
images at the end, so the processes finish within an image of each other; results come back in
job order, so the numbers and their order are those of a sequential run.
"""
from __future__ import annotations

import atexit
import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

# What a worker needs: imported once in the forkserver, inherited by every worker it forks.
PRELOAD = ["model.metrics"]

_lock = threading.Lock()
# (processes, pool), kept for the life of the process. concurrent.futures rather than
# multiprocessing.Pool: a worker that dies (killed for memory) fails the call with BrokenProcessPool
# instead of leaving Pool.map waiting forever for its lost task.
_pool: tuple[int, ProcessPoolExecutor] | None = None


def map_chunks(fn: Callable[[list], list], jobs: Sequence, workers: int) -> list:
    """``fn(chunk)`` over contiguous chunks of `jobs` in `workers` processes; the concatenated
    results, in job order. `fn` must be importable by name (a module-level function). An
    exception in `fn` is raised here as it was raised there; a worker that died is replaced by
    scoring in this process."""
    chunks = [list(jobs[a:b]) for a, b in chunks_of(len(jobs), workers)]
    try:
        parts = list(_shared_pool(workers).map(fn, chunks))
    except BrokenProcessPool:
        # A training must not die of it: score here instead (same numbers); the next call starts a fresh pool.
        close()
        print("warning: a CLEval worker process died (killed for memory, or started from a script that calls "
              "evaluate(workers=N) outside `if __name__ == \"__main__\":`); scoring in this process instead",
              file=sys.stderr, flush=True)
        parts = [fn(chunk) for chunk in chunks]
    return [result for part in parts for result in part]


def warm_up(workers: int) -> None:
    """Start the pool of `workers` processes in the background: a training calls it when it starts,
    so that the first validation finds them ready (starting them waits for the forkserver's imports)."""
    threading.Thread(target=lambda: _shared_pool(workers).submit(int).result(), name="cleval-pool-start",
                     daemon=True).start()


def chunks_of(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) ranges that shrink as they go: ``(n - start) // (2 * workers)`` each."""
    chunks, start = [], 0
    while start < n:
        size = max(1, (n - start) // (2 * workers))
        chunks.append((start, start + size))
        start += size
    return chunks


def close() -> None:
    """Stop the worker processes (they are also stopped when the process exits)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool[1].shutdown(wait=True, cancel_futures=True)
            _pool = None


def _shared_pool(workers: int) -> ProcessPoolExecutor:
    global _pool
    if _pool is not None and _pool[0] != workers:
        close()
    with _lock:
        if _pool is None:
            _pool = (workers, ProcessPoolExecutor(workers, mp_context=_context()))
        return _pool[1]


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)  # ignored if this process already started its forkserver
        return ctx
    return multiprocessing.get_context("spawn")


atexit.register(close)

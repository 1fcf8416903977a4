"""The processes that score CLEval images in parallel (`model.metrics.evaluate(workers=N)`): the
calling process and N - 1 workers.

The workers come from a forkserver (spawn where there is none), never from `os.fork()` of the
caller: the caller is often a training process that has initialised CUDA and runs DataLoader and
torch threads, and a forked copy of it can deadlock on a lock another thread held at the fork
(Python's multiprocessing docs, "Contexts and start methods"; CUDA cannot be used in a forked child
at all). The forkserver is a fresh interpreter, started by fork+exec, that has imported only the
metric's modules; each worker is a fork of that small, single-threaded process (Python 3.14 makes
forkserver the default start method on POSIX for this reason). As with any spawn or forkserver
start, a worker imports the caller's main script: a script that calls ``evaluate(workers=N)`` needs
the usual ``if __name__ == "__main__":`` guard (the `receiptflow` command, ``python -m`` modules and
pytest have it); without it the workers fail and the images are scored in the calling process.

Starting the workers costs about a second, so the pool is kept for the life of the process and
reused by every call with the same number of workers (a training validates each epoch: it pays
once, and `warm_up` lets it pay while the first epoch trains).

Every process, the caller included, takes the next chunk from a shared counter until none is left,
so all stay busy to the end whatever the images cost; the chunks shrink as they go (guided
scheduling: few messages at first, single images at the end). The caller working too, instead of
waiting, is what takes 2 processes past 1.8x on 2 cores (tests/benchmarks/bench_validation.py).
Results are put back in job order, so the numbers and their order are those of a sequential run.
"""

from __future__ import annotations

import atexit
import multiprocessing
import pickle
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

# What a worker needs: imported once in the forkserver, inherited by every worker it forks.
PRELOAD = ["model.metrics"]

_lock = threading.Lock()  # one call at a time: the counter is shared
# (workers asked for, executor of workers - 1 processes, shared chunk counter), kept for the life of
# the process. concurrent.futures rather than multiprocessing.Pool: a worker that dies (killed for
# memory) fails the call with BrokenProcessPool instead of leaving Pool.map waiting forever.
_pool: tuple[int, ProcessPoolExecutor, object] | None = None
_counter = None  # in a worker process: the shared chunk counter (set by `_init`)


def map_chunks(fn: Callable[[list], list], jobs: Sequence, workers: int) -> list:
    """``fn(chunk)`` over contiguous chunks of `jobs` in this process and `workers` - 1 others; the
    concatenated results, in job order. `fn` must be importable by name (a module-level function).
    An exception in `fn` is raised here as it was raised there; if a worker died, the chunks it
    had are scored here."""
    chunks = chunks_of(len(jobs), workers)
    with _lock:
        _, executor, counter = _shared_pool(workers)
        with counter.get_lock():
            counter.value = 0
        # pickled once, here, before this process starts on its own chunks: the queue's feeder thread
        # then only writes bytes instead of competing for the GIL while the workers wait for their jobs
        payload = pickle.dumps(jobs, protocol=pickle.HIGHEST_PROTOCOL)
        futures = [executor.submit(_work, fn, payload, chunks) for _ in range(workers - 1)]
        try:
            done = _work(fn, jobs, chunks, counter)
        except BaseException:
            with counter.get_lock():
                counter.value = len(chunks)  # the others stop after their current chunk
            wait(futures)
            raise
        wait(futures)  # all of this call's tasks end before the counter is reset for the next call
        broken = False
        for future in futures:
            try:
                done.update(future.result())
            except BrokenProcessPool:
                broken = True
        if broken:
            # A training must not die of it: the lost chunks are scored here (same numbers); a fresh pool next time.
            _close_locked()
            print(
                "warning: a CLEval worker process died (killed for memory, or started from a script that calls "
                'evaluate(workers=N) outside `if __name__ == "__main__":`); scoring its images in this process',
                file=sys.stderr,
                flush=True,
            )
            done.update({i: fn(jobs[a:b]) for i, (a, b) in enumerate(chunks) if i not in done})
    return [result for i in range(len(chunks)) for result in done[i]]


def warm_up(workers: int) -> None:
    """Start the worker processes in the background: a training calls it when it starts, so that
    the first validation finds them ready (starting them waits for the forkserver's imports)."""

    def start() -> None:
        with _lock:
            executor = _shared_pool(workers)[1]
        executor.submit(int).result()

    threading.Thread(target=start, name="cleval-pool-start", daemon=True).start()


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
    with _lock:
        _close_locked()


def _work(
    fn: Callable[[list], list], jobs: Sequence | bytes, chunks: list[tuple[int, int]], counter=None
) -> dict[int, list]:
    """Take chunk after chunk from the shared counter and score it: {chunk index: fn's results}.
    `jobs` arrives pickled in a worker."""
    counter = counter if counter is not None else _counter
    if isinstance(jobs, bytes):
        jobs = pickle.loads(jobs)
    done = {}
    while True:
        with counter.get_lock():
            i = counter.value
            counter.value += 1
        if i >= len(chunks):
            return done
        a, b = chunks[i]
        done[i] = fn(jobs[a:b])


def _init(counter) -> None:
    global _counter
    _counter = counter


def _shared_pool(workers: int) -> tuple[int, ProcessPoolExecutor, object]:
    """The pool for `workers` (caller holds `_lock`), started if needed."""
    global _pool
    if _pool is not None and _pool[0] != workers:
        _close_locked()
    if _pool is None:
        ctx = _context()
        counter = ctx.Value("i", 0)  # shared memory, handed to each worker as it starts
        _pool = (
            workers,
            ProcessPoolExecutor(max(1, workers - 1), mp_context=ctx, initializer=_init, initargs=(counter,)),
            counter,
        )
    return _pool


def _close_locked() -> None:
    global _pool
    if _pool is not None:
        _pool[1].shutdown(wait=True, cancel_futures=True)
        _pool = None


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)  # ignored if this process already started its forkserver
        return ctx
    return multiprocessing.get_context("spawn")


atexit.register(close)

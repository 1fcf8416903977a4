"""The CLEval worker pool (model/metrics_pool.py): workers that are not forks of the caller, results in
job order, errors raised in the caller, a dead worker replaced by scoring in the caller. The numbers
against the reference vectors, in parallel, are in tests/test_metrics.py; inside a real training in
tests/test_learning.py."""

from __future__ import annotations

import os
import time

import pytest

from model import metrics_pool


def where(chunk: list) -> list[tuple[int, int, int]]:
    """(item, pid, parent pid) of each item: which process scored it (5 ms each, as an image)."""
    time.sleep(0.005 * len(chunk))
    return [(item, os.getpid(), os.getppid()) for item in chunk]


def fail_on_13(chunk: list) -> list:
    if 13 in chunk:
        raise ValueError("item 13 is bad")
    return chunk


def die_in_a_worker(chunk: list) -> list:
    caller = chunk[0][0]
    if os.getpid() != caller:
        os._exit(3)  # as a worker killed for memory
    time.sleep(0.01 * len(chunk))  # the caller is slow enough for the worker to take a chunk
    return [i for _, i in chunk]


def test_results_come_back_in_job_order_from_workers_that_are_not_forks_of_the_caller():
    items = list(range(200))
    metrics_pool.map_chunks(where, items[:3], 3)  # returns once the workers have started
    out = metrics_pool.map_chunks(where, items, 3)
    assert [item for item, _, _ in out] == items
    pids = {pid for _, pid, _ in out}
    assert os.getpid() in pids and len(pids) >= 2, pids  # the caller works too, and at least one worker did
    workers = {(pid, ppid) for _, pid, ppid in out if pid != os.getpid()}
    assert all(ppid != os.getpid() for _, ppid in workers), workers  # forked by the forkserver, not by us


def test_an_error_in_a_chunk_is_raised_in_the_caller_and_the_pool_goes_on():
    with pytest.raises(ValueError, match="item 13 is bad"):
        metrics_pool.map_chunks(fail_on_13, list(range(40)), 2)
    assert metrics_pool.map_chunks(fail_on_13, list(range(12)), 2) == list(range(12))


def test_a_worker_that_dies_is_replaced_by_scoring_in_the_caller(capsys):
    metrics_pool.map_chunks(where, [0, 1], 2)  # returns once the worker has started
    items = [(os.getpid(), i) for i in range(60)]
    assert metrics_pool.map_chunks(die_in_a_worker, items, 2) == list(range(60))
    assert "a CLEval worker process died" in capsys.readouterr().err
    assert metrics_pool.map_chunks(where, list(range(30)), 2)[-1][0] == 29  # a fresh pool next time


def test_chunks_cover_the_jobs_once_and_shrink():
    chunks = metrics_pool.chunks_of(100, 2)
    assert [i for a, b in chunks for i in range(a, b)] == list(range(100))
    sizes = [b - a for a, b in chunks]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1

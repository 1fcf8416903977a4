"""Validation's metric step as a training runs it, each epoch: CLEval of every val image, in the
training process (trainer.eval_workers=0) or in the worker pool (eval_workers=2,
`model.metrics_pool`: forkserver processes started on the first epoch and kept).

The detections are the SROIE sample's ground truth, moved by a few pixels and with some words
split in two and some dropped (seeded), so that matching does the work a trained model's
output gives it. "first_epoch" includes starting the pool; "epoch" is the best of the later ones.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from model.data.ufo import DatasetRoot
from model.metrics import evaluate
from model.metrics_pool import close


def detections(images, seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, words in images.items():
        dets = []
        for word in words.values():
            points = word.points + rng.normal(0, 2, word.points.shape)
            roll = rng.random()
            if roll < 0.1:
                continue  # missed
            if roll < 0.2 and len(points) == 4:  # split at the middle
                top = (points[0] + points[1]) / 2
                bottom = (points[2] + points[3]) / 2
                dets += [np.array([points[0], top, bottom, points[3]]), np.array([top, points[1], points[2], bottom])]
                continue
            dets.append(points)
        out[name] = dets
    return out


def run(root: Path, epochs: int = 5) -> dict:
    """Wall times, and CPU times, which other load on the machine barely changes: this process and
    the worker take chunks from one counter until none is left and finish within an image of each
    other, so on 2 free cores an epoch takes the larger of their CPU times;
    `speedup_2_workers_from_cpu` is what the wall times show on a machine of our own."""
    split = DatasetRoot(root).load("train")
    gt = split.images
    det = detections(gt)
    evaluate(gt, det)  # warm-up: imports, caches
    report = {"images": len(gt), "words": sum(len(w) for w in gt.values())}
    for workers in (0, 2):
        close()
        times, cpu = [], []
        for _ in range(epochs):
            start, own, theirs = time.perf_counter(), time.process_time(), _workers_cpu()
            result = evaluate(gt, det, workers=workers)
            times.append(time.perf_counter() - start)
            spent = [t - theirs.get(pid, 0.0) for pid, t in _workers_cpu().items()]
            cpu.append(max([time.process_time() - own, *spent]))
        report[f"workers_{workers}"] = {"first_epoch_s": round(times[0], 3), "epoch_s": round(min(times[1:]), 3),
                                        "epoch_cpu_s": round(min(cpu[1:]), 3), "hmean": result.hmean}
    close()
    seq, par = report["workers_0"], report["workers_2"]
    report["same_hmean"] = seq["hmean"] == par["hmean"]
    report["speedup_2_workers"] = round(seq["epoch_s"] / par["epoch_s"], 2)
    report["speedup_2_workers_first_epoch"] = round(seq["first_epoch_s"] / par["first_epoch_s"], 2)
    report["speedup_2_workers_from_cpu"] = round(seq["epoch_cpu_s"] / par["epoch_cpu_s"], 2)
    return report


def _workers_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each process of the pool, from /proc (Linux)."""
    from model import metrics_pool

    pool = metrics_pool._pool
    if pool is None:
        return {}
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in list(pool[1]._processes or {}):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out

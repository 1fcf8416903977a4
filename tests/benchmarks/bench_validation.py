"""Validation's metric step as a training runs it, each epoch: CLEval of every val image, in the
training process (trainer.eval_workers=0) or in the worker pool (eval_workers=2,
`model.metrics_pool`: forkserver processes started on the first epoch and kept).

The detections are the SROIE sample's ground truth, moved by a few pixels and with some words
split in two and some dropped (seeded), so that matching does the work a trained model's
output gives it. "first_epoch" includes starting the pool (a training starts it while its first
epoch trains); "epoch" is the best of the later ones.
"""

from __future__ import annotations

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


def run(root: Path, epochs: int = 10) -> dict:
    """Wall times of `epochs` validations each way; "epoch_s" is the fastest after the first (other
    load on the machine only ever adds time; on a shared machine the speedup still varies by ~0.1)."""
    split = DatasetRoot(root).load("train")
    gt = split.images
    det = detections(gt)
    evaluate(gt, det)  # warm-up: imports, caches
    report = {"images": len(gt), "words": sum(len(w) for w in gt.values())}
    for workers in (0, 2):
        close()
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            result = evaluate(gt, det, workers=workers)
            times.append(time.perf_counter() - start)
        report[f"workers_{workers}"] = {
            "first_epoch_s": round(times[0], 3),
            "epoch_s": round(min(times[1:]), 3),
            "hmean": result.hmean,
        }
    close()
    seq, par = report["workers_0"], report["workers_2"]
    report["same_hmean"] = seq["hmean"] == par["hmean"]
    report["speedup_2_workers"] = round(seq["epoch_s"] / par["epoch_s"], 2)
    report["speedup_2_workers_first_epoch"] = round(seq["first_epoch_s"] / par["first_epoch_s"], 2)
    return report

"""CLEval on the 280 reference cases: the classic per-pair evaluator against ours, sequential and in 2 processes.

`root` (the SROIE dataset root the other benchmarks use) is not needed: the cases come from
tests/fixtures/cleval/vectors.json (a copy of ../shared/data/cleval, see its PROVENANCE.md).
Where the official `cleval` package is importable it is timed too (its torchmetrics path:
4 vertices per polygon, and pseudo transcriptions, which it requires).
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

from model.metrics import evaluate
from tests.benchmarks.classic_cleval import classic_cleval
from tests.benchmarks.common import CLEVAL_VECTORS

VECTORS = CLEVAL_VECTORS  # shipped with the repository


def run(root=None) -> dict:
    cases = json.loads(VECTORS.read_text())["cases"]
    names = [f"{c['variant']}/{c['image']}" for c in cases]
    gt = {n: [np.asarray(p, np.float64) for p in c["gt"]] for n, c in zip(names, cases)}
    det = {n: [np.asarray(p, np.float64) for p in c["det"]] for n, c in zip(names, cases)}

    classic_ms, classic_delta = _time_classic(cases)
    evaluate(gt, det)  # warm-up: imports, caches
    seq_s = _best_of(lambda: evaluate(gt, det, workers=0))
    par_s = _best_of(lambda: evaluate(gt, det, workers=2))
    result = evaluate(gt, det)
    delta = max(
        max(
            abs(s.recall - c["expected"]["det_r"]),
            abs(s.precision - c["expected"]["det_p"]),
            abs(s.hmean - c["expected"]["det_h"]),
        )
        for s, c in zip(result.per_image.values(), cases)
    )
    report = {
        "images": len(cases),
        "classic_ms": round(classic_ms, 2),
        "ours_ms": round(seq_s / len(cases) * 1e3, 2),
        "ours_2_workers_ms": round(par_s / len(cases) * 1e3, 2),
        "ratio_classic_to_ours": round(classic_ms / (seq_s / len(cases) * 1e3), 1),
        "speedup_2_workers": round(seq_s / par_s, 2),
        "max_abs_delta_vs_expected": delta,
        "classic_max_abs_delta_vs_expected": classic_delta,
    }
    official_ms = _time_official(cases)
    if official_ms is not None:
        report["official_cleval_ms"] = round(official_ms, 2)
    return report


def _best_of(fn, repeat: int = 5) -> float:
    """Seconds of the fastest of `repeat` runs: other load on the machine only ever adds time."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _time_classic(cases) -> tuple[float, float]:
    classic_cleval(cases[0]["gt"], cases[0]["det"])  # warm-up
    start = time.perf_counter()
    scores = [classic_cleval(c["gt"], c["det"]) for c in cases]
    ms = (time.perf_counter() - start) / len(cases) * 1e3
    delta = max(
        max(abs(r - c["expected"]["det_r"]), abs(p - c["expected"]["det_p"]), abs(h - c["expected"]["det_h"]))
        for (r, p, h), c in zip(scores, cases)
    )
    return ms, delta


def _time_official(cases) -> float | None:
    try:
        from cleval import CLEvalMetric
    except ImportError:
        return None
    metric = CLEvalMetric()
    inputs = []
    for c in cases:
        gt = np.array([np.asarray(p[:4], np.float32).reshape(-1) for p in c["gt"]], np.float32).reshape(-1, 8)
        det = np.array([np.asarray(p[:4], np.float32).reshape(-1) for p in c["det"]], np.float32).reshape(-1, 8)
        inputs.append((det, gt, ["#"] * len(det), ["#####"] * len(gt)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        for det, gt, det_letters, gt_letters in inputs:
            metric.update(det, gt, det_letters=det_letters, gt_letters=gt_letters)
            metric.compute()
            metric.reset()
    return (time.perf_counter() - start) / len(inputs) * 1e3

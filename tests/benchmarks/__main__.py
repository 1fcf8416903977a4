"""`make bench`: every benchmark, one core, on the SROIE sample; prints one JSON table per benchmark.

Evaluation and post-processing time the reference vectors in tests/fixtures, so they run without
the SROIE sample too; the rest need it and say so."""

from __future__ import annotations

import importlib
import json
import shutil
import sys

from tests.benchmarks.common import one_core, sroie_root

BENCHMARKS = {
    "targets": "bench_targets",
    "data path": "bench_datapath",
    "post-processing": "bench_postprocess",
    "evaluation": "bench_metrics",
    "ensemble": "bench_ensemble",
    "map fusion": "bench_fusion",
    "DDP scaling (1 vs 2 gloo ranks)": "bench_ddp",
    "validation (CLEval pool vs in-process)": "bench_validation",
    "CLI start-up": "bench_cli",
    "ONNX (torch eager vs onnxruntime, 2 threads)": "bench_onnx",
}

NO_SROIE = {"bench_metrics", "bench_postprocess"}  # reference vectors in tests/fixtures


def main(argv: list[str]) -> int:
    """`python -m tests.benchmarks [NAME ...]`: all benchmarks, or those whose name contains NAME."""
    one_core()
    root = sroie_root()
    chosen = {k: v for k, v in BENCHMARKS.items() if not argv or any(a in k or a in v for a in argv)}
    try:
        for name, module in chosen.items():
            print(f"== {name}", flush=True)
            if root is None and module not in NO_SROIE:
                print("skipped: needs the SROIE sample", flush=True)
                continue
            result = importlib.import_module(f"tests.benchmarks.{module}").run(root)
            print(json.dumps(result, indent=1, ensure_ascii=False), flush=True)
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

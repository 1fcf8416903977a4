"""What the benchmarks share: the SROIE sample as a dataset root, single-core settings, timing."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import cv2
import torch

SROIE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sroie"


def one_core() -> None:
    """Benchmarks measure one core: the data path runs once per DataLoader worker."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def sroie_root() -> Path | None:
    if not (SROIE / "img").is_dir():
        print(f"skipped: the SROIE sample {SROIE} is absent")
        return None
    from model.data.convert import convert

    dst = Path(tempfile.mkdtemp(prefix="bench-sroie-"))
    convert("sroie", SROIE, dst, seed=42, split=(1.0, 0.0, 0.0), strict=True, overwrite=True, progress=False)
    return dst


def per_item_ms(fn, items, repeat: int = 1) -> float:
    fn(items[0])  # warm-up: imports, JIT, caches
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) / (repeat * len(items)) * 1e3

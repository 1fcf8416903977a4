"""What the benchmarks share: the reference vectors in tests/fixtures, the SROIE sample as a
dataset root, single-core settings, timing."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

import cv2
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SROIE = SHARED_DATA / "sroie"
# Copies of ../shared/data/{cleval,postprocess} shipped with the repository (see their PROVENANCE.md)
FIXTURES = REPO_ROOT / "tests" / "fixtures"
CLEVAL_VECTORS = FIXTURES / "cleval" / "vectors.json"
POSTPROCESS_VECTORS = FIXTURES / "postprocess"  # expected.json + NNN.png

_PROVENANCE_ROW = re.compile(r"^\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|$", re.MULTILINE)


def provenance(folder: Path) -> dict[str, tuple[int, str]]:
    """file name -> (bytes, sha256) as `folder`/PROVENANCE.md records them."""
    return {m[1]: (int(m[2]), m[3]) for m in _PROVENANCE_ROW.finditer((folder / "PROVENANCE.md").read_text())}


def file_digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


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

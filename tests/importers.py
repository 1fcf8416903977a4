"""What the label-importer tests (tests/test_import_*.py) share: tiny images, a truncated JPEG, and the
dataset root loaded as `receiptflow check --strict` loads it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from model.data.ufo import SPLITS, DatasetRoot, Word


def save_image(path: Path, size: tuple[int, int], orientation: int | None = None) -> Path:
    """A plain image of `size` (format from the suffix), with an EXIF orientation when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif
    Image.new("RGB", size, (240, 240, 235)).save(path, **extra)
    return path


def truncated_jpeg() -> bytes:
    """The first half of a real JPEG: its header reads, its pixels do not."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 120, 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=90
    )
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def load_all(dst: Path) -> dict[str, dict[str, Word]]:
    """Every split of the dataset root, loaded strictly with every image decoded; no problem allowed."""
    images: dict[str, dict[str, Word]] = {}
    for split in SPLITS:
        loaded = DatasetRoot(dst).load(split, strict=True, decode=True)
        assert not loaded.report.problems
        images.update(loaded.images)
    return images

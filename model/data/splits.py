"""The train/val/test split a run asks for (`dataset.*` config), validated and reported.

Plain runs read ``images/<split>/`` and ``jsons/<split>.json`` of ``dataset.root``; K-fold runs
(``dataset.folds`` and ``dataset.fold`` set, see `model.data.folds`) take fold i's train or
val file list over the pooled train+val images of the root. Problems are printed, one line each,
before any work starts; strict mode (``dataset.strict=true``) stops at the first instead.
"""

from __future__ import annotations

import sys

from model.data.folds import fold_split
from model.data.ufo import DatasetRoot, Report, Split
from model.errors import DataError


def load_split(ds, which: str) -> Split:
    """`which` is "train", "val" or "test"; `ds` the `dataset` section of the config."""
    if not ds.get("root"):
        raise DataError("dataset.root is not set: pass dataset.root=DIR (a dataset root with images/ and jsons/)")
    if str(ds.root).startswith("s3://"):
        raise DataError(
            f"dataset.root={ds.root}: training reads a local dataset root; copy it first with "
            f"`receiptflow data pull {ds.root} DIR` and pass dataset.root=DIR"
        )
    root = DatasetRoot(ds.root)
    strict = bool(ds.get("strict", False))
    if ds.get("folds") is not None and which in ("train", "val"):
        if ds.get("fold") is None:
            raise DataError(f"dataset.folds={ds.folds} needs dataset.fold=<index>")
        names, _ = fold_split(ds.folds, int(ds.fold), which, root=ds.root)
        pooled = [root.load(s, strict=strict) for s in ("train", "val") if s in root.splits()]
        split = _subset(pooled, list(names), f"fold_{ds.fold}/{which}")
    else:
        split = root.load(ds.get(f"{which}_split", which), strict=strict)
    for problem in split.report.problems:
        print(f"skipped: {problem}", file=sys.stderr, flush=True)
    if not split.images:
        raise DataError(f"{ds.root}: the {which} split has no usable images")
    return split


def _subset(splits: list[Split], names: list[str], label: str) -> Split:
    images, sizes, paths, report = {}, {}, {}, Report(strict=False)
    for s in splits:
        report.problems += s.report.problems
        for name in names:
            if name in s.images:
                images[name], sizes[name], paths[name] = s.images[name], s.sizes[name], s.path(name)
    missing = [n for n in names if n not in images]
    if missing:
        print(
            f"skipped: {label}: {len(missing)} image(s) of the fold are not usable in the root: {missing[:5]}",
            file=sys.stderr,
        )
    return Split(label, splits[0].image_dir, images, sizes, report, paths)

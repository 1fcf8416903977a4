"""K-fold splits of a dataset root's train+val images, balanced by word count.

`make_folds(root, out_dir, k=5, seed=42)` pools the images of ``jsons/train.json`` and
``jsons/val.json`` (the test split is never touched) and gives each image to exactly one fold's
validation set; fold *i* trains on all the other images. `hold_out="val"` keeps the val split out
of every fold instead (the pipeline's calibration set: labelled images no fold model trains or
selects its best epoch on, where the ensemble's method is chosen; `model.calibrate`). It writes::

    out_dir/folds.json           the manifest (see below)
    out_dir/fold_{i}/train.json  UFO annotations of fold i's training images
    out_dir/fold_{i}/val.json    UFO annotations of fold i's validation images

The images are not copied: they stay in ``root/images/train/`` and ``root/images/val/``. The manifest
records, for every file, which of those two folders holds it (``"sources": {"000.jpg": "train"}``)
together with the root it was made from, and `fold_split(out_dir, i, which)` returns a fold's
annotations with the path of each image (pass ``root=`` when the dataset root has moved, e.g. a
KFP artifact downloaded to another pod). File names are unique across train and val (checked).

Assignment (deterministic, `assign_folds`): the images are put in the seeded order of
`model.data.convert.seeded_order` (a SHA-256 of seed and name: independent of the filesystem and
of library versions), stably sorted by word count, most words first, and each goes to the fold with
the fewest words so far; ties go to the fold with fewer images, then the lower index. Greedy
assignment keeps the spread between the fullest and the emptiest fold at most the word count of a
single image (and, with the largest images placed first, usually far less), so every fold trains
and validates on about the same number of words.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from model.data.convert import DEFAULT_SEED, seeded_order
from model.data.ufo import DatasetRoot, Images, read_ufo, write_text_atomic, write_ufo
from model.errors import DataError

DEFAULT_K = 5
MANIFEST = "folds.json"
POOLED_SPLITS = ("train", "val")


def assign_folds(word_counts: Mapping[str, int], k: int = DEFAULT_K, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """file name -> fold index in [0, k): greedy word-count balancing (see the module docstring)."""
    check_k(k, len(word_counts))
    order = seeded_order(word_counts, seed)
    order.sort(key=lambda name: -word_counts[name])  # stable: ties keep the seeded order
    words = [0] * k
    images = [0] * k
    out: dict[str, int] = {}
    for name in order:
        fold = min(range(k), key=lambda i: (words[i], images[i], i))
        out[name] = fold
        words[fold] += word_counts[name]
        images[fold] += 1
    return out


def check_k(k: int, n_images: int, where: str = "folds") -> None:
    if k < 2:
        raise DataError(f"{where}: k={k}; k-fold needs k >= 2")
    if k > n_images:
        raise DataError(
            f"{where}: k={k} folds but only {n_images} image(s) to split; each fold needs at least one validation image"
        )


def make_folds(
    root: str | Path,
    out_dir: str | Path,
    *,
    k: int = DEFAULT_K,
    seed: int = DEFAULT_SEED,
    strict: bool = True,
    hold_out: str | None = None,
) -> dict:
    """Split train+val of the dataset root `root` into `k` folds, write them to `out_dir`, return the manifest.

    The splits are loaded with `DatasetRoot.load` (headers only, no decode); in lenient mode images
    it rejects are left out of every fold (and listed under "problems" in the manifest).
    `hold_out`: a split kept out of the folds ("val"; None pools train and val), recorded in the
    manifest as "held_out".
    """
    root, out_dir = Path(root), Path(out_dir)
    dataset = DatasetRoot(root)
    check_hold_out(hold_out, dataset)
    present = [s for s in POOLED_SPLITS if s in dataset.splits() and s != hold_out]
    if "train" not in present:
        raise DataError(f"{root}: has no train split (jsons/train.json); nothing to split into folds")
    pooled: Images = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for split in present:
        loaded = dataset.load(split, strict=strict, decode=False)
        problems += [str(p) for p in loaded.report.problems]
        for name, words in loaded.images.items():
            if name in sources:
                raise DataError(
                    f"{root}: image {name!r} is in both images/{sources[name]}/ and images/{split}/; "
                    "folds key images by file name, so train and val names must differ"
                )
            sources[name] = split
            pooled[name] = words
    check_k(k, len(pooled), str(root))
    fold_of = assign_folds({name: len(words) for name, words in pooled.items()}, k, seed)

    folds = []
    for i in range(k):
        val = sorted(n for n in pooled if fold_of[n] == i)
        train = sorted(n for n in pooled if fold_of[n] != i)
        write_ufo({n: pooled[n] for n in train}, out_dir / f"fold_{i}" / "train.json")
        write_ufo({n: pooled[n] for n in val}, out_dir / f"fold_{i}" / "val.json")
        folds.append(
            {
                "fold": i,
                "train": {"images": len(train), "words": sum(len(pooled[n]) for n in train), "files": train},
                "val": {"images": len(val), "words": sum(len(pooled[n]) for n in val), "files": val},
            }
        )
    _remove_stale_folds(out_dir, k)
    manifest = {
        "k": k,
        "seed": seed,
        "root": str(root.resolve()),
        "images": len(pooled),
        "words": sum(len(w) for w in pooled.values()),
        "sources": {name: sources[name] for name in sorted(sources)},
        "held_out": hold_out,
        "folds": folds,
        "problems": problems,
    }
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest


def check_hold_out(hold_out: str | None, dataset: DatasetRoot) -> None:
    """Only val can be held out (train is what the folds learn from, test never enters them), and it needs labels."""
    if hold_out is None:
        return
    if hold_out != "val":
        raise DataError(
            f"{dataset.root}: cannot hold out split {hold_out!r}: only val can be kept out of the folds "
            "(they train on train; test never enters them)"
        )
    if not dataset.json_path(hold_out).is_file():
        raise DataError(f"{dataset.root}: no labelled val split to hold out (jsons/val.json is missing)")


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: fold manifest is missing; run `receiptflow split ROOT --out {out_dir}` first"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read fold manifest ({exc})") from None
    if not isinstance(manifest, dict) or not {"k", "root", "sources", "folds"} <= manifest.keys():
        raise DataError(f"{path}: not a fold manifest (expected keys k, root, sources, folds)")
    return manifest


def fold_split(
    out_dir: str | Path, i: int, which: str, *, root: str | Path | None = None
) -> tuple[Images, dict[str, Path]]:
    """Fold `i`'s "train" or "val" annotations and {file: image path}.

    Image paths are ``<root>/images/<source split>/<file>``, the root being the manifest's unless
    `root` is given.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    k = manifest["k"]
    if not isinstance(i, int) or not 0 <= i < k:
        raise DataError(f"{out_dir / MANIFEST}: fold {i!r} does not exist; folds are 0..{k - 1}")
    if which not in ("train", "val"):
        raise DataError(f"{out_dir}: fold part {which!r} is neither 'train' nor 'val'")
    images, _ = read_ufo(out_dir / f"fold_{i}" / f"{which}.json")
    base = Path(root) if root is not None else Path(manifest["root"])
    paths = {}
    for name in images:
        source = manifest["sources"].get(name)
        if source not in POOLED_SPLITS:
            raise DataError(
                f"{out_dir / MANIFEST}: image {name!r} of fold_{i}/{which}.json has no source split in the manifest"
            )
        paths[name] = base / "images" / source / name
    return images, paths


def format_manifest(manifest: Mapping) -> str:
    held = f"; {manifest['held_out']} held out" if manifest.get("held_out") else ""
    lines = [
        f"{manifest['k']} folds of {manifest['images']} images / {manifest['words']} words from {manifest['root']} "
        f"(seed {manifest['seed']}{held})",
        f"{'fold':>4} {'val images':>10} {'val words':>9} {'train images':>12} {'train words':>11}",
    ]
    for f in manifest["folds"]:
        lines.append(
            f"{f['fold']:>4} {f['val']['images']:>10} {f['val']['words']:>9} {f['train']['images']:>12} {f['train']['words']:>11}"
        )
    if manifest.get("problems"):
        lines.append(f"{len(manifest['problems'])} problem(s), skipped:")
        lines += [f"  {p}" for p in manifest["problems"]]
    return "\n".join(lines)


def _remove_stale_folds(out_dir: Path, k: int) -> None:
    """Drop fold_{j}/ (j >= k) left by an earlier run with more folds, if it holds only our files."""
    for entry in out_dir.glob("fold_*"):
        index = entry.name.removeprefix("fold_")
        if (
            entry.is_dir()
            and index.isdigit()
            and int(index) >= k
            and set(os.listdir(entry)) <= {"train.json", "val.json"}
        ):
            shutil.rmtree(entry)

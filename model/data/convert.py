"""Importing public receipt datasets into a dataset root (docs/design.md §3).

A converter turns one public dataset's own layout into ``images/{train,val,test}/`` and
``jsons/{train,val,test}.json``. Each lives in its own module and registers itself under a name::

    @register("sroie")
    class SroieConverter(Converter):
        def read(self, src, report) -> list[Sample]: ...

`Converter.convert` does the rest the same way for every dataset: a seeded split that depends only
on the file names (`assign_splits`), a strict or lenient `Report`, JPEG/PNG bytes copied as they are
(never re-encoded), UFO JSON written atomically, and a `ConvertSummary`. Adding CORD or WildReceipt
means writing `read` and one line in `_BUILTIN`.

`--split` fractions may be 0: `0,0,1` makes a test-only root (a hold-out set to predict on), and
the empty splits are written as empty, so every root has the same files.

This module is imported by `receiptflow convert --help` for its defaults and names: numpy, PIL
(through model.data.ufo) and tqdm are imported where a conversion runs.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from model.errors import DataError

if TYPE_CHECKING:
    from model.data.ufo import Images, Report, Word

DEFAULT_SEED = 42
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)

# name -> module that registers it on import (imported on first use, so the CLI stays fast)
_BUILTIN = {
    "sroie": "model.data.sroie",
    "icdar2015": "model.data.icdar2015",
    "paddleocr": "model.data.paddleocr",
    "labelstudio": "model.data.labelstudio",
    "cvat": "model.data.cvat",
    "coco": "model.data.coco_text",
}
_REGISTRY: dict[str, type[Converter]] = {}


@dataclass
class Sample:
    """One image of the source dataset and its words, read and checked, ready to write."""

    name: str  # file name inside images/<split>/ (check_file_name holds)
    image: Path  # the source file; its bytes are copied as they are
    words: list[Word]


@dataclass
class ConvertSummary:
    dataset: str
    src: Path
    dst: Path
    seed: int
    fractions: tuple[float, float, float]
    images: dict[str, int]  # split -> images written
    words: dict[str, int]  # split -> words written
    report: Report
    notes: list[str] = field(default_factory=list)  # things worth knowing that are not problems

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "src": str(self.src),
            "dst": str(self.dst),
            "seed": self.seed,
            "split": list(self.fractions),
            "images": dict(self.images),
            "words": dict(self.words),
            "problems": [str(p) for p in self.report.problems],
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        from model.data.ufo import SPLITS

        lines = [
            f"{self.dataset}: {self.src} -> {self.dst} (seed {self.seed}, split {','.join(f'{f:g}' for f in self.fractions)})"
        ]
        lines += [f"  {s:<5} {self.images[s]:>6} images {self.words[s]:>8} words" for s in SPLITS]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(self.report.summary())
        return "\n".join(lines)


class Converter:
    """Base class: subclasses set `name`, `description` and implement `read`."""

    name: str = ""
    description: str = ""
    notes: list[str]  # filled by `read`: things worth knowing that are not problems (e.g. encodings)

    def __init__(self) -> None:
        self.notes = []

    def read(self, src: Path, report: Report, *, progress: bool = True) -> list[Sample]:
        """Read and check the source dataset; add a Problem per bad item and leave the item out."""
        raise NotImplementedError

    def convert(
        self,
        src: str | Path,
        dst: str | Path,
        *,
        seed: int = DEFAULT_SEED,
        split: Sequence[float] = DEFAULT_FRACTIONS,
        strict: bool = True,
        overwrite: bool = False,
        progress: bool = True,
    ) -> ConvertSummary:
        """Convert `src` into the dataset root `dst`.

        `split` holds the train/val/test fractions (summing to 1); the assignment depends only on
        the seed and the file names. Strict: the first problem raises DataError before anything
        is written. Lenient: bad lines/images are skipped and listed in the summary's report.
        `dst` must not already hold images/ or jsons/ unless `overwrite` (which replaces those two).
        """
        from tqdm import tqdm

        from model.data.ufo import SPLITS, Problem, Report, check_file_name, word_ids, write_ufo

        src, dst = Path(src), Path(dst)
        fractions = check_fractions(split)
        if not src.is_dir():
            raise DataError(f"{src}: source folder does not exist")
        taken = _taken(dst, overwrite)
        report = Report(strict)
        self.notes = []
        samples = []
        for sample in self.read(src, report, progress=progress):
            reason = check_file_name(sample.name)
            if reason:
                report.add(Problem(str(sample.image), reason))
            else:
                samples.append(sample)
        if not samples:
            raise DataError(f"{src}: no usable {self.name} images found")
        _clear(taken)  # only now: a strict failure above leaves `dst` as it was
        by_name = {s.name: s for s in samples}
        if len(by_name) != len(samples):
            raise AssertionError(f"{self.name} converter returned duplicate file names")
        assignment = assign_splits(by_name, seed, fractions)
        per_split: dict[str, Images] = {s: {} for s in SPLITS}
        for name in sorted(by_name):
            sample = by_name[name]
            per_split[assignment[name]][name] = dict(zip(word_ids(len(sample.words)), sample.words))
        bar = tqdm(total=len(samples), desc=f"{self.name}: copy", unit="img", disable=not progress)
        with bar:
            for split_name, images in per_split.items():
                out = dst / "images" / split_name
                out.mkdir(parents=True, exist_ok=True)
                for name in images:
                    shutil.copyfile(by_name[name].image, out / name)
                    bar.update()
                write_ufo(images, dst / "jsons" / f"{split_name}.json")
        return ConvertSummary(
            dataset=self.name,
            src=src,
            dst=dst,
            seed=seed,
            fractions=fractions,
            images={s: len(per_split[s]) for s in SPLITS},
            words={s: sum(len(w) for w in per_split[s].values()) for s in SPLITS},
            report=report,
            notes=self.notes,
        )


def register(name: str) -> Callable[[type[Converter]], type[Converter]]:
    def deco(cls: type[Converter]) -> type[Converter]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def converter_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def get_converter(name: str) -> Converter:
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(converter_names())}")
    return _REGISTRY[name]()


def convert(name: str, src: str | Path, dst: str | Path, **kwargs) -> ConvertSummary:
    """`get_converter(name).convert(src, dst, **kwargs)`."""
    return get_converter(name).convert(src, dst, **kwargs)


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1), checked by `check_fractions`."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise DataError(f"split {text!r}: expected three numbers like 0.8,0.1,0.1") from None
    return check_fractions(values)


def check_fractions(values: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    shown = ",".join(f"{v:g}" for v in values)
    if len(values) != 3:
        raise DataError(f"split {shown}: expected three fractions (train, val, test)")
    if any(not (0.0 <= v <= 1.0) for v in values):
        raise DataError(f"split {shown}: each fraction must lie in [0, 1]")
    if abs(sum(values) - 1.0) > 1e-6:
        raise DataError(f"split {shown}: fractions must sum to 1 (they sum to {sum(values):g})")
    return values  # type: ignore[return-value]


def seeded_order(names: Iterable[str], seed: int) -> list[str]:
    """A seeded permutation of `names` that depends only on the seed and each name.

    Sorting by SHA-256 of ``"<seed>:<name>"`` is independent of input order, of the filesystem, of
    the Python/NumPy version and of PYTHONHASHSEED; adding an image does not move the others
    relative to each other. Every seeded split in receiptflow (convert, folds) uses it.
    """
    return sorted(set(names), key=lambda n: (hashlib.sha256(f"{seed}:{n}".encode()).digest(), n))


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``n * fractions`` so that the counts sum to n."""
    raw = [n * f for f in fractions]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def assign_splits(names: Iterable[str], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, str]:
    """file name -> 'train' | 'val' | 'test': the first images of `seeded_order` go to train, etc."""
    from model.data.ufo import SPLITS

    order = seeded_order(names, seed)
    out: dict[str, str] = {}
    start = 0
    for split_name, count in zip(SPLITS, split_counts(len(order), check_fractions(fractions))):
        for name in order[start : start + count]:
            out[name] = split_name
        start += count
    return out


@dataclass(frozen=True)
class LabelFrame:
    """How a labelling tool's pixel coordinates map to the image as it displays (UFO's frame)."""

    display: tuple[int, int]  # (width, height) with EXIF applied
    stored: tuple[int, int]
    orientation: int  # EXIF 1-8
    turned: bool  # the labels were drawn on the stored pixels: `points` applies the orientation

    def points(self, pts):
        from model.data.images import stored_to_display

        return stored_to_display(pts, self.stored, self.orientation) if self.turned else pts


def label_frame(image: Path, declared: tuple[int, int] | None = None) -> LabelFrame:
    """The frame of an image's labels, from the size the label file declares for it (if any).

    No declared size, or the size as the image displays: the labels are in UFO's frame already. The
    stored size of an EXIF-rotated image: the tool labelled the stored pixels, and `points` turns
    them. Any other size is a DataError naming both, never a guess (a resized copy was labelled).
    """
    from model.data.images import stored_size

    stored, orientation = stored_size(image)
    display = (stored[1], stored[0]) if orientation in (5, 6, 7, 8) else stored
    if declared is None or tuple(declared) == display:
        return LabelFrame(display, stored, orientation, False)
    if tuple(declared) == stored and orientation != 1:
        return LabelFrame(display, stored, orientation, True)
    raise DataError(
        f"{image}: labelled as {declared[0]}x{declared[1]} px, but the image is {display[0]}x{display[1]} "
        "as it displays; were the labels drawn on a resized copy?"
    )


def check_image(image: Path, declared: tuple[int, int] | None = None) -> LabelFrame:
    """`label_frame(image, declared)` after decoding every byte of `image` (JPEGs at 1/8 scale, cheap).

    DataError naming the file for anything unreadable (truncated included) or a declared size that
    fits neither the stored nor the displayed image. Shared by the importers that copy images as they
    are: what they accept, ``receiptflow check --strict`` accepts.
    """
    frame = label_frame(image, declared)
    from model.data.images import read_image

    read_image(image, max_side=64)
    return frame


def image_problem(image: Path, exc: DataError) -> str:
    """A DataError about `image` without the leading path (the Problem names it already)."""
    return str(exc).removeprefix(f"{image}: ")


def read_text_lenient(path: Path) -> tuple[str, str]:
    """Text of `path` and the encoding used: UTF-8 (BOM dropped), else latin-1 (never fails)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _taken(dst: Path, overwrite: bool) -> list[Path]:
    """The parts of a dataset root already in `dst` (an error unless `overwrite`)."""
    taken = [d for d in (dst / "images", dst / "jsons") if d.exists() or d.is_symlink()]
    if dst.exists() and not dst.is_dir():
        raise DataError(f"{dst}: destination exists and is not a folder")
    if taken and not overwrite:
        raise DataError(
            f"{dst}: already holds {' and '.join(d.name + '/' for d in taken)}; choose a new folder or overwrite"
        )
    return taken


def _clear(paths: list[Path]) -> None:
    for d in paths:
        shutil.rmtree(d) if d.is_dir() and not d.is_symlink() else d.unlink()

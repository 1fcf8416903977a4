"""SROIE 2019 task 1 (scanned receipts, text localisation) -> dataset root.

Source layout, either of:

    SRC/img/NNN.jpg + SRC/box/NNN.csv      (the corrected public release)
    SRC/NNN.jpg + SRC/NNN.txt               (the competition's own zip: files side by side)

A box file holds one word or text line per line, ``x1,y1,x2,y2,x3,y3,x4,y4,transcript``; the
transcript may contain commas, so a line is split on its first eight commas only. Box files are
read as UTF-8 (a BOM is dropped) with a fallback to latin-1 for files that are not valid UTF-8
(some SROIE releases have them); the fallback is listed in the summary's notes, never an error.

Each image keeps its file name; words get ids 0001... in line order; the four vertices become the
word's points and the transcript its transcription (verbatim, only the line ending removed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.data.convert import Converter, Sample, check_image, image_problem, read_text_lenient, register
from model.data.images import IMAGE_SUFFIXES
from model.data.ufo import Problem, Report, Word, far_outside
from model.errors import DataError

BOX_SUFFIXES = (".csv", ".txt")
N_COORDS = 8
_COORD_NAMES = ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4")
# Plain decimal numbers only: float() would also take 'nan', 'inf' and '1_000'.
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*")


def parse_box_line(line: str) -> tuple[Word | None, str | None]:
    """One box-file line -> (Word, None), or (None, why it is not a box line).

    A line with exactly eight numbers and no transcript gives an empty transcription.
    """
    parts = line.split(",", N_COORDS)
    if len(parts) < N_COORDS:
        return None, (
            f"expected {N_COORDS} coordinates and a transcript (x1,y1,...,x4,y4,text), "
            f"found {len(parts)} comma-separated field(s)"
        )
    coords = []
    for axis, value in zip(_COORD_NAMES, parts[:N_COORDS]):
        if not _NUMBER.fullmatch(value):
            return None, f"coordinate {axis} is not a number: {value!r}"
        coords.append(float(value))
    text = parts[N_COORDS] if len(parts) > N_COORDS else ""
    return Word(np.asarray(coords, dtype=np.float64).reshape(4, 2), text), None


def read_box_file(path: Path, report: Report) -> tuple[list[tuple[int, Word]], str]:
    """(line number, word) for each good line of a box file (bad lines reported, skipped) and the encoding used."""
    text, encoding = read_text_lenient(path)
    words = []
    # split("\n"), not splitlines(): latin-1 text may hold \x85 or \x1c, which splitlines() breaks on.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        word, reason = parse_box_line(line)
        if reason:
            report.add(Problem(str(path), f"line {number}: {reason}"))
        else:
            words.append((number, word))
    return words, encoding


@register("sroie")
class SroieConverter(Converter):
    description = "SROIE 2019 task 1: img/NNN.jpg + box/NNN.csv (or .jpg/.txt side by side)"

    def read(self, src: Path, report: Report, *, progress: bool = True) -> list[Sample]:
        img_dir, box_dir = find_layout(src)
        images = _by_stem(img_dir, IMAGE_SUFFIXES, "image", report)
        boxes = _by_stem(box_dir, BOX_SUFFIXES, "box file", report)
        return read_pairs(
            self,
            images,
            boxes,
            report,
            progress=progress,
            missing_box=lambda stem: f"image has no box file (expected {stem}.csv or {stem}.txt in {box_dir})",
            image_dir=img_dir,
            what="box file",
        )


def read_pairs(
    converter: Converter,
    images: dict[str, Path],
    boxes: dict[str, Path],
    report: Report,
    *,
    progress: bool,
    missing_box: Callable[[str], str],
    image_dir: Path,
    what: str,
    word: Callable[[Word], Word] = lambda w: w,
) -> list[Sample]:
    """Samples of images paired by stem with box files of `x1,y1,...,x4,y4,text` lines (SROIE, ICDAR
    2015): unpaired files, unreadable images, bad lines and far-outside points are problems; latin-1
    files and images without a word go to the converter's notes. `word` maps each good line's word."""
    samples: list[Sample] = []
    latin1: list[str] = []
    empty: list[str] = []
    for stem in tqdm(
        sorted(set(images) | set(boxes)), desc=f"{converter.name}: read", unit="img", disable=not progress
    ):
        image, box = images.get(stem), boxes.get(stem)
        if box is None:
            report.add(Problem(str(image), missing_box(stem)))
            continue
        if image is None:
            report.add(Problem(str(box), f"{what} has no image (expected {stem}.jpg in {image_dir})"))
            continue
        try:
            size = check_image(image).display
        except DataError as exc:
            report.add(Problem(str(image), image_problem(image, exc)))
            continue
        numbered, encoding = read_box_file(box, report)
        if encoding != "utf-8":
            latin1.append(box.name)
        words = []
        for number, w in numbered:
            if far_outside(w.points, size):
                report.add(
                    Problem(
                        str(box), f"line {number}: points lie far outside the {size[0]}x{size[1]} image {image.name}"
                    )
                )
            else:
                words.append(word(w))
        if not words:
            empty.append(image.name)
        samples.append(Sample(image.name, image, words))
    if latin1:
        converter.notes.append(f"{len(latin1)} {what}(s) not valid UTF-8, read as latin-1: {', '.join(latin1)}")
    if empty:
        converter.notes.append(f"{len(empty)} image(s) without any word: {', '.join(empty)}")
    return samples


def find_layout(src: Path) -> tuple[Path, Path]:
    """(image folder, box folder): SRC/img + SRC/box, or SRC itself for files side by side."""
    img, box = src / "img", src / "box"
    if img.is_dir() and box.is_dir():
        return img, box
    if img.is_dir() or box.is_dir():
        have, lack = ("img", "box") if img.is_dir() else ("box", "img")
        raise DataError(
            f"{src}: has {have}/ but no {lack}/; expected img/ and box/ side by side, or images and box files in one folder"
        )
    return src, src


def _by_stem(folder: Path, suffixes: tuple[str, ...], what: str, report: Report) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in found:
            report.add(Problem(str(path), f"second {what} for {path.stem!r} (first: {found[path.stem].name}); skipped"))
            continue
        found[path.stem] = path
    return found

"""PaddleOCR text detection labels (PPOCRLabel's Label.txt, PaddleOCR's det_gt files) -> dataset root.

A label file holds one image per line: its path, a TAB, then a JSON list of words::

    receipts/img1.jpg\t[{"transcription": "MASA", "points": [[310, 104], [416, 141], [418, 216], [312, 179]], "difficult": false}]

``points`` is a polygon of 4 or more [x, y] pairs (PPOCRLabel's rectangle and four-point modes
write 4, its multi-point mode more); other keys (``difficult``, ``key_cls``, ``score``, ...) are
allowed and ignored, except as said below. Lines are read as UTF-8 (a BOM is dropped); blank lines
are skipped.

Which label file(s), in this order:

1. ``SRC/Label.txt``: PPOCRLabel's file in the image folder it was opened on (other label files in
   SRC are then left alone and listed in the notes);
2. else ``SRC/*/Label.txt``: SRC holds several PPOCRLabel folders, all read;
3. else every ``SRC/*.txt`` whose first line is a detection label (path, TAB, JSON list), e.g.
   PaddleOCR's ``train_icdar2015_label.txt``/``test_icdar2015_label.txt`` or a ``det_gt_train.txt``;
   PPOCRLabel's fileState.txt and rec_gt.txt are not and are left alone.

Several label files are read as one set: an image file name met twice (the same image in two files,
or two folders with an ``img_1.jpg`` each, as ICDAR 2015's train and test sets have) is a problem,
because the dataset root keeps plain file names. To import one file of several, give it a folder of
its own (a symbolic link to the images is enough).

Image paths are relative, with ``/`` (a ``\\`` is read as one). PaddleOCR's dataset joins them to the
folder of images its config names, which for its published files is the label file's folder
(``ch4_test_images/img_61.jpg``); PPOCRLabel writes ``<opened folder name>/<file>``, relative to the
*parent* of the folder that holds Label.txt. Both are accepted: the image is ``<label folder>/<path>``,
or ``<label folder>/<path without its first part>`` when that first part is the label folder's own
name; a path that could be either, with two different files there, is a problem. A path that is
absolute or has a ``..`` part is a problem and never read: nothing outside SRC is opened.

Don't care: PaddleOCR's training ignores a word whose transcription is ``###`` or ``*``
(ppocr/data/imaug/label_ops.py, DetLabelEncode); both become ``illegible=True`` with the text kept
(UFO ``"illegibility": true``), and so does ``"difficult": true`` (PPOCRLabel writes false; true is
read as "hard to read", as in PASCAL VOC). EXIF: no image size is declared; PaddleOCR and PPOCRLabel
decode with ``cv2.imdecode(..., IMREAD_COLOR)``, which applies the EXIF orientation, so the points
are in the pixels of the image as it displays, UFO's frame: never turned. Points may lie a little
outside the image (UFO's 5 % tolerance); farther is a problem for that word. Images in a PPOCRLabel
folder that Label.txt does not list (not yet checked there) are left out and counted in the notes.

Format: https://github.com/PaddlePaddle/PaddleOCR/blob/release/2.7/doc/doc_en/detection_en.md ("The
provided annotation file format"), .../doc/doc_en/dataset/ocr_datasets_en.md (the ICDAR 2015 layout);
https://github.com/PFCCLab/PPOCRLabel (README section 2.3: Label.txt; PPOCRLabel.py `savePPlabel`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from model.data.convert import Converter, Sample, check_image, image_problem, read_text_lenient, register
from model.data.images import IMAGE_SUFFIXES
from model.data.ufo import DONT_CARE, MIN_POINTS, Problem, Report, Word, far_outside
from model.errors import DataError

LABEL_TXT = "Label.txt"
# PaddleOCR's DetLabelEncode: a box with one of these transcriptions is an ignore box.
IGNORED_TEXTS = (DONT_CARE, "*")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class _Entry:
    label_file: Path
    line: int
    image: Path
    words: list[Word]


@register("paddleocr")
class PaddleOcrConverter(Converter):
    description = "PaddleOCR / PPOCRLabel detection labels: Label.txt (image path<TAB>JSON list of words)"

    def read(self, src: Path, report: Report, *, progress: bool = True) -> list[Sample]:
        label_files, ignored = find_label_files(src)
        if ignored:
            self.notes.append(
                f"read {', '.join(_rel(p, src) for p in label_files)}; left alone: {', '.join(_rel(p, src) for p in ignored)}"
            )
        latin1: list[str] = []
        entries: dict[str, _Entry] = {}  # output file name -> first entry
        for label_file in label_files:
            text, encoding = read_text_lenient(label_file)
            if encoding != "utf-8":
                latin1.append(_rel(label_file, src))
            lines = text.split("\n")
            for number, line in tqdm(
                list(enumerate(lines, start=1)), desc=f"paddleocr: {label_file.name}", unit="line", disable=not progress
            ):
                line = line.rstrip("\r")
                if not line.strip():
                    continue
                entry = self._read_line(src, label_file, number, line, report)
                if entry is None:
                    continue
                name = entry.image.name
                first = entries.get(name)
                if first is not None:
                    report.add(
                        Problem(
                            str(label_file),
                            f"line {number}: image file name {name!r} is already taken by "
                            f"{_rel(first.label_file, src)} line {first.line} ({_rel(first.image, src)}); skipped",
                        )
                    )
                    continue
                entries[name] = entry
        if latin1:
            self.notes.append(f"{len(latin1)} label file(s) not valid UTF-8, read as latin-1: {', '.join(latin1)}")
        self._note_unlisted(src, label_files, entries)
        empty = sorted(name for name, e in entries.items() if not e.words)
        if empty:
            self.notes.append(f"{len(empty)} image(s) without any word: {', '.join(empty)}")
        return [Sample(name, e.image, e.words) for name, e in entries.items()]

    def _read_line(self, src: Path, label_file: Path, number: int, line: str, report: Report) -> _Entry | None:
        where = f"line {number}"
        if "\t" not in line:
            report.add(
                Problem(str(label_file), f"{where}: expected <image path><TAB><JSON list of words>, found no TAB")
            )
            return None
        key, raw = line.split("\t", 1)
        image, reason = resolve_image(src, label_file.parent, key)
        if reason:
            report.add(Problem(str(label_file), f"{where}: {reason}"))
            return None
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            report.add(
                Problem(
                    str(label_file), f"{where}: words are not valid JSON (column {exc.colno + len(key) + 1}: {exc.msg})"
                )
            )
            return None
        if not isinstance(items, list):
            report.add(
                Problem(
                    str(label_file),
                    f"{where}: expected a JSON list of words after the TAB, found {type(items).__name__}",
                )
            )
            return None
        try:
            size = check_image(image).display
        except DataError as exc:
            report.add(Problem(str(label_file), f"{where}: image {_rel(image, src)}: {image_problem(image, exc)}"))
            return None
        words = []
        for index, item in enumerate(items, start=1):
            word, reason = parse_item(item)
            if reason is None and far_outside(word.points, size):
                reason = f"points lie far outside the {size[0]}x{size[1]} image {image.name}"
            if reason:
                report.add(Problem(str(label_file), f"{where}, item {index}: {reason}"))
            else:
                words.append(word)
        return _Entry(label_file, number, image, words)

    def _note_unlisted(self, src: Path, label_files: list[Path], entries: dict[str, _Entry]) -> None:
        listed = {e.image for e in entries.values()}
        unlisted = []
        for folder in sorted({f.parent for f in label_files if f.name == LABEL_TXT}):
            unlisted += [
                p
                for p in sorted(folder.iterdir())
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p not in listed
            ]
        if unlisted:
            shown = ", ".join(_rel(p, src) for p in unlisted[:10]) + (", ..." if len(unlisted) > 10 else "")
            self.notes.append(
                f"{len(unlisted)} image(s) next to Label.txt are not listed in it (not checked in PPOCRLabel?), left out: {shown}"
            )


def find_label_files(src: Path) -> tuple[list[Path], list[Path]]:
    """(label files to read, detection label files left alone), as the module docstring says."""
    texts = sorted(
        p for p in src.iterdir() if p.suffix.lower() == ".txt" and p.is_file() and not p.name.startswith(".")
    )
    own = src / LABEL_TXT
    if own.is_file():
        return [own], [p for p in texts if p != own and _is_det_label_file(p)]
    nested = sorted(
        d / LABEL_TXT for d in src.iterdir() if d.is_dir() and not d.name.startswith(".") and (d / LABEL_TXT).is_file()
    )
    if nested:
        return nested, [p for p in texts if _is_det_label_file(p)]
    found = [p for p in texts if _is_det_label_file(p)]
    if not found:
        raise DataError(
            f"{src}: no PaddleOCR detection label file: expected {LABEL_TXT} (PPOCRLabel) in it or in its subfolders, "
            "or a .txt file of lines <image path><TAB><JSON list of words>"
        )
    return found, []


def resolve_image(src: Path, folder: Path, key: str) -> tuple[Path | None, str | None]:
    """The image a label line's path names (see the module docstring), or None and why not."""
    shown = key
    key = key.replace("\\", "/")
    if not key.strip():
        return None, "empty image path"
    if key.startswith("/") or _WINDOWS_DRIVE.match(key):
        return None, f"image path {shown!r} is absolute; paths must be relative to the label file's folder (not read)"
    rel = PurePosixPath(key)
    if ".." in rel.parts:
        return None, f"image path {shown!r} leads out of the source folder {src} (not read)"
    candidates = [folder.joinpath(*rel.parts)]
    if len(rel.parts) > 1 and rel.parts[0] == folder.name:
        candidates.append(folder.joinpath(*rel.parts[1:]))  # PPOCRLabel: <opened folder>/<file>
    found = [c for c in candidates if c.is_file()]
    if not found:
        return None, f"image {shown!r} not found (looked for {' and '.join(_rel(c, src) for c in candidates)})"
    if len(found) > 1 and not found[0].samefile(found[1]):
        return None, f"image path {shown!r} is ambiguous: both {_rel(found[0], src)} and {_rel(found[1], src)} exist"
    return found[0], None


def parse_item(item) -> tuple[Word | None, str | None]:
    """One element of a line's JSON list -> (Word, None), or (None, why it is not a word)."""
    if not isinstance(item, dict):
        return None, f'expected an object with "transcription" and "points", found {type(item).__name__}'
    text = item.get("transcription")
    if not isinstance(text, str):
        return None, '"transcription" is missing or not a string'
    pts = item.get("points")
    if not isinstance(pts, list) or not all(isinstance(p, list) and len(p) == 2 for p in pts):
        return None, '"points" must be a list of [x, y] pairs'
    for p in pts:
        for v in p:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                return None, f'"points" holds {json.dumps(v)}, which is not a finite number'
    if len(pts) < MIN_POINTS:
        return None, f"has {len(pts)} point(s); a word needs at least {MIN_POINTS}"
    difficult = item.get("difficult", False)
    if not isinstance(difficult, bool):
        return None, '"difficult" is not true or false'
    illegible = difficult or text in IGNORED_TEXTS
    return Word(np.asarray(pts, dtype=np.float64), text, illegible=illegible), None


def _is_det_label_file(path: Path) -> bool:
    """Whether the first non-blank line of `path` is <path><TAB><JSON list>."""
    try:
        with path.open("rb") as f:
            for raw in f:
                line = raw.decode("utf-8-sig", errors="replace").strip("\r\n")
                if not line.strip():
                    continue
                _, sep, rest = line.partition("\t")
                if not sep or not rest.lstrip().startswith("["):
                    return False
                try:
                    return isinstance(json.loads(rest), list)
                except json.JSONDecodeError:
                    return False
    except OSError:
        return False
    return False


def _rel(path: Path, src: Path) -> str:
    try:
        return str(path.relative_to(src))
    except ValueError:
        return str(path)

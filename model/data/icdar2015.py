"""ICDAR 2015 incidental scene text (Robust Reading Challenge 4, task 4.1) -> dataset root.

Source layout, either of:

    SRC/img_1.jpg + SRC/gt_img_1.txt        (images and ground truth side by side)
    SRC/<images>/img_1.jpg + SRC/<gts>/gt_img_1.txt
                                            (the two official zips unpacked next to each other, e.g.
                                             ch4_training_images/ + ch4_training_localization_transcription_gt/,
                                             or ch4_test_images/ + Challenge4_Test_Task1_GT/, or
                                             images/ + gts/: exactly one subfolder holding images and
                                             one holding gt_*.txt files; the same folder may hold both)

A folder holding the training and the test pair at once is an error (both have an img_1.jpg): point
SRC at one pair. The image ``<stem>.jpg|.jpeg|.png`` goes with ``gt_<stem>.txt``, the pairing the
official release and MMOCR's preparer use (dataset_zoo/icdar2015/textdet.py: ``img_(\\d+).jpg`` <->
``gt_img_\\1.txt``); other .txt files are not ground truth and are left alone.

A gt file holds one word per line, ``x1,y1,x2,y2,x3,y3,x4,y4,transcription`` (four vertices clockwise
from the top left), e.g. ``377,117,463,117,465,130,378,130,Genaxis Theatre``; the transcription may
hold commas, so a line is split on its first eight commas only (`model.data.sroie.parse_box_line`,
the SROIE parser: the same line format). The released files start with a UTF-8 BOM and may have CRLF
line ends: both are dropped; a file that is not UTF-8 is read as latin-1 and listed in the notes.

Don't care: the transcription ``###`` marks text the annotators could not read; it becomes
``Word(points, "###", illegible=True)``, written to UFO as ``"illegibility": true``.

EXIF: the gt files declare no image size; the points are taken to be in the pixels of the image as it
displays (EXIF applied), UFO's frame (the released images carry no orientation tag). Points may lie a
little outside the image (UFO's 5 % tolerance); farther is a problem for that line. Every image is
decoded once (at 1/8 scale for JPEGs): a truncated file is a problem here, not in ``check --strict``.

Format: https://rrc.cvc.uab.es/?ch=4&com=tasks (task 4.1, "Ground Truth Format"); a sample:
https://github.com/open-mmlab/mmocr/blob/main/dataset_zoo/icdar2015/sample_anno.md
"""

from __future__ import annotations

from pathlib import Path

from model.data.convert import Converter, Sample, register
from model.data.images import IMAGE_SUFFIXES
from model.data.sroie import read_pairs
from model.data.ufo import DONT_CARE, Problem, Report, Word
from model.errors import DataError

GT_PREFIX = "gt_"
GT_SUFFIX = ".txt"


@register("icdar2015")
class Icdar2015Converter(Converter):
    description = "ICDAR 2015 incidental text: img_N.jpg + gt_img_N.txt (side by side, or in two subfolders)"

    def read(self, src: Path, report: Report, *, progress: bool = True) -> list[Sample]:
        img_dir, gt_dir = find_layout(src)
        images = _images_by_stem(img_dir, report)
        gts = _gts_by_stem(gt_dir, report)
        return read_pairs(
            self,
            images,
            gts,
            report,
            progress=progress,
            missing_box=lambda stem: (
                f"image has no ground truth file (expected {GT_PREFIX}{stem}{GT_SUFFIX} in {gt_dir})"
            ),
            image_dir=img_dir,
            what="ground truth file",
            word=lambda w: Word(w.points, w.transcription, illegible=w.transcription == DONT_CARE),
        )


def find_layout(src: Path) -> tuple[Path, Path]:
    """(image folder, ground truth folder): SRC itself when it holds gt_*.txt files, else its one
    subfolder with images and its one subfolder with gt_*.txt files."""
    if _has(src, _is_gt):
        return src, src
    subfolders = [d for d in sorted(src.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    img_dirs = [d for d in subfolders if _has(d, _is_image)]
    gt_dirs = [d for d in subfolders if _has(d, _is_gt)]
    if len(img_dirs) == 1 and len(gt_dirs) == 1:
        return img_dirs[0], gt_dirs[0]
    if not gt_dirs:
        raise DataError(f"{src}: no ICDAR 2015 ground truth (gt_<image>.txt files) in it or in one of its subfolders")
    if not img_dirs:
        raise DataError(
            f"{src}: ground truth in {', '.join(d.name + '/' for d in gt_dirs)} but no folder of images next to it"
        )
    raise DataError(
        f"{src}: several candidate folders (images: {', '.join(d.name + '/' for d in img_dirs)}; ground truth: "
        f"{', '.join(d.name + '/' for d in gt_dirs)}); point SRC at a folder holding one pair, e.g. "
        "ch4_training_images/ and ch4_training_localization_transcription_gt/"
    )


def _is_gt(path: Path) -> bool:
    return (
        path.name.startswith(GT_PREFIX)
        and path.suffix.lower() == GT_SUFFIX
        and len(path.name) > len(GT_PREFIX) + len(GT_SUFFIX)
    )


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _has(folder: Path, kind) -> bool:
    return any(kind(p) and p.is_file() and not p.name.startswith(".") for p in folder.iterdir())


def _images_by_stem(folder: Path, report: Report) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not _is_image(path) or not path.is_file():
            continue
        if path.stem in found:
            report.add(Problem(str(path), f"second image for {path.stem!r} (first: {found[path.stem].name}); skipped"))
            continue
        found[path.stem] = path
    return found


def _gts_by_stem(folder: Path, report: Report) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not _is_gt(path) or not path.is_file():
            continue
        stem = path.name[len(GT_PREFIX) : -len(GT_SUFFIX)]
        if stem in found:
            report.add(
                Problem(str(path), f"second ground truth file for {stem!r} (first: {found[stem].name}); skipped")
            )
            continue
        found[stem] = path
    return found

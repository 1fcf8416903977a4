"""The leaderboard submission CSV (docs/design.md §3): UFO predictions -> CSV, CSV -> UFO, and its check.

Format: header ``filename,polygons``; one row per test image; ``polygons`` is the image's polygons
joined by ``|``, each ``x1 y1 x2 y2 ...`` in integers; an image without words has an empty field.
Files are written with the csv module (UTF-8, ``\\n`` line ends, fields quoted when they need it).

Coordinates are rounded half away from zero (``0.5 -> 1``, ``-0.5 -> -1``, ``2.5 -> 3``), not to
the nearest even number as ``np.rint`` does: a pixel coordinate of 2.5 becomes 3 wherever it is.

Row numbers in messages count lines of the file as a spreadsheet shows them: the header is row 1,
the first image row 2.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from model.data.images import IMAGE_SUFFIXES
from model.data.ufo import MIN_POINTS, Images, Problem, Report, Word, word_ids
from model.errors import DataError

HEADER = ("filename", "polygons")
POLYGON_SEP = "|"
_INT = re.compile(r"[+-]?\d+")


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Round to integers, halves away from zero; returns int64."""
    values = np.asarray(values, dtype=np.float64)
    return (np.sign(values) * np.floor(np.abs(values) + 0.5)).astype(np.int64)


def format_polygon(points: np.ndarray) -> str:
    """(N, 2) points -> 'x1 y1 x2 y2 ...' in integers."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < MIN_POINTS:
        raise DataError(f"polygon of shape {points.shape}: need at least {MIN_POINTS} [x, y] points")
    if not np.isfinite(points).all():
        raise DataError("polygon holds NaN or infinity")
    return " ".join(str(v) for v in round_half_away(points).ravel().tolist())


def format_polygons(words: Mapping[str, Word]) -> str:
    return POLYGON_SEP.join(format_polygon(w.points) for w in words.values())


def submission_text(images: Mapping[str, Mapping[str, Word]]) -> str:
    """The CSV text for `images`: one row per image, sorted by file name."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for name in sorted(images):
        try:
            writer.writerow((name, format_polygons(images[name])))
        except DataError as exc:
            raise DataError(f"image {name!r}: {exc}") from None
    return buf.getvalue()


def write_submission(
    images: Mapping[str, Mapping[str, Word]],
    path: str | Path,
    *,
    image_names: Iterable[str] | None = None,
    strict: bool = True,
) -> Report:
    """Write `images` (UFO predictions) as a submission CSV, atomically.

    With `image_names` (the test images), the CSV is checked against them before it replaces
    `path`: strict, the first problem raises DataError and `path` is left as it was; lenient, it is
    written anyway and the problems are returned.
    """
    path = Path(path)
    text = submission_text(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        report = Report(strict)
        if image_names is not None:
            _parse(Path(tmp), report, image_names=image_names, shown=str(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return report


def read_submission(path: str | Path, *, strict: bool = True) -> tuple[Images, Report]:
    """Submission CSV -> UFO Images (word ids 0001..., points as float) and the Report.

    Lenient: bad polygons and rows are skipped (the rest of a row is kept) and listed.
    """
    report = Report(strict)
    return _parse(Path(path), report), report


def check_submission(csv_path: str | Path, image_names: Iterable[str], *, strict: bool = True) -> Report:
    """Check a submission CSV against the test images.

    Finds missing files (a test image without a row), extra files (a row for a file that is not a
    test image), duplicate rows, polygons with fewer than 4 points or an odd number of values,
    values that are not integers, a bad header and rows with the wrong number of fields. Each
    problem is one line naming the CSV, the row and the file. Strict: the first raises DataError.
    """
    report = Report(strict)
    _parse(Path(csv_path), report, image_names=image_names)
    return report


def list_test_images(path: str | Path) -> list[str]:
    """The test images' file names: `path` is a dataset root (images/test/) or a folder of images."""
    path = Path(path)
    folder = path / "images" / "test" if (path / "images" / "test").is_dir() else path
    if not folder.is_dir():
        raise DataError(f"{path}: not a folder of test images nor a dataset root with images/test/")
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not names:
        raise DataError(f"{folder}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return names


def parse_polygons(field: str) -> tuple[list[np.ndarray], list[str]]:
    """'x1 y1 ...|x1 y1 ...' -> (good polygons as (N, 2) float arrays, a reason per bad polygon)."""
    polygons, reasons = [], []
    if not field.strip():
        return polygons, reasons
    for number, part in enumerate(field.split(POLYGON_SEP), start=1):
        values = part.split()
        bad = next((v for v in values if not _INT.fullmatch(v)), None)
        if not values:
            reasons.append(f"polygon {number} is empty (stray '{POLYGON_SEP}')")
        elif bad is not None:
            reasons.append(f"polygon {number}: value {bad!r} is not an integer")
        elif len(values) % 2:
            reasons.append(f"polygon {number} has {len(values)} values, an odd number; expected x y pairs")
        elif len(values) < 2 * MIN_POINTS:
            reasons.append(f"polygon {number} has {len(values) // 2} points; at least {MIN_POINTS} needed")
        else:
            polygons.append(np.asarray([int(v) for v in values], dtype=np.float64).reshape(-1, 2))
    return polygons, reasons


def _parse(path: Path, report: Report, *, image_names: Iterable[str] | None = None, shown: str | None = None) -> Images:
    source = shown or str(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"{source}: submission file is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: cannot read submission file ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{source}: file is empty; expected the header {','.join(HEADER)}")
        if [h.strip() for h in header] != list(HEADER):
            raise DataError(f"{source}: row 1: header is {','.join(header)!r}; expected {','.join(HEADER)!r}")
        images: Images = {}
        first_row: dict[str, int] = {}
        expected = set(image_names) if image_names is not None else None
        for row in reader:
            line = reader.line_num
            if not row:  # a blank line
                continue
            where = f"{source}: row {line}"
            if len(row) != 2:
                report.add(
                    Problem(where, f"has {len(row)} field(s); expected 2 (filename,polygons)", image=row[0] or None)
                )
                continue
            name, field = row
            if not name.strip():
                report.add(Problem(where, "filename is empty"))
                continue
            if name in first_row:
                report.add(Problem(where, f"duplicate row for this file (first at row {first_row[name]})", image=name))
                continue
            first_row[name] = line
            if expected is not None and name not in expected:
                report.add(Problem(where, "not a test image (extra row)", image=name))
                continue
            polygons, reasons = parse_polygons(field)
            for reason in reasons:
                report.add(Problem(where, reason, image=name))
            images[name] = dict(zip(word_ids(len(polygons)), (Word(p) for p in polygons)))
    except csv.Error as exc:
        raise DataError(f"{source}: row {reader.line_num}: not valid CSV ({exc})") from None
    if expected is not None:
        for name in sorted(expected - set(first_row)):
            report.add(Problem(source, "no row for this test image (missing)", image=name))
    return images

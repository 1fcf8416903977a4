"""UFO JSON annotations and the dataset root layout (docs/design.md §3), read, written and validated.

A dataset root holds ``images/{train,val,test}/*.jpg|png`` and ``jsons/{train,val,test}.json``;
the UFO JSON is ``{"images": {"<file>": {"words": {"<id>": {"points": [[x, y], ...],
"transcription": "..."}}}}}`` with points in the pixels of the image as it displays (EXIF applied).

Every check reports a `Problem` naming the file, the image, the word and what is wrong. In strict
mode the first problem raises `DataError`; in lenient mode the bad word or image is skipped, the
rest is kept, and all problems are returned in a `Report`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.data.images import IMAGE_SUFFIXES, read_image
from model.errors import DataError

SPLITS = ("train", "val", "test")
# A "don't care" word (ICDAR's "###"): text too blurred or cut to read. Training leaves it out of the
# targets' loss, CLEval ignores detections on it and never counts it missed, as the competitions do.
DONT_CARE = "###"
MIN_POINTS = 4
# A point may lie a little outside its image (annotators click on the border); beyond this
# fraction of the image side it is an annotation for some other image or a unit error.
OUTSIDE_TOLERANCE = 0.05


@dataclass
class Word:
    points: np.ndarray  # (N, 2) float64, N >= 4
    transcription: str | None = None
    score: float | None = None  # detector confidence, on predictions only
    illegible: bool = False  # don't care, with its text kept when the source had one (UFO "illegibility")

    @property
    def dont_care(self) -> bool:
        return self.illegible or self.transcription == DONT_CARE

    def to_json(self) -> dict:
        out: dict = {"points": [[_num(x), _num(y)] for x, y in self.points.tolist()]}
        if self.transcription is not None:
            out["transcription"] = self.transcription
        if self.illegible:
            out["illegibility"] = True
        if self.score is not None:
            out["score"] = round(float(self.score), 6)
        return out


# file name -> word id -> word, both in file order
Images = dict[str, dict[str, Word]]


@dataclass(frozen=True)
class Problem:
    source: str
    message: str
    image: str | None = None
    word: str | None = None

    def __str__(self) -> str:
        where = [self.source]
        if self.image is not None:
            where.append(f"image {self.image!r}")
        if self.word is not None:
            where.append(f"word {self.word!r}")
        return f"{': '.join(where)}: {self.message}"


@dataclass
class Report:
    """Problems found while reading; in strict mode the first one raises instead."""

    strict: bool = True
    problems: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        if self.strict:
            raise DataError(str(problem))
        self.problems.append(problem)

    def summary(self) -> str:
        if not self.problems:
            return "no problems"
        lines = [f"{len(self.problems)} problem(s), skipped:"] + [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def check_file_name(name: str) -> str | None:
    """Why `name` cannot be an image file name inside images/<split>/, or None when it can."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return "file name must be a plain name inside images/<split>/ (no '/', '\\' or '..')"
    if not name.lower().endswith(IMAGE_SUFFIXES):
        return f"file name must end with one of {', '.join(IMAGE_SUFFIXES)}"
    return None


def parse_ufo(text: str, source: str, report: Report) -> Images:
    """Parse UFO JSON text; `source` names the file in every problem."""
    if not text.strip():
        raise DataError(f'{source}: file is empty; expected UFO JSON {{"images": {{...}}}}')
    try:
        data = json.loads(text, object_pairs_hook=_KeyedObject)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise DataError(f'{source}: not UFO JSON; expected an object with an "images" object at the top')
    images: Images = {}
    for name in data["images"].duplicates:
        report.add(Problem(source, "listed more than once; the first entry is kept", image=name))
    for name, entry in data["images"].items():
        reason = check_file_name(name)
        if reason:
            report.add(Problem(source, reason, image=name))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("words"), dict):
            report.add(Problem(source, 'entry has no "words" object', image=name))
            continue
        for wid in entry["words"].duplicates:
            report.add(Problem(source, "word id used more than once; the first is kept", image=name, word=wid))
        words: dict[str, Word] = {}
        for wid, raw in entry["words"].items():
            word, reason = _parse_word(raw)
            if reason:
                report.add(Problem(source, reason, image=name, word=wid))
            else:
                words[wid] = word
        images[name] = words
    return images


def read_ufo(path: str | Path, *, strict: bool = True, report: Report | None = None) -> tuple[Images, Report]:
    path = Path(path)
    report = report if report is not None else Report(strict)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read annotation file ({exc})") from None
    return parse_ufo(text, str(path), report), report


def write_ufo(images: Mapping[str, Mapping[str, Word]], path: str | Path) -> None:
    """Write UFO JSON atomically: readers never see a half-written file."""
    for name in images:
        reason = check_file_name(name)
        if reason:
            raise DataError(f"{path}: image {name!r}: {reason}")
    doc = {
        "images": {name: {"words": {wid: w.to_json() for wid, w in words.items()}} for name, words in images.items()}
    }
    write_text_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """`data` to a hidden temporary next to `path`, then renamed over it: never half a file under the name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def word_ids(n: int) -> list[str]:
    """The conventional zero-padded word ids: '0001', '0002', ..."""
    return [f"{i:04d}" for i in range(1, n + 1)]


@dataclass
class Split:
    """One validated split of a dataset root: annotations, image folder and what was skipped."""

    name: str
    image_dir: Path
    images: Images
    sizes: dict[str, tuple[int, int]]  # file -> (width, height) as displayed
    report: Report
    paths: dict[str, Path] | None = None  # per-file paths where images live in several folders (folds)

    def path(self, name: str) -> Path:
        return self.paths[name] if self.paths is not None else self.image_dir / name

    @property
    def n_words(self) -> int:
        return sum(len(w) for w in self.images.values())


class DatasetRoot:
    """A dataset root folder: ``images/<split>/`` and ``jsons/<split>.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def image_dir(self, split: str) -> Path:
        return self.root / "images" / split

    def json_path(self, split: str) -> Path:
        return self.root / "jsons" / f"{split}.json"

    def splits(self) -> list[str]:
        return [s for s in SPLITS if self.json_path(s).exists() or self.image_dir(s).is_dir()]

    def load(self, split: str, *, strict: bool = True, decode: bool = True, workers: int = 4) -> Split:
        """Read and validate one split.

        Checks the JSON (see `parse_ufo`), that every listed image exists and decodes (`decode`;
        truncated files included), that points lie on their image, that no image on disk is
        missing from the JSON, and (for train/val) that the split has annotations at all. A test
        split may be images only.
        """
        if split not in SPLITS:
            raise DataError(f"{self.root}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        report = Report(strict)
        image_dir = self.image_dir(split)
        json_path = self.json_path(split)
        on_disk = (
            sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if image_dir.is_dir()
            else []
        )
        if json_path.exists():
            images, _ = read_ufo(json_path, report=report)
        elif split == "test" and on_disk:
            images = {name: {} for name in on_disk}
        else:
            raise DataError(f"{json_path}: annotation file is missing (split {split!r} of {self.root})")
        for name in sorted(set(on_disk) - set(images)):
            report.add(
                Problem(str(image_dir / name), f"image is not listed in {json_path.name}; add it or remove the file")
            )
        sizes = {}
        for name, size, error in probe_images(image_dir, list(images), decode, workers):
            if error:
                report.add(Problem(str(json_path), error, image=name))
                del images[name]
                continue
            sizes[name] = size
            for wid in [w for w, word in images[name].items() if far_outside(word.points, size)]:
                report.add(
                    Problem(
                        str(json_path), f"points lie far outside the {size[0]}x{size[1]} image", image=name, word=wid
                    )
                )
                del images[name][wid]
        return Split(split, image_dir, images, sizes, report)

    def summary(self, *, decode: bool = False) -> dict[str, dict]:
        """Per split: images, words, words per image and image sizes (lenient: counts problems)."""
        return {split: split_summary(self.load(split, strict=False, decode=decode)) for split in self.splits()}


def split_summary(s: Split) -> dict:
    counts = [len(w) for w in s.images.values()]
    widths = [w for w, _ in s.sizes.values()] or [0]
    heights = [h for _, h in s.sizes.values()] or [0]
    return {
        "images": len(s.images),
        "words": sum(counts),
        "words_per_image": round(float(np.mean(counts)), 1) if counts else 0.0,
        "width": [min(widths), max(widths)],
        "height": [min(heights), max(heights)],
        "problems": len(s.report.problems),
    }


def format_summary(root: str | Path, summary: Mapping[str, Mapping]) -> str:
    lines = [
        f"dataset {root}",
        f"{'split':<6} {'images':>6} {'words':>7} {'words/img':>9}  {'width':>11}  {'height':>11}  problems",
    ]
    for split, s in summary.items():
        lines.append(
            f"{split:<6} {s['images']:>6} {s['words']:>7} {s['words_per_image']:>9}  "
            f"{s['width'][0]:>5}-{s['width'][1]:<5}  {s['height'][0]:>5}-{s['height'][1]:<5}  {s['problems']}"
        )
    return "\n".join(lines)


def probe_images(
    image_dir: Path, names: list[str], decode: bool, workers: int = 4
) -> Iterable[tuple[str, tuple[int, int] | None, str | None]]:
    """(name, (width, height) or None, problem or None) for each image, in order; `decode` reads
    every pixel (catches truncated files), otherwise only the header."""
    from model.data.images import image_size

    def probe(name: str):
        path = image_dir / name
        if not path.is_file():
            return name, None, f"image is listed but missing on disk ({path})"
        try:
            if decode:
                array, _ = read_image(path)
                return name, (array.shape[1], array.shape[0]), None
            return name, image_size(path), None
        except DataError as exc:
            return name, None, str(exc).removeprefix(f"{path}: ")

    # PIL releases the GIL while decoding: threads scale on the cores we have.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        yield from pool.map(probe, names)


def far_outside(points: np.ndarray, size: tuple[int, int]) -> bool:
    w, h = size
    tol = OUTSIDE_TOLERANCE * max(w, h)
    x, y = points[:, 0], points[:, 1]
    return bool((x < -tol).any() or (y < -tol).any() or (x > w + tol).any() or (y > h + tol).any())


def _parse_word(raw) -> tuple[Word | None, str | None]:
    if not isinstance(raw, dict):
        return None, "word is not an object"
    pts = raw.get("points")
    if not isinstance(pts, list) or not all(isinstance(p, list) and len(p) == 2 for p in pts):
        return None, '"points" must be a list of [x, y] pairs'
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for p in pts for v in p):
        return None, '"points" holds a value that is not a number'
    if len(pts) < MIN_POINTS:
        return None, f"has {len(pts)} point(s); a word needs at least {MIN_POINTS}"
    if not all(math.isfinite(v) for p in pts for v in p):
        return None, '"points" holds NaN or infinity'
    text = raw.get("transcription")
    if text is not None and not isinstance(text, str):
        return None, '"transcription" is not a string'
    score = raw.get("score")
    if score is not None and (
        not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score)
    ):
        return None, '"score" is not a finite number'
    illegible = raw.get("illegibility", False)
    if not isinstance(illegible, bool):
        return None, '"illegibility" is not true or false'
    return Word(np.asarray(pts, dtype=np.float64), text, None if score is None else float(score), illegible), None


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else round(float(v), 3)


class _KeyedObject(dict):
    """A JSON object that remembers keys given more than once (json keeps only the last)."""

    def __init__(self, pairs):
        super().__init__()
        self.duplicates: list[str] = []
        for key, value in pairs:
            if key in self:
                self.duplicates.append(key)
            else:
                self[key] = value

"""Label Studio "JSON" export (OCR or any image project with rectangles/polygons) -> dataset root.

Source layout::

    SRC/<export>.json    the project's export in the "JSON" format: exactly one .json file at the top of SRC
    SRC/**/<image>       the task images, anywhere under SRC, found by their base name

The format, as documented by Label Studio:

- export formats and units: https://labelstud.io/guide/export.html ("JSON": a list of tasks; image
  coordinates are percentages of the image size);
- tasks, annotations, results: https://labelstud.io/guide/task_format.html;
- the OCR template (Rectangle/Polygon + Labels + a per-region TextArea that shares the region's
  ``id``): https://labelstud.io/templates/optical_character_recognition.html;
- result fields (``original_width``/``original_height`` in px, ``value.x``/``value.y`` the top-left
  corner *before rotation*, ``value.rotation`` in degrees): https://labelstud.io/tags/rectanglelabels.html.

Rules:

- **Which annotation.** Of a task's ``annotations`` (``completions`` in exports before 1.0), those with
  ``was_cancelled`` are skipped; the one marked ``ground_truth`` wins, else the last one in the
  export's order. Tasks with several submitted annotations are listed in the notes. A task with no
  submitted annotation is unlabelled, not "no text": it is left out and listed in the notes.
  ``predictions`` are never read.
- **Regions.** Results are grouped by their ``id``. A region's shape comes from its ``rectangle``/
  ``rectanglelabels``/``polygon``/``polygonlabels`` result, or else from the ``x, y, width, height``
  or ``points`` that its ``labels``/``textarea`` results carry (the OCR template's regions). Its
  transcription is the ``textarea`` result's ``value.text`` (a list: entries joined with "\\n"); no
  textarea, no transcription. Ellipses, key points, brushes and other shapes that are not text
  polygons are a problem each; results without any shape (an image-level choice or text area,
  relations, ratings) are ignored and counted in the notes.
- **Don't care.** A region is "don't care" (UFO ``"illegibility": true``, its text kept) when one of
  its labels (``rectanglelabels``/``polygonlabels``/``labels``) or per-region ``choices`` is, ignoring
  case, spaces, ``_``, ``-`` and ``'``, one of ``###``, ``illegible``, ``dontcare``, ``unreadable``.
  A transcription ``###`` is don't care by UFO's own rule and is kept verbatim.
- **Coordinates and rotation.** Percentages are turned into pixels with the result's
  ``original_width``/``original_height`` (the image's own size where a result has none). A
  rectangle's ``rotation`` turns it clockwise (on screen, y pointing down) about its top-left corner
  ``(x, y)``, in pixels: Label Studio draws it as a Konva Rect at (x, y) with that rotation, and
  web/libs/editor/src/utils/bboxCoords.js (``rotateBboxCoords``, pivot = top-left) computes
  ``x' = x cos a - y sin a, y' = x sin a + y cos a`` after scaling to pixels. Corners are written in
  the order top-left, top-right, bottom-right, bottom-left of the unrotated box; polygons keep their
  point order. A result with ``image_rotation`` other than 0 (the annotator turned the view) is a
  problem: the frame of its coordinates is not documented.
- **EXIF.** ``original_width``/``original_height`` are the browser's ``naturalWidth``/``naturalHeight``
  of the <img> (web/libs/editor/src/tags/object/Image/Image.js, ``updateImageSize``); browsers apply
  the EXIF orientation to <img> and to those sizes (CSS ``image-orientation: from-image``, the
  default since 2020), so the percentages are of the image as it displays, UFO's frame. Through
  `label_frame`: the displayed size is used as is; the *stored* size of an EXIF-rotated image (labels
  drawn where EXIF was ignored) turns the points; any other size is a problem for that task (the
  labels were drawn on a resized copy).
- **Outside points, too few points.** Points may lie a little outside the image (UFO's 5 % of the
  longer side); farther, or a polygon of fewer than 4 points, is a problem for that region.
- **Images.** A task's image is ``data.image`` or ``data.ocr`` (the templates' names), else the one
  string in ``data`` that names an image file: an upload ``/data/upload/<project>/<8 hex>-<name>``, a
  ``/data/local-files/?d=<path>`` URL, ``s3://``/``gs://``/``https://`` URLs. Only its base name is
  used (so no reference can reach outside SRC): the file of that exact name under SRC, or else,
  for a name that starts with Label Studio's upload prefix (8 hex digits and a dash), the name
  without it. The image keeps the name of the file found. A name found in two folders under SRC,
  or used by two tasks, is a problem.

Strict mode stops at the first problem; lenient mode leaves out the region (a bad shape) or the
task (a bad image, a bad size) and lists each problem. A malformed JSON file is an error naming its
line and column.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from tqdm import tqdm

from model.data.convert import Converter, LabelFrame, Sample, check_image, label_frame, read_text_lenient, register
from model.data.images import IMAGE_SUFFIXES
from model.data.ufo import MIN_POINTS, Problem, Report, Word, far_outside
from model.errors import DataError

RECT_TYPES = ("rectangle", "rectanglelabels")
POLYGON_TYPES = ("polygon", "polygonlabels")
LINKED_TYPES = ("labels", "textarea", "choices")  # attach to a region by its id; may repeat its shape
# Region shapes that are not text polygons: a problem each, never silently dropped.
OTHER_SHAPE_TYPES = (
    "ellipse",
    "ellipselabels",
    "keypoint",
    "keypointlabels",
    "brush",
    "brushlabels",
    "bitmask",
    "bitmasklabels",
    "magicwand",
    "vector",
    "vectorlabels",
)
LABEL_KEYS = ("rectanglelabels", "polygonlabels", "labels", "choices")
DONT_CARE_NAMES = frozenset({"###", "illegible", "dontcare", "unreadable"})
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
PREFERRED_DATA_KEYS = ("image", "ocr")


def is_dont_care_name(name: object) -> bool:
    """'###', 'Illegible', "don't care", 'dont_care', 'Unreadable' ... (case, spaces, _ - ' ignored)."""
    return isinstance(name, str) and re.sub(r"[\s_'\-]", "", name).lower() in DONT_CARE_NAMES


def rotated_rect(x: float, y: float, w: float, h: float, degrees: float) -> np.ndarray:
    """Label Studio's rectangle in pixels -> its 4 corners: turned clockwise (y down) about (x, y)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    offsets = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    turned = np.stack([offsets[:, 0] * c - offsets[:, 1] * s, offsets[:, 0] * s + offsets[:, 1] * c], axis=1)
    return turned + np.array([x, y])


def image_reference_name(ref: str) -> str:
    """The base name a task's image reference points at (URL-decoded; the `d` of local-files URLs)."""
    parts = urlsplit(ref)
    path = parts.path
    query = parse_qs(parts.query)
    if "d" in query and query["d"]:  # /data/local-files/?d=dir/receipt.jpg
        path = query["d"][0]
    path = unquote(path).replace("\\", "/")
    return PurePosixPath(path).name if path and not path.endswith("/") else ""


@register("labelstudio")
class LabelStudioConverter(Converter):
    description = "Label Studio JSON export: SRC/<export>.json and the task images anywhere under SRC"

    def read(self, src: Path, report: Report, *, progress: bool = True) -> list[Sample]:
        export = find_export(src)
        tasks = load_tasks(export)
        files = index_images(src)
        source = str(export)
        samples: list[Sample] = []
        used: dict[Path, str] = {}
        unlabelled: list[str] = []
        several: list[str] = []
        stripped: list[str] = []
        ignored: Counter[str] = Counter()
        empty: list[str] = []
        for index, task in enumerate(tqdm(tasks, desc="labelstudio: read", unit="task", disable=not progress)):
            if not isinstance(task, dict):
                report.add(Problem(source, f"task #{index + 1} is not an object"))
                continue
            tid = f"task {task.get('id', f'#{index + 1}')}"
            if "data" not in task:
                report.add(
                    Problem(source, f'{tid}: has no "data"; is this the JSON-MIN or CSV export? Export as "JSON"')
                )
                continue
            annotation, submitted = choose_annotation(task)
            if annotation is None:
                unlabelled.append(tid.removeprefix("task "))
                continue
            if submitted > 1:
                several.append(tid.removeprefix("task "))
            image, reason = find_image(task.get("data"), files, src)
            if reason:
                report.add(Problem(source, f"{tid}: {reason}"))
                continue
            if image in used:
                report.add(Problem(source, f"{tid}: image {image.name} is already used by {used[image]}; skipped"))
                continue
            used[image] = tid
            try:
                check_image(image)
            except DataError as exc:
                report.add(Problem(source, f"{tid}: {exc}"))
                continue
            if image.name != image_reference_name(_image_ref(task["data"]) or ""):
                stripped.append(image.name)
            words = read_annotation(annotation, image, tid, source, report, ignored)
            if words is None:
                continue
            if not words:
                empty.append(image.name)
            samples.append(Sample(image.name, image, words))
        if unlabelled:
            self.notes.append(
                f"{len(unlabelled)} task(s) without a submitted annotation left out: {', '.join(unlabelled)}"
            )
        if several:
            self.notes.append(
                f"{len(several)} task(s) with several submitted annotations (the ground-truth or else the "
                f"last one used): {', '.join(several)}"
            )
        if stripped:
            self.notes.append(
                f"{len(stripped)} image(s) found without Label Studio's upload prefix: {', '.join(stripped)}"
            )
        if ignored:
            kinds = ", ".join(f"{n} {t}" for t, n in sorted(ignored.items()))
            self.notes.append(f"results without a region shape ignored: {kinds}")
        if empty:
            self.notes.append(f"{len(empty)} image(s) annotated without any region: {', '.join(empty)}")
        return samples


def find_export(src: Path) -> Path:
    found = sorted(
        p for p in src.iterdir() if p.suffix.lower() == ".json" and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        raise DataError(f"{src}: no Label Studio export (.json) at the top of the folder")
    if len(found) > 1:
        raise DataError(f"{src}: several .json files ({', '.join(p.name for p in found)}); keep only the export")
    return found[0]


def load_tasks(path: Path) -> list:
    text, _ = read_text_lenient(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty; expected a Label Studio JSON export (a list of tasks)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if isinstance(data, dict) and "data" in data:
        data = [data]  # one task exported on its own
    if not isinstance(data, list):
        raise DataError(f"{path}: not a Label Studio JSON export; expected a list of tasks at the top")
    return data


def index_images(src: Path) -> dict[str, list[Path]]:
    """Base name -> image files of that name under SRC (hidden folders skipped)."""
    files: dict[str, list[Path]] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_file():
            files.setdefault(path.name, []).append(path)
    return files


def choose_annotation(task: dict) -> tuple[dict | None, int]:
    """(the annotation to import or None, how many were submitted): ground truth, else the last."""
    annotations = task.get("annotations", task.get("completions")) or []
    submitted = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled", False)]
    if not submitted:
        return None, 0
    truth = [a for a in submitted if a.get("ground_truth") is True]
    return (truth[-1] if truth else submitted[-1]), len(submitted)


def _image_ref(data) -> str | None:
    if not isinstance(data, dict):
        return None
    strings = {k: v for k, v in data.items() if isinstance(v, str)}
    for key in PREFERRED_DATA_KEYS:
        if key in strings:
            return strings[key]
    images = [v for v in strings.values() if image_reference_name(v).lower().endswith(IMAGE_SUFFIXES)]
    return images[0] if len(images) == 1 else None


def find_image(data, files: dict[str, list[Path]], src: Path) -> tuple[Path | None, str | None]:
    """The image file under SRC a task's data names, or (None, why not)."""
    if not isinstance(data, dict):
        return None, '"data" is not an object'
    ref = _image_ref(data)
    if ref is None:
        shown = ", ".join(f"{k}={v!r}" for k, v in data.items() if isinstance(v, str)) or "no string values"
        return None, f'"data" names no single image file ({", ".join(IMAGE_SUFFIXES)}): {shown}'
    name = image_reference_name(ref)
    if not name or name in (".", ".."):
        return None, f"image reference {ref!r} does not end in a file name"
    if not name.lower().endswith(IMAGE_SUFFIXES):
        return None, f"image reference {ref!r} is not a {', '.join(IMAGE_SUFFIXES)} file"
    names = [name]
    match = UPLOAD_PREFIX.match(name)
    if match:
        names.append(match.group(1))
    for candidate in names:
        found = files.get(candidate, [])
        if len(found) > 1:
            return None, f"image {candidate} is found in several places under {src}: " + ", ".join(
                str(p.relative_to(src)) for p in found
            )
        if found:
            return found[0], None
    return None, f"image file is missing: {' or '.join(names)} (from {ref!r}) is nowhere under {src}"


def read_annotation(
    annotation: dict, image: Path, tid: str, source: str, report: Report, ignored: Counter[str]
) -> list[Word] | None:
    """The words of one annotation (bad regions reported and left out), or None when the whole task
    is unusable (its image unreadable or labelled at another size)."""
    results = annotation.get("result")
    if not isinstance(results, list):
        report.add(Problem(source, f'{tid}: annotation has no "result" list'))
        return None
    regions: dict[str, list[dict]] = {}
    for k, result in enumerate(results):
        if not isinstance(result, dict):
            report.add(Problem(source, f"{tid}, result #{k + 1}: is not an object"))
            continue
        rid = result.get("id")
        key = str(rid) if rid is not None else f"#{k + 1}"
        regions.setdefault(key, []).append(result)
    frames: dict[tuple[int, int] | None, LabelFrame] = {}
    words = []
    for rid, group in regions.items():
        where = f"{tid}, result {rid!r}"
        try:
            word = region_word(group, rid, image, frames, ignored)
        except _TaskError as exc:  # the image or its size: every region would fail alike
            report.add(Problem(source, f"{tid}: {exc}"))
            return None
        except _RegionError as exc:
            report.add(Problem(source, f"{where}: {exc}"))
            continue
        if word is not None:
            words.append(word)
    return words


class _RegionError(Exception):
    pass


class _TaskError(Exception):
    pass


def region_word(group: list[dict], rid: str, image: Path, frames: dict, ignored: Counter[str]) -> Word | None:
    """One region's results (sharing an id) -> its Word, None for results without a shape."""
    types = [str(r.get("type", "")).lower() for r in group]
    for t in types:
        if t in OTHER_SHAPE_TYPES:
            raise _RegionError(f"{t} is not a text region shape (use rectangles or polygons)")
    shaped = [r for r, t in zip(group, types) if t in RECT_TYPES + POLYGON_TYPES]
    if not shaped:  # the OCR template: the shape may live only in the labels/textarea results
        shaped = [r for r, t in zip(group, types) if t in LINKED_TYPES and _has_shape(r.get("value"))]
    if not shaped:
        for t in types:
            ignored[t or "untyped"] += 1
        return None
    result = shaped[0]
    value = result.get("value")
    if not isinstance(value, dict):
        raise _RegionError('"value" is not an object')
    rotation = result.get("image_rotation", 0)
    if rotation not in (0, None):
        raise _RegionError(
            f"image_rotation {rotation!r}: coordinates on a turned view are not supported; "
            "turn the view back to 0 in Label Studio and save"
        )
    declared = _declared_size(result)
    if declared not in frames:
        try:
            frames[declared] = label_frame(image, declared)
        except DataError as exc:
            raise _TaskError(f"{exc} (result {rid!r})") from None
    frame = frames[declared]
    w, h = declared if declared is not None else frame.display
    kind = str(result.get("type", "")).lower()
    if kind in POLYGON_TYPES or (kind not in RECT_TYPES and "points" in value):
        points = _polygon(value, w, h)
    else:
        points = _rectangle(value, w, h)
    points = frame.points(points)
    if far_outside(points, frame.display):
        raise _RegionError(f"points lie far outside the {frame.display[0]}x{frame.display[1]} image {image.name}")
    texts = [
        r.get("value", {}).get("text")
        for r, t in zip(group, types)
        if t == "textarea" and isinstance(r.get("value"), dict)
    ]
    transcription = None
    for text in texts:
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
            raise _RegionError("textarea value.text is not a list of strings")
        transcription = "\n".join(text)
    labels = [
        label
        for r in group
        if isinstance(r.get("value"), dict)
        for key in LABEL_KEYS
        for label in (r["value"].get(key) or [])
    ]
    return Word(points, transcription, illegible=any(is_dont_care_name(label) for label in labels))


def _has_shape(value) -> bool:
    return isinstance(value, dict) and ("points" in value or all(k in value for k in ("x", "y", "width", "height")))


def _declared_size(result: dict) -> tuple[int, int] | None:
    ow, oh = result.get("original_width"), result.get("original_height")
    if ow is None and oh is None:
        return None
    for key, v in (("original_width", ow), ("original_height", oh)):
        if not _is_number(v) or v <= 0 or not float(v).is_integer():
            raise _RegionError(f"{key} is not a positive whole number of pixels: {v!r}")
    return int(ow), int(oh)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(value: dict, key: str, *, default=None) -> float:
    v = value.get(key, default)
    if not _is_number(v):
        raise _RegionError(f"value.{key} is not a number: {v!r}")
    return float(v)


def _rectangle(value: dict, w: int, h: int) -> np.ndarray:
    x, y = _number(value, "x") * w / 100, _number(value, "y") * h / 100
    width, height = _number(value, "width") * w / 100, _number(value, "height") * h / 100
    return rotated_rect(x, y, width, height, _number(value, "rotation", default=0))


def _polygon(value: dict, w: int, h: int) -> np.ndarray:
    pts = value.get("points")
    if not isinstance(pts, list) or not all(isinstance(p, list) and len(p) == 2 for p in pts):
        raise _RegionError("value.points is not a list of [x, y] pairs")
    for p in pts:
        for v in p:
            if not _is_number(v):
                raise _RegionError(f"value.points holds a value that is not a number: {v!r}")
    if len(pts) < MIN_POINTS:
        raise _RegionError(f"polygon has {len(pts)} point(s); a word needs at least {MIN_POINTS}")
    return np.asarray(pts, dtype=np.float64) * np.array([w / 100, h / 100])

"""COCO-style text annotations (COCO-Text v2, TextOCR, plain COCO with polygons) -> dataset root.

Source layout: SRC holds one annotation file ``*.json`` (or, when it holds none, ``SRC/annotations/``
holds one, as COCO exports lay it out) and the images. An image's ``file_name`` is looked up as
``SRC/<file_name>``, then ``SRC/images/<file_name>``; a ``file_name`` with folders in it
(TextOCR's ``train/<id>.jpg``) is then also looked up by its last part, ``SRC/<name>`` and
``SRC/images/<name>``. The first file found is used. A ``file_name`` that is absolute or has a
``..`` part is a problem and never read: nothing outside SRC is opened.

Three shapes of the file are read, told apart by their keys (MMOCR's COCOTextDetAnnParser reads the
same three variants):

* COCO-Text v2 (``cocotext.v2.json``): ``"imgs"`` and ``"anns"`` objects keyed by id; a word's polygon
  is ``"mask"`` ``[x1, y1, x2, y2, ...]``, its text ``"utf8_string"``, and ``"legibility":
  "illegible"`` marks text nobody could read.
* TextOCR (``TextOCR_0.1_train.json``): the same, with the polygon in ``"points"`` and no
  ``"legibility"``: an illegible word has ``"utf8_string": "."``.
* plain COCO (``"images"`` and ``"annotations"`` lists, as MMOCR 0.x and annotation tools write):
  ``"segmentation"`` ``[[x1, y1, ...]]`` (one polygon; a flat list is read too; RLE masks are a
  problem), text in ``"utf8_string"`` or ``"text"``,
  ``"iscrowd": 1`` for an ignored word (MMOCR's convention), ``"legibility"`` as in COCO-Text.

Each image has ``id``, ``file_name`` (or ``filename``), ``width``, ``height``; each annotation ``image_id`` and a
polygon (``mask``/``points``/``segmentation``, at least 4 points) or else ``"bbox": [x, y, w, h]``,
which becomes the rectangle's 4 corners. Other keys (``class``, ``language``, ``area``, ``set``, ...)
are ignored: the json's own train/val assignment is not kept, the split is the seeded one of every
converter. Annotations of an image keep the file's order; an image without annotations is kept
without words (COCO-Text annotated every image it lists) and counted in the notes.

Don't care: illegible words (above) become ``illegible=True`` with their text kept as the file gives
it (``"."`` for TextOCR, none when absent), written to UFO as ``"illegibility": true``.

EXIF: ``width``/``height`` are the size the annotator saw. As the image displays (EXIF applied), the
points are UFO's already; as the pixels are stored, in an EXIF-rotated image, the tool labelled the
stored pixels and the points are turned into the displayed frame (`model.data.convert.label_frame`);
any other size is a problem naming the image (a resized copy was labelled). Points may lie a little
outside the image (UFO's 5 % tolerance); farther is a problem for that annotation.

Formats: https://bgshih.github.io/cocotext/ (COCO-Text v2),
https://textvqa.org/textocr/dataset/ (TextOCR: "follows COCO-Text v2, except the mask field in anns is
named as points"), https://cocodataset.org/#format-data (COCO), samples:
https://github.com/open-mmlab/mmocr/tree/main/dataset_zoo (cocotextv2/ and textocr/ sample_anno.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from model.data.convert import Converter, Sample, check_image, image_problem, register
from model.data.ufo import MIN_POINTS, Problem, Report, Word, far_outside
from model.errors import DataError

IMAGE_FOLDER = "images"
ILLEGIBLE = "illegible"
TEXTOCR_ILLEGIBLE = "."
POLYGON_KEYS = ("mask", "points", "segmentation")


@register("coco")
class CocoTextConverter(Converter):
    description = "COCO-Text v2 / TextOCR / COCO polygons: one annotation .json and the images"

    def read(self, src: Path, report: Report, *, progress: bool = True) -> list[Sample]:
        ann_file = find_annotation_file(src)
        source = str(ann_file)
        images, anns = load_annotation_file(ann_file)
        by_image: dict[str, list[tuple[str, dict]]] = {}
        entries: dict[str, dict] = {}  # image id -> image entry
        for key, entry in images:
            if not isinstance(entry, dict):
                report.add(Problem(source, f"image entry {key}: not an object"))
                continue
            image_id = str(entry.get("id", key))
            if image_id in entries:
                report.add(Problem(source, f"image id {image_id} is listed more than once; the first entry is kept"))
                continue
            entries[image_id] = entry
            by_image[image_id] = []
        for key, ann in anns:
            if not isinstance(ann, dict):
                report.add(Problem(source, f"annotation {key}: not an object"))
                continue
            ann_id = key
            image_id = str(ann.get("image_id"))
            if image_id not in by_image:
                report.add(
                    Problem(source, f"annotation {ann_id}: image_id {ann.get('image_id')!r} is not among the images")
                )
                continue
            by_image[image_id].append((ann_id, ann))

        samples: dict[str, Sample] = {}
        first_id: dict[str, str] = {}
        empty: list[str] = []
        turned: list[str] = []
        for image_id, entry in tqdm(entries.items(), desc="coco: read", unit="img", disable=not progress):
            file_name = entry.get("file_name", entry.get("filename"))
            if not isinstance(file_name, str) or not file_name.strip():
                report.add(Problem(source, f'image id {image_id}: no "file_name"'))
                continue
            image, reason = resolve_image(src, file_name)
            if reason:
                report.add(Problem(source, f"image id {image_id}: {reason}", image=file_name))
                continue
            declared, reason = _declared_size(entry)
            if reason:
                report.add(Problem(source, f"image id {image_id}: {reason}", image=file_name))
                continue
            try:
                frame = check_image(image, declared)
            except DataError as exc:
                report.add(Problem(source, f"image id {image_id}: {image_problem(image, exc)}", image=file_name))
                continue
            if image.name in samples:
                report.add(
                    Problem(
                        source,
                        f"image id {image_id}: file name {image.name!r} is already taken by image id "
                        f"{first_id[image.name]} ({samples[image.name].image}); skipped",
                        image=file_name,
                    )
                )
                continue
            words = []
            for ann_id, ann in by_image[image_id]:
                word, reason = parse_annotation(ann)
                if word is not None:
                    word.points = frame.points(word.points)
                    if far_outside(word.points, frame.display):
                        reason = f"points lie far outside the {frame.display[0]}x{frame.display[1]} image"
                if reason:
                    report.add(Problem(source, f"annotation {ann_id}: {reason}", image=file_name))
                else:
                    words.append(word)
            if not by_image[image_id]:
                empty.append(image.name)
            samples[image.name] = Sample(image.name, image, words)
            first_id[image.name] = image_id
            if frame.turned:
                turned.append(image.name)
        if turned:
            self.notes.append(
                f"{len(turned)} EXIF-rotated image(s) labelled on their stored pixels, points turned to the "
                f"displayed frame: {', '.join(turned[:10])}{', ...' if len(turned) > 10 else ''}"
            )
        if empty:
            shown = ", ".join(empty[:10]) + (", ..." if len(empty) > 10 else "")
            self.notes.append(f"{len(empty)} image(s) without annotations, kept without words: {shown}")
        return list(samples.values())


def find_annotation_file(src: Path) -> Path:
    """The one .json in SRC, or else the one in SRC/annotations/."""
    for folder in (src, src / "annotations"):
        if not folder.is_dir():
            continue
        found = sorted(
            p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.is_file() and not p.name.startswith(".")
        )
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DataError(
                f"{folder}: several annotation files ({', '.join(p.name for p in found)}); keep one per source folder"
            )
    raise DataError(f"{src}: no annotation file (*.json) in it or in its annotations/ folder")


def load_annotation_file(path: Path) -> tuple[list[tuple[str, object]], list[tuple[str, object]]]:
    """((key, image entry) ..., (key, annotation) ...) in file order, from any of the three shapes.

    A key names the entry in problems: its key in "imgs"/"anns", or its "id" in a list ("#<n>", its
    place in the list, when it has none)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise DataError(
            f'{path}: expected a JSON object with "images" and "annotations" (COCO) or "imgs" and "anns" (COCO-Text, TextOCR)'
        )
    if isinstance(data.get("imgs"), dict):
        anns = data.get("anns")
        if not isinstance(anns, dict):
            raise DataError(f'{path}: has "imgs" but no "anns" object: no annotations to import')
        return list(data["imgs"].items()), list(anns.items())
    if isinstance(data.get("images"), list):
        anns = data.get("annotations")
        if not isinstance(anns, list):
            raise DataError(f'{path}: has "images" but no "annotations" list: no annotations to import')
        return [(_list_key(e, i), e) for i, e in enumerate(data["images"], start=1)], [
            (_list_key(a, i), a) for i, a in enumerate(anns, start=1)
        ]
    raise DataError(
        f'{path}: expected "images" and "annotations" lists (COCO) or "imgs" and "anns" objects (COCO-Text, TextOCR)'
    )


def resolve_image(src: Path, file_name: str) -> tuple[Path | None, str | None]:
    """The image file a ``file_name`` names (see the module docstring), or None and why not."""
    key = file_name.replace("\\", "/")
    if key.startswith("/") or (len(key) > 1 and key[1] == ":"):
        return None, f"file_name {file_name!r} is absolute; it must be relative to the source folder (not read)"
    rel = PurePosixPath(key)
    if ".." in rel.parts:
        return None, f"file_name {file_name!r} leads out of the source folder {src} (not read)"
    candidates = [src.joinpath(*rel.parts), src.joinpath(IMAGE_FOLDER, *rel.parts)]
    if len(rel.parts) > 1:
        candidates += [src / rel.name, src / IMAGE_FOLDER / rel.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate, None
    return None, f"image file not found (looked for {', '.join(str(c.relative_to(src)) for c in candidates)} in {src})"


def parse_annotation(ann: dict) -> tuple[Word | None, str | None]:
    """One annotation -> (Word in the annotation's own pixels, None), or (None, why not)."""
    polygon_key = next((k for k in POLYGON_KEYS if ann.get(k) not in (None, [])), None)
    if polygon_key is not None:
        coords = ann[polygon_key]
        if polygon_key == "segmentation" and isinstance(coords, list) and any(isinstance(c, list) for c in coords):
            if not all(isinstance(c, list) for c in coords):
                return None, '"segmentation" must be [[x1, y1, ...]] (or one flat list)'
            if len(coords) != 1:
                return None, f'"segmentation" holds {len(coords)} polygons; a word is one'
            coords = coords[0]
        elif polygon_key == "segmentation" and not isinstance(coords, list):
            return None, '"segmentation" must be a polygon [[x1, y1, ...]] (RLE masks are not text polygons)'
        points, reason = _flat_points(coords, polygon_key)
    elif ann.get("bbox") is not None:
        points, reason = _bbox_points(ann["bbox"])
    else:
        return None, f'no polygon ({", ".join(POLYGON_KEYS)}) and no "bbox"'
    if reason:
        return None, reason
    text = ann.get("utf8_string", ann.get("text"))
    if text is not None and not isinstance(text, str):
        return None, '"utf8_string" is not a string'
    if "legibility" in ann:
        if ann["legibility"] not in ("legible", ILLEGIBLE):
            return None, f'"legibility" is {ann["legibility"]!r}; expected "legible" or "illegible"'
        illegible = ann["legibility"] == ILLEGIBLE
    else:
        illegible = "utf8_string" in ann and text == TEXTOCR_ILLEGIBLE  # TextOCR
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1) or isinstance(crowd, float):
        return None, f'"iscrowd" is {crowd!r}; expected 0 or 1'
    return Word(points, text, illegible=illegible or crowd == 1), None


def _flat_points(coords, key: str) -> tuple[np.ndarray | None, str | None]:
    if not isinstance(coords, list):
        return None, f'"{key}" must be a list [x1, y1, x2, y2, ...]'
    for i, v in enumerate(coords):
        if not _is_number(v):
            return None, f'"{key}" value {i + 1} is {json.dumps(v)}, not a finite number'
    if len(coords) % 2:
        return None, f'"{key}" holds {len(coords)} numbers; expected x, y pairs'
    if len(coords) < 2 * MIN_POINTS:
        return None, f'"{key}" has {len(coords) // 2} point(s); a word needs at least {MIN_POINTS}'
    return np.asarray(coords, dtype=np.float64).reshape(-1, 2), None


def _bbox_points(bbox) -> tuple[np.ndarray | None, str | None]:
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return None, f'"bbox" must be [x, y, width, height], found {json.dumps(bbox)}'
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, f'"bbox" {json.dumps(bbox)} has no area'
    return np.asarray([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64), None


def _declared_size(entry: dict) -> tuple[tuple[int, int] | None, str | None]:
    w, h = entry.get("width"), entry.get("height")
    if w is None and h is None:
        return None, None
    if not all(_is_number(v) and float(v).is_integer() and v > 0 for v in (w, h)):
        return None, f'"width"/"height" must be positive whole numbers, found {json.dumps(w)}x{json.dumps(h)}'
    return (int(w), int(h)), None


def _list_key(entry, number: int) -> str:
    ident = entry.get("id") if isinstance(entry, dict) else None
    return str(ident) if isinstance(ident, (int, str)) and not isinstance(ident, bool) else f"#{number}"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

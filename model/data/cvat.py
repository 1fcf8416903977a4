"""CVAT "CVAT for images 1.1" export (annotations.xml) -> dataset root.

Source layout (the export's zip, unpacked)::

    SRC/annotations.xml            (or the only .xml file at the top of SRC)
    SRC/images/<name>              each <image name="..."> under images/, or else SRC/<name>

The format, as documented by CVAT:

- the XML format, version 1.1, "Annotation" (for images): https://docs.cvat.ai/docs/other/xml_format/
  (source: site/content/en/docs/other/xml_format.md in github.com/cvat-ai/cvat);
- the export's layout (``images/`` and ``annotations.xml``):
  https://docs.cvat.ai/docs/manual/advanced/formats/format-cvat/.

An ``<image id name width height>`` holds shapes: ``<polygon label points="x0,y0;x1,y1;...">`` and
``<box label xtl ytl xbr ybr [rotation]>`` are text regions, each with ``<attribute name="...">value
</attribute>`` children. Rules:

- **Transcription.** The shape's attribute ``transcription``, else ``text`` (names compared ignoring
  case); neither: no transcription. The value is kept verbatim.
- **Don't care.** A shape is "don't care" (UFO ``"illegibility": true``, its text kept) when its label
  is, or it has an attribute whose name is with the value true/1/yes/on, one of ``###``,
  ``illegible``, ``dontcare``, ``unreadable`` (ignoring case, spaces, ``_``, ``-`` and ``'``: so
  ``dont_care`` and ``Don't care`` too). A transcription ``###`` is don't care by UFO's own rule.
  ``occluded`` is not don't care: occluded text that can be read is still text.
- **Rotation.** A box's ``rotation`` (degrees, written only when not 0) turns it clockwise on
  screen (y pointing down) about its centre: CVAT's own export to polygons
  (cvat/apps/dataset_manager/formats/transformations.py, ``RotatedBoxesToPolygons``) computes
  ``cx + cos a (x - cx) - sin a (y - cy), cy + sin a (x - cx) + cos a (y - cy)`` for the corners
  (xtl, ytl), (xbr, ytl), (xbr, ybr), (xtl, ybr), in that order, as here. Polygons keep their order.
- **EXIF.** ``width``/``height`` go to `label_frame`. CVAT applies the EXIF orientation since
  2.1 (pull request cvat-ai/cvat#4529, fixing #1059), so they are the displayed size and points are
  used as they are; the *stored* size of an EXIF-rotated image (older CVAT labelled the stored
  pixels) turns the points; any other size is a problem for that image.
- **Outside points, too few points.** Points may lie a little outside the image (UFO's 5 % of the
  longer side); farther, or a polygon of fewer than 4 points, is a problem for that shape.
- **Other shapes.** ``<polyline>``, ``<points>``, ``<skeleton>``, ``<cuboid>`` (not areas) and
  ``<tag>`` (image-level) are not text regions: left out and counted in the notes. ``<mask>`` and
  ``<ellipse>`` are areas that may be text but are not polygons: a problem each (redraw them as
  polygons or boxes). Any other element inside an <image> is a problem (unknown shape), and so is
  a ``<track>`` (a "CVAT for video" export).
- **Images.** ``name`` may hold subfolders; it must stay inside SRC (no absolute path, no ``..``;
  checked on the name itself, so symlinks you put in SRC are followed). The image keeps its base
  name; two images with the same base name are a problem (rename one).

Problems name the file, the image (name and id) and the shape (its position among the image's
elements, 1-based, and its tag). Strict mode stops at the first; lenient mode leaves out the shape
(a bad shape) or the image (a bad image or size) and lists each. Malformed XML is an error naming
its line and column. The XML is read with the standard library's xml.etree.ElementTree: it never
fetches external entities, and the expat bundled with Python 3.11 (>= 2.4.1) refuses
"billion laughs" entity expansion (an error, never a hang), so no extra dependency is needed.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from model.data.convert import Converter, LabelFrame, Sample, check_image, register
from model.data.ufo import MIN_POINTS, Problem, Report, Word, far_outside
from model.errors import DataError

ANNOTATIONS = "annotations.xml"
TEXT_SHAPES = ("polygon", "box")
NOT_TEXT_SHAPES = ("polyline", "points", "skeleton", "cuboid", "tag")  # counted in the notes
AREA_SHAPES = ("mask", "ellipse")  # may be text, are not polygons: a problem each
TRANSCRIPTION_ATTRIBUTES = ("transcription", "text")
DONT_CARE_NAMES = frozenset({"###", "illegible", "dontcare", "unreadable"})
TRUE_VALUES = frozenset({"true", "1", "yes", "on"})
# Plain decimal numbers (an exponent allowed): float() would also take 'nan', 'inf' and '1_000'.
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def is_dont_care_name(name: object) -> bool:
    """'###', 'Illegible', "don't care", 'dont_care', 'Unreadable' ... (case, spaces, _ - ' ignored)."""
    return isinstance(name, str) and re.sub(r"[\s_'\-]", "", name).lower() in DONT_CARE_NAMES


def rotated_box(xtl: float, ytl: float, xbr: float, ybr: float, degrees: float) -> np.ndarray:
    """CVAT's box -> its 4 corners, turned clockwise (y down) by `degrees` about its centre."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = (xtl + xbr) / 2, (ytl + ybr) / 2
    corners = np.array([[xtl, ytl], [xbr, ytl], [xbr, ybr], [xtl, ybr]], dtype=np.float64) - (cx, cy)
    return np.stack([cx + c * corners[:, 0] - s * corners[:, 1], cy + s * corners[:, 0] + c * corners[:, 1]], axis=1)


class _ShapeError(Exception):
    pass


@register("cvat")
class CvatConverter(Converter):
    description = "CVAT for images 1.1: SRC/annotations.xml and SRC/images/<name>"

    def read(self, src: Path, report: Report, *, progress: bool = True) -> list[Sample]:
        xml_path = find_annotations(src)
        root = parse_xml(xml_path)
        source = str(xml_path)
        version = root.findtext("version")
        if version is not None and version.strip() != "1.1":
            self.notes.append(f"{xml_path.name} says version {version.strip()!r}; read as CVAT for images 1.1")
        samples: list[Sample] = []
        by_name: dict[str, str] = {}
        skipped: Counter[str] = Counter()
        empty: list[str] = []
        for track in root.iter("track"):
            report.add(
                Problem(
                    source,
                    f'track id {track.get("id")!r}: a "CVAT for video" track is not read; '
                    'export the task as "CVAT for images 1.1"',
                )
            )
        images = root.findall("image")
        for element in tqdm(images, desc="cvat: read", unit="img", disable=not progress):
            name = element.get("name") or ""
            where = f"image {name!r} (id {element.get('id')})"
            image, reason = find_image(src, name)
            if reason:
                report.add(Problem(source, f"{where}: {reason}"))
                continue
            if image.name in by_name:
                report.add(
                    Problem(source, f"{where}: same file name {image.name} as {by_name[image.name]}; rename one")
                )
                continue
            by_name[image.name] = where
            try:
                frame = check_image(image, declared_size(element))
            except (DataError, _ShapeError) as exc:
                report.add(Problem(source, f"{where}: {exc}"))
                continue
            words = []
            for k, shape in enumerate(element, start=1):
                if shape.tag in NOT_TEXT_SHAPES:
                    skipped[shape.tag] += 1
                    continue
                try:
                    words.append(shape_word(shape, frame, image))
                except _ShapeError as exc:
                    report.add(Problem(source, f"{where}, shape {k} <{shape.tag}>: {exc}"))
            if not words:
                empty.append(image.name)
            samples.append(Sample(image.name, image, words))
        if skipped:
            kinds = ", ".join(f"{n} <{t}>" for t, n in sorted(skipped.items()))
            self.notes.append(f"shapes that are not text regions left out: {kinds}")
        if empty:
            self.notes.append(f"{len(empty)} image(s) without any text region: {', '.join(empty)}")
        return samples


def find_annotations(src: Path) -> Path:
    path = src / ANNOTATIONS
    if path.is_file():
        return path
    found = sorted(
        p for p in src.iterdir() if p.suffix.lower() == ".xml" and p.is_file() and not p.name.startswith(".")
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f'{src}: no {ANNOTATIONS}; expected the unpacked "CVAT for images 1.1" export (annotations.xml and images/)'
        )
    raise DataError(f"{src}: no {ANNOTATIONS} and several .xml files ({', '.join(p.name for p in found)}); keep one")


def parse_xml(path: Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        raise DataError(f"{path}: not well-formed XML (line {line}, column {column + 1}: {reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if root.tag != "annotations":
        raise DataError(f"{path}: not a CVAT export; expected <annotations> at the top, found <{root.tag}>")
    return root


def find_image(src: Path, name: str) -> tuple[Path | None, str | None]:
    """The file an <image name> refers to, inside SRC: images/<name>, else <name>; or (None, why not)."""
    if not name.strip():
        return None, "has no name"
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in rel.parts:
        return None, "name escapes the source folder (absolute, or with '..'); it must be a path inside SRC"
    candidates = [src / "images" / rel, src / rel]
    for path in candidates:
        if path.is_file():
            return path, None
    return None, f"image file is missing (looked for {' and '.join(str(p) for p in candidates)})"


def declared_size(element: ET.Element) -> tuple[int, int] | None:
    w, h = element.get("width"), element.get("height")
    if w is None and h is None:
        return None
    values = []
    for key, v in (("width", w), ("height", h)):
        if v is None or not re.fullmatch(r"\s*\d+\s*", v) or int(v) <= 0:
            raise _ShapeError(f"{key} is not a positive whole number of pixels: {v!r}")
        values.append(int(v))
    return values[0], values[1]


def _number(shape: ET.Element, key: str, default: str | None = None) -> float:
    v = shape.get(key, default)
    if v is None or not _NUMBER.fullmatch(v):
        raise _ShapeError(f"{key} is not a number: {v!r}")
    return float(v)


def parse_points(text: str | None) -> np.ndarray:
    """'x0,y0;x1,y1;...' -> (N, 2) float64, or _ShapeError naming the bad pair."""
    if not text or not text.strip():
        raise _ShapeError("has no points")
    pairs = []
    for k, pair in enumerate(text.strip().split(";"), start=1):
        xy = pair.split(",")
        if len(xy) != 2 or not all(_NUMBER.fullmatch(v) for v in xy):
            raise _ShapeError(f"point {k} is not a pair of numbers 'x,y': {pair!r}")
        pairs.append([float(xy[0]), float(xy[1])])
    return np.asarray(pairs, dtype=np.float64)


def shape_word(shape: ET.Element, frame: LabelFrame, image: Path) -> Word:
    if shape.tag in AREA_SHAPES:
        raise _ShapeError(f"a {shape.tag} is not a polygon; redraw it as a polygon or box (or remove it)")
    if shape.tag not in TEXT_SHAPES:
        raise _ShapeError(f"unknown shape <{shape.tag}>; text regions are <polygon> or <box>")
    if shape.tag == "polygon":
        points = parse_points(shape.get("points"))
        if len(points) < MIN_POINTS:
            raise _ShapeError(f"polygon has {len(points)} point(s); a word needs at least {MIN_POINTS}")
    else:
        coords = [_number(shape, key) for key in ("xtl", "ytl", "xbr", "ybr")]
        points = rotated_box(*coords, _number(shape, "rotation", "0"))
    points = frame.points(points)
    if far_outside(points, frame.display):
        raise _ShapeError(f"points lie far outside the {frame.display[0]}x{frame.display[1]} image {image.name}")
    attributes: dict[str, str] = {}
    for attribute in shape.findall("attribute"):
        key = (attribute.get("name") or "").strip().lower()
        attributes.setdefault(key, attribute.text or "")
    transcription = next((attributes[k] for k in TRANSCRIPTION_ATTRIBUTES if k in attributes), None)
    dont_care = is_dont_care_name(shape.get("label")) or any(
        is_dont_care_name(k) and v.strip().lower() in TRUE_VALUES for k, v in attributes.items()
    )
    return Word(points, transcription, illegible=dont_care)

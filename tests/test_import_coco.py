"""COCO-style import: COCO-Text v2, TextOCR and plain COCO, EXIF frames, a round trip, bad input, the CLI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import model.cli
from model.data.convert import assign_splits, convert
from model.data.ufo import SPLITS, Word
from model.errors import DataError
from tests.importers import load_all, save_image, truncated_jpeg

FIXTURE = Path(__file__).parent / "fixtures" / "importers" / "coco"
ICDAR_GT = Path(__file__).parent / "fixtures" / "importers" / "icdar2015" / "Challenge4_Test_Task1_GT" / "gt_img_1.txt"


def fixture_src(tmp_path: Path, name: str) -> Path:
    """A fixture folder with its images generated at the sizes its json declares: cocotext/textocr
    images in images/ (by base name), mmocr's where its file_name says."""
    src = tmp_path / name
    shutil.copytree(FIXTURE / name, src)
    data = json.loads(next(src.glob("*.json")).read_text())
    entries = data["imgs"].values() if "imgs" in data else data["images"]
    for e in entries:
        target = src / e["file_name"] if name == "mmocr" else src / "images" / Path(e["file_name"]).name
        save_image(target, (e["width"], e["height"]))
    return src


# --- the three fixtures --------------------------------------------------------------------------


def test_cocotext_v2(tmp_path):
    src = fixture_src(tmp_path, "cocotext")
    summary = convert("coco", src, tmp_path / "dst", progress=False)
    assert not summary.report.problems
    images = load_all(tmp_path / "dst")
    assert sorted(images) == ["COCO_train2014_000000000009.jpg", "COCO_train2014_000000492314.jpg"]
    assert images["COCO_train2014_000000000009.jpg"] == {}  # no text in it: kept, without words
    assert any("1 image(s) without annotations" in n for n in summary.notes)
    words = list(images["COCO_train2014_000000492314.jpg"].values())
    data = json.loads((FIXTURE / "cocotext" / "cocotext.v2.json").read_text())
    assert [w.points.tolist() for w in words] == [
        np.reshape(a["mask"], (-1, 2)).tolist() for a in data["anns"].values()
    ]
    assert words[0].points.tolist() == [[468.9, 286.7], [468.9, 295.2], [493.0, 295.8], [493.0, 287.2]]
    assert [(w.transcription, w.illegible) for w in words] == [("the", False), (None, True)]
    raw = {}
    for s in SPLITS:
        raw.update(json.loads((tmp_path / "dst" / "jsons" / f"{s}.json").read_text())["images"])
    assert raw["COCO_train2014_000000492314.jpg"]["words"]["0002"] == {
        "points": [[100, 50], [160, 50], [160, 70], [100, 70]],
        "illegibility": True,
    }


def test_textocr(tmp_path):
    src = fixture_src(tmp_path, "textocr")  # file_name "train/<id>.jpg", the image in images/<id>.jpg
    summary = convert("coco", src, tmp_path / "dst", progress=False)
    assert not summary.report.problems
    words = list(load_all(tmp_path / "dst")["0a1b2c3d4e5f6071.jpg"].values())
    data = json.loads((FIXTURE / "textocr" / "TextOCR_0.1_train.json").read_text())
    assert [w.points.tolist() for w in words] == [
        np.reshape(a["points"], (-1, 2)).tolist() for a in data["anns"].values()
    ]
    assert words[0].points.shape == (6, 2)
    assert [(w.transcription, w.illegible) for w in words] == [("Receipt", False), (".", True)]


def test_mmocr_coco_matches_the_icdar_ground_truth(tmp_path):
    src = fixture_src(tmp_path, "mmocr")  # file_name "test/img_1.jpg"
    summary = convert("coco", src, tmp_path / "dst", progress=False)
    assert not summary.report.problems
    words = list(load_all(tmp_path / "dst")["img_1.jpg"].values())
    gt = [line.split(",", 8) for line in ICDAR_GT.read_text(encoding="utf-8-sig").splitlines()]
    assert [w.points.tolist() for w in words] == [np.reshape([float(v) for v in f[:8]], (4, 2)).tolist() for f in gt]
    assert [w.illegible for w in words] == [f[8] == "###" for f in gt]  # iscrowd 1 <-> ###
    assert all(w.transcription is None for w in words)  # MMOCR's textdet json carries no text


def test_cli_convert_then_check_strict(tmp_path, capsys):
    src = fixture_src(tmp_path, "cocotext")
    dst = tmp_path / "dst"
    assert model.cli.main(["convert", "coco", str(src), str(dst)]) == 0
    assert model.cli.main(["check", str(dst), "--strict"]) == 0
    capsys.readouterr()
    extra = dst / "images" / "train" / "stray.jpg"  # the check can fail
    save_image(extra, (10, 10))
    assert model.cli.main(["check", str(dst), "--strict"]) == 2
    assert "stray.jpg: image is not listed in train.json" in capsys.readouterr().err


# --- EXIF: labels on the stored pixels -----------------------------------------------------------

STORED = (64, 48)  # width, height as stored; orientation 6 displays it 48x64
STORED_POLY = [4, 4, 40, 4, 40, 20, 4, 20]


def exif_src(tmp_path: Path, declared: tuple[int, int]) -> Path:
    src = tmp_path / "src"
    save_image(src / "images" / "turned.jpg", STORED, orientation=6)
    write_coco(
        src,
        [(1, "turned.jpg", *declared)],
        [{"id": 1, "image_id": 1, "segmentation": [STORED_POLY], "utf8_string": "w"}],
    )
    return src


def test_exif_labels_on_stored_pixels_are_turned(tmp_path):
    summary = convert("coco", exif_src(tmp_path, STORED), tmp_path / "dst", progress=False)
    assert not summary.report.problems
    assert any("1 EXIF-rotated image(s) labelled on their stored pixels" in n for n in summary.notes)
    word = load_all(tmp_path / "dst")["turned.jpg"]["0001"]
    # orientation 6 turns the stored image 90° clockwise: (x, y) -> (stored height - y, x)
    assert word.points.tolist() == [[44, 4], [44, 40], [28, 40], [28, 4]]
    # the same, seen on the pixels: a white box on the stored pixels lands on the turned points
    stored = Image.new("L", STORED, 0)
    stored.paste(255, (4, 4, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif)
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue())))
    x0, y0, x1, y1 = shown.getbbox()
    assert (x0, y0, x1, y1) == (
        word.points[:, 0].min(),
        word.points[:, 1].min(),
        word.points[:, 0].max(),
        word.points[:, 1].max(),
    )


def test_exif_labels_on_displayed_pixels_stay(tmp_path):
    convert("coco", exif_src(tmp_path, (48, 64)), tmp_path / "dst", progress=False)
    assert load_all(tmp_path / "dst")["turned.jpg"]["0001"].points.reshape(-1).tolist() == STORED_POLY


def test_exif_wrong_declared_size_is_a_problem(tmp_path):
    src = exif_src(tmp_path, (100, 100))
    with pytest.raises(DataError) as err:
        convert("coco", src, tmp_path / "dst", progress=False)
    assert str(err.value) == (
        f"{src / 'ann.json'}: image 'turned.jpg': image id 1: labelled as 100x100 px, but the image is 48x64 "
        "as it displays; were the labels drawn on a resized copy?"
    )


# --- round trip ----------------------------------------------------------------------------------


def write_coco(src: Path, images: list[tuple], anns: list[dict], shape: str = "coco", name: str = "ann.json") -> Path:
    """images: (id, file_name, width, height); the annotation file in plain COCO, COCO-Text v2 or TextOCR shape."""
    src.mkdir(parents=True, exist_ok=True)
    entries = [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images]
    if shape == "coco":
        data = {"images": entries, "annotations": anns, "categories": [{"id": 1, "name": "text"}]}
    else:
        data = {"imgs": {str(e["id"]): e for e in entries}, "anns": {str(a["id"]): a for a in anns}}
        data["imgToAnns" if shape == "cocotext" else "img2Anns"] = {
            str(e["id"]): [a["id"] for a in anns if a["image_id"] == e["id"]] for e in entries
        }
    (src / name).write_text(json.dumps(data))
    return src


def to_annotation(word: Word, ann_id: int, image_id: int, shape: str) -> dict:
    flat = word.points.reshape(-1).tolist()
    ann = {"id": ann_id, "image_id": image_id, "bbox": [0, 0, 1, 1]}
    if shape == "coco":
        ann.update(segmentation=[flat], iscrowd=int(word.illegible), utf8_string=word.transcription)
    elif shape == "cocotext":
        ann.update(mask=flat, legibility="illegible" if word.illegible else "legible", utf8_string=word.transcription)
    else:
        ann.update(points=flat, utf8_string="." if word.illegible else word.transcription)
    return ann


@pytest.mark.parametrize("shape", ["coco", "cocotext", "textocr"])
def test_round_trip_from_known_words(tmp_path, shape):
    rng = np.random.default_rng(11)
    known: dict[str, list[Word]] = {}
    images, anns = [], []
    for i in range(1, 5):
        name = f"p{i}.png" if i % 2 else f"p{i}.jpg"
        words = []
        for j in range(4):
            n = 4 + 2 * (j % 2)
            pts = np.round(rng.uniform(0, 200, (n, 2)), 1)
            illegible = j == 3
            words.append(Word(pts, "." if illegible and shape == "textocr" else f"t{i}{j}, x", illegible=illegible))
        known[name] = words
        path = tmp_path / "src" / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (210, 220), (200, 200, 200)).save(path)
        images.append((i, name, 210, 220))
        anns += [to_annotation(w, 10 * i + j, i, shape) for j, w in enumerate(words)]
    write_coco(tmp_path / "src", images, anns, shape)
    convert("coco", tmp_path / "src", tmp_path / "dst", progress=False)
    got = load_all(tmp_path / "dst")
    assert sorted(got) == sorted(known)
    for name, words in known.items():
        out = list(got[name].values())
        assert [w.points.tolist() for w in out] == [w.points.tolist() for w in words]
        assert [(w.transcription, w.illegible) for w in out] == [(w.transcription, w.illegible) for w in words]
    expected = assign_splits(list(known), 42)
    for s in SPLITS:
        assert sorted(p.name for p in (tmp_path / "dst" / "images" / s).iterdir()) == sorted(
            n for n in known if expected[n] == s
        )


def test_segmentation_shapes(tmp_path):
    src = tmp_path / "src"
    save_image(src / "a.jpg", (120, 200))
    anns = [
        {"id": 1, "image_id": 1, "segmentation": POLY},  # flat: read as one polygon
        {"id": 2, "image_id": 1, "segmentation": [POLY, POLY]},
        {"id": 3, "image_id": 1, "segmentation": {"counts": "abc", "size": [200, 120]}},
    ]
    write_coco(src, [(1, "a.jpg", 120, 200)], anns)
    summary = convert("coco", src, tmp_path / "dst", strict=False, progress=False)
    assert [str(p).removeprefix(f"{src / 'ann.json'}: image 'a.jpg': ") for p in summary.report.problems] == [
        'annotation 2: "segmentation" holds 2 polygons; a word is one',
        'annotation 3: "segmentation" must be a polygon [[x1, y1, ...]] (RLE masks are not text polygons)',
    ]
    assert load_all(tmp_path / "dst")["a.jpg"]["0001"].points.reshape(-1).tolist() == POLY


def test_bbox_becomes_four_corners(tmp_path):
    src = tmp_path / "src"
    save_image(src / "a.jpg", (120, 200))
    write_coco(src, [(1, "a.jpg", 120, 200)], [{"id": 1, "image_id": 1, "bbox": [10, 20, 30.5, 8], "text": "box"}])
    convert("coco", src, tmp_path / "dst", progress=False)
    word = load_all(tmp_path / "dst")["a.jpg"]["0001"]
    assert word.points.tolist() == [[10, 20], [40.5, 20], [40.5, 28], [10, 28]] and word.transcription == "box"


# --- bad input -----------------------------------------------------------------------------------

POLY = [10, 10, 60, 10, 60, 30, 10, 30]


# kind: (extra images (id, file_name, w, h), extra annotations, files to create under SRC: name -> bytes or
#        None for a 120x200 JPEG, the problem's message after "<ann.json>: ")
BAD_CASES = {
    "bad number": (
        [(2, "b.jpg", 120, 200)],
        [{"id": 20, "image_id": 2, "segmentation": [[10, "1O", 60, 10, 60, 30, 10, 30]]}],
        {"b.jpg": None},
        'image \'b.jpg\': annotation 20: "segmentation" value 2 is "1O", not a finite number',
    ),
    "too few points": (
        [(2, "b.jpg", 120, 200)],
        [{"id": 20, "image_id": 2, "segmentation": [[10, 10, 60, 10, 60, 30]]}],
        {"b.jpg": None},
        "image 'b.jpg': annotation 20: \"segmentation\" has 3 point(s); a word needs at least 4",
    ),
    "odd count": (
        [(2, "b.jpg", 120, 200)],
        [{"id": 20, "image_id": 2, "segmentation": [[10, 10, 60, 10, 60, 30, 10]]}],
        {"b.jpg": None},
        "image 'b.jpg': annotation 20: \"segmentation\" holds 7 numbers; expected x, y pairs",
    ),
    "bbox without area": (
        [(2, "b.jpg", 120, 200)],
        [{"id": 20, "image_id": 2, "bbox": [1, 1, 0, 5]}],
        {"b.jpg": None},
        "image 'b.jpg': annotation 20: \"bbox\" [1, 1, 0, 5] has no area",
    ),
    "unknown image": (
        [],
        [{"id": 20, "image_id": 99, "segmentation": [POLY]}],
        {},
        "annotation 20: image_id 99 is not among the images",
    ),
    "missing image": (
        [(2, "b.jpg", 120, 200)],
        [],
        {},
        "image 'b.jpg': image id 2: image file not found (looked for b.jpg, images/b.jpg in {src})",
    ),
    "does not decode": (
        [(2, "b.jpg", 120, 200)],
        [],
        {"b.jpg": b"not an image"},
        "image 'b.jpg': image id 2: cannot read image header (cannot identify image file",
    ),
    "truncated": (
        [(2, "b.jpg", 120, 200)],
        [],
        {"b.jpg": truncated_jpeg()},
        "image 'b.jpg': image id 2: cannot decode image (image file is truncated",
    ),
    "parent path": (
        [(2, "../outside.jpg", 120, 200)],
        [],
        {},
        "image '../outside.jpg': image id 2: file_name '../outside.jpg' leads out of the source folder {src} (not read)",
    ),
    "absolute path": (
        [(2, "{outside}", 120, 200)],
        [],
        {},
        "image '{outside}': image id 2: file_name '{outside}' is absolute; it must be relative to the source folder (not read)",
    ),
    "far outside": (
        [(2, "b.jpg", 120, 200)],
        [
            {"id": 20, "image_id": 2, "segmentation": [POLY]},
            {"id": 21, "image_id": 2, "segmentation": [[10, 10, 900, 10, 900, 30, 10, 30]]},
        ],
        {"b.jpg": None},
        "image 'b.jpg': annotation 21: points lie far outside the 120x200 image",
    ),
    "size mismatch": (
        [(2, "b.jpg", 100, 100)],
        [],
        {"b.jpg": None},
        "image 'b.jpg': image id 2: labelled as 100x100 px, but the image is 120x200 as it displays",
    ),
    "duplicate file name": (
        [(2, "sub/ok.jpg", 120, 200)],
        [],
        {"sub/ok.jpg": None},
        "image 'sub/ok.jpg': image id 2: file name 'ok.jpg' is already taken by image id 1 ({src}/ok.jpg); skipped",
    ),
}


def make_bad(tmp_path: Path, images: list[tuple], anns: list[dict], files: dict) -> Path:
    src = tmp_path / "src"
    save_image(src / "ok.jpg", (120, 200))
    save_image(tmp_path / "outside.jpg", (120, 200))  # exists, outside SRC: must never be read
    for name, data in files.items():
        if data is None:
            save_image(src / name, (120, 200))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
    images = [(1, "ok.jpg", 120, 200)] + [
        (i, f.format(outside=tmp_path / "outside.jpg"), w, h) for i, f, w, h in images
    ]
    anns = [{"id": 10, "image_id": 1, "segmentation": [POLY], "utf8_string": "OK"}] + anns
    return write_coco(src, images, anns)


@pytest.mark.parametrize("kind", list(BAD_CASES))
def test_bad_input_strict_names_file_item_and_reason(tmp_path, kind):
    images, anns, files, message = BAD_CASES[kind]
    src = make_bad(tmp_path, images, anns, files)
    with pytest.raises(DataError) as err:
        convert("coco", src, tmp_path / "dst", progress=False)
    assert str(err.value).startswith(
        f"{src / 'ann.json'}: " + message.format(src=src, outside=tmp_path / "outside.jpg")
    )
    assert not (tmp_path / "dst").exists()


def test_bad_input_lenient_keeps_the_rest_and_lists_every_problem(tmp_path):
    images, anns, files, expected = [], [], {}, []
    for i, (imgs, anns_, files_, message) in enumerate(BAD_CASES.values()):
        # each case gets its own ids and file names: image 100+i, annotations 1000+10i+k
        rename = {"b.jpg": f"k{i}.jpg"}
        for image_id, f, w, h in imgs:
            images.append((100 + i, rename.get(f, f), w, h))
        for k, a in enumerate(anns_):
            anns.append({**a, "id": 1000 + 10 * i + k, "image_id": 100 + i if a["image_id"] == 2 else a["image_id"]})
        files.update({rename.get(n, n): d for n, d in files_.items()})
        for k in range(len(anns_)):
            message = message.replace(f"annotation {20 + k}", f"annotation {1000 + 10 * i + k}")
        expected.append(message.replace("b.jpg", f"k{i}.jpg").replace("image id 2", f"image id {100 + i}"))
    src = make_bad(tmp_path, images, anns, files)
    summary = convert("coco", src, tmp_path / "dst", split=(1, 0, 0), strict=False, progress=False)
    messages = [str(p) for p in summary.report.problems]
    assert len(messages) == len(expected)
    for want in expected:
        want = f"{src / 'ann.json'}: " + want.format(src=src, outside=tmp_path / "outside.jpg")
        assert sum(m.startswith(want) for m in messages) == 1, want
    out = load_all(tmp_path / "dst")
    assert sorted(out) == ["k0.jpg", "k1.jpg", "k10.jpg", "k2.jpg", "k3.jpg", "ok.jpg"]
    assert [len(out[n]) for n in ("k0.jpg", "k1.jpg", "k2.jpg", "k3.jpg", "k10.jpg", "ok.jpg")] == [0, 0, 0, 0, 1, 1]


def test_annotation_file_errors(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"no annotation file \(\*\.json\) in it or in its annotations/ folder"):
        convert("coco", tmp_path / "none", tmp_path / "dst", progress=False)
    two = tmp_path / "two"
    write_coco(two, [], [], name="a.json")
    write_coco(two, [], [], name="b.json")
    with pytest.raises(DataError, match=r"several annotation files \(a\.json, b\.json\)"):
        convert("coco", two, tmp_path / "dst", progress=False)
    nested = tmp_path / "nested"  # a COCO export: annotations/instances_default.json + images/
    save_image(nested / "images" / "a.jpg", (120, 200))
    write_coco(
        nested / "annotations",
        [(1, "a.jpg", 120, 200)],
        [{"id": 1, "image_id": 1, "segmentation": [POLY]}],
        name="instances_default.json",
    )
    assert convert("coco", nested, tmp_path / "dst", progress=False).words["train"] == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.json").write_text('{"images": [}')
    with pytest.raises(DataError, match=r"x\.json: not valid JSON \(line 1, column 13"):
        convert("coco", bad, tmp_path / "dst2", progress=False)
    (bad / "x.json").write_text('{"imgs": {}}')
    with pytest.raises(DataError, match=r"has \"imgs\" but no \"anns\" object: no annotations to import"):
        convert("coco", bad, tmp_path / "dst2", progress=False)

"""CVAT for images 1.1 import: the fixture export, box rotation and EXIF by hand-worked numbers, a
round trip, every kind of bad input (strict and lenient), hostile XML, the CLI."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest

import model.cli
from model.data.convert import assign_splits, convert
from model.data.cvat import is_dont_care_name, rotated_box
from model.data.ufo import SPLITS, Word
from model.errors import DataError
from tests.importers import load_all, save_image

FIXTURE = Path(__file__).parent / "fixtures" / "importers" / "cvat"

# The fixture's words, worked out by hand (pixels of the image as it displays).
EXPECTED = {
    "receipt_a.jpg": [
        ([[20, 30], [80, 30], [80, 50], [20, 50]], "TOTAL", False),
        # 60x20 box centred on (130, 50), turned 90° clockwise: (dx, dy) -> (-dy, dx)
        ([[140, 20], [140, 80], [120, 80], [120, 20]], "12.50", False),
        ([[10.5, 60], [50, 60], [50, 90], [10.5, 90]], "smudge", True),  # label "###", text kept
    ],
    "receipt_b.png": [
        ([[10, 20], [60, 20], [70, 30], [60, 40], [10, 40]], "CAF\u00c9 & CO", False),  # illegible=false
        ([[5, 100], [65, 100], [65, 120], [5, 120]], None, True),  # dont_care=true, no text
    ],
    "receipt_c.jpg": [],
}
IMAGE_FILES = {"images/receipt_a.jpg": (200, 100), "images/batch2/receipt_b.png": (120, 160), "receipt_c.jpg": (80, 80)}


def fixture_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURE / "annotations.xml", src / "annotations.xml")
    for rel, size in IMAGE_FILES.items():
        save_image(src / rel, size)
    return src


def assert_words(words: dict[str, Word], expected: list) -> None:
    assert list(words) == [f"{i:04d}" for i in range(1, len(expected) + 1)]
    for word, (points, text, illegible) in zip(words.values(), expected):
        np.testing.assert_allclose(word.points, np.asarray(points, dtype=float), atol=1e-3)
        assert word.transcription == text
        assert word.illegible is illegible


def cvat_xml(images: str, version: str = "1.1") -> str:
    head = f'<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>{version}</version>\n'
    return head + images + "</annotations>\n"


# --- the fixture export ------------------------------------------------------------------------


def test_fixture_converts_and_loads_strictly(tmp_path):
    src = fixture_src(tmp_path)
    summary = convert("cvat", src, tmp_path / "dst", progress=False)
    assert not summary.report.problems
    images = load_all(tmp_path / "dst")
    assert sorted(images) == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        assert_words(images[name], expected)
    assert sum(summary.words.values()) == 5
    assert summary.notes == [
        "shapes that are not text regions left out: 1 <polyline>, 1 <tag>",
        "1 image(s) without any text region: receipt_c.jpg",
    ]
    for split in SPLITS:
        for copy in (tmp_path / "dst" / "images" / split).iterdir():
            original = next(src.rglob(copy.name))
            assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()


def test_split_is_deterministic(tmp_path):
    src = fixture_src(tmp_path)
    split = (0.34, 0.33, 0.33)
    a = convert("cvat", src, tmp_path / "a", seed=5, split=split, progress=False)
    b = convert("cvat", src, tmp_path / "b", seed=5, split=split, progress=False)
    assert a.images == b.images == {"train": 1, "val": 1, "test": 1}
    expected = assign_splits(list(EXPECTED), 5, split)
    for s in SPLITS:
        assert (tmp_path / "a" / "jsons" / f"{s}.json").read_bytes() == (
            tmp_path / "b" / "jsons" / f"{s}.json"
        ).read_bytes()
        assert sorted(p.name for p in (tmp_path / "a" / "images" / s).iterdir()) == sorted(
            n for n, x in expected.items() if x == s
        )


def test_cli_convert_then_check(tmp_path, capsys):
    src = fixture_src(tmp_path)
    dst = tmp_path / "dst"
    assert model.cli.main(["convert", "cvat", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "no problems" in out and "note: shapes that are not text regions left out" in out
    assert model.cli.main(["check", str(dst), "--strict"]) == 0
    capsys.readouterr()
    xml = src / "annotations.xml"
    xml.write_text(xml.read_text(encoding="utf-8").replace('xtl="20.00"', 'xtl="2O.00"'), encoding="utf-8")
    assert model.cli.main(["convert", "cvat", str(src), str(tmp_path / "bad")]) == 2
    assert (
        f"error: {xml}: image 'receipt_a.jpg' (id 0), shape 1 <box>: xtl is not a number: '2O.00'"
        in capsys.readouterr().err
    )
    assert model.cli.main(["convert", "cvat", str(src), str(tmp_path / "bad"), "--lenient"]) == 0
    assert "1 problem(s), skipped:" in capsys.readouterr().out


# --- geometry by hand ---------------------------------------------------------------------------


def test_rotated_box_hand_worked():
    np.testing.assert_allclose(rotated_box(20, 30, 80, 50, 0), [[20, 30], [80, 30], [80, 50], [20, 50]])
    np.testing.assert_allclose(
        rotated_box(100, 40, 160, 60, 90), [[140, 20], [140, 80], [120, 80], [120, 20]], atol=1e-9
    )
    # 30°: the top-left corner (-30, -10) from the centre (130, 50) goes to
    # (-30 cos 30 + 10 sin 30, -30 sin 30 - 10 cos 30) = (-20.980762, -23.660254)
    c, s = np.sqrt(3) / 2, 0.5
    got = rotated_box(100, 40, 160, 60, 30)
    np.testing.assert_allclose(got[0], [130 - 30 * c + 10 * s, 50 - 30 * s - 10 * c])
    np.testing.assert_allclose(got[0], [109.019238, 26.339746], atol=1e-6)
    np.testing.assert_allclose(got.mean(axis=0), [130, 50])  # about the centre
    assert all(is_dont_care_name(n) for n in ("###", "illegible", "dont_care", "Don't care", "unreadable"))
    assert not any(is_dont_care_name(n) for n in ("text", "occluded", None))


# --- a round trip: UFO words -> CVAT XML -> UFO words ---------------------------------------------


def write_cvat(images: dict[str, tuple[tuple[int, int], list[Word]]]) -> str:
    """A small CVAT writer: each word a <polygon>, label "###" for don't care, its text an attribute."""
    parts = []
    for k, (name, (size, words)) in enumerate(images.items()):
        parts.append(f'  <image id="{k}" name={quoteattr(name)} width="{size[0]}" height="{size[1]}">\n')
        for word in words:
            points = ";".join(f"{x:.2f},{y:.2f}" for x, y in word.points)
            label = "###" if word.illegible else "text"
            parts.append(f'    <polygon label="{label}" source="manual" occluded="0" points="{points}" z_order="0">\n')
            if word.transcription is not None:
                parts.append(
                    f'      <attribute name="text">{word.transcription.replace("&", "&amp;").replace("<", "&lt;")}'
                    "</attribute>\n"
                )
            parts.append("    </polygon>\n")
        parts.append("  </image>\n")
    return cvat_xml("".join(parts))


def test_round_trip(tmp_path):
    words_a = [
        Word(np.array([[10.5, 12.25], [90, 12.25], [90, 30], [10.5, 30]]), "Subtotal <9,90> & tax"),
        Word(np.array([[5, 40], [50, 38], [95, 40], [95, 60], [50, 62], [5, 60]]), "###"),
        Word(np.array([[20, 70], [60, 70], [60, 90], [20, 90]]), "blur", illegible=True),
        Word(np.array([[100, 5], [130, 5], [130, 15], [100, 15]]), None),
    ]
    words_b = [Word(np.array([[0, 0], [64, 0], [64, 48], [0, 48]]), "\u00a3 4.20 \U0001f9fe")]
    images = {"a.jpg": ((160, 120), words_a), "sub/b.png": ((64, 48), words_b)}
    src = tmp_path / "src"
    src.mkdir()
    (src / "annotations.xml").write_text(write_cvat(images), encoding="utf-8")
    for name, (size, _) in images.items():
        save_image(src / "images" / name, size)
    summary = convert("cvat", src, tmp_path / "dst", split=(1, 0, 0), progress=False)
    assert not summary.report.problems
    loaded = load_all(tmp_path / "dst")
    for name, (_, words) in images.items():
        assert_words(loaded[Path(name).name], [(w.points, w.transcription, w.illegible) for w in words])


# --- EXIF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "declared, expected",
    [
        # the stored size (older CVAT labelled the stored pixels): turned by orientation 6, (x, y) -> (100 - y, x)
        ((200, 100), [[80, 20], [80, 70], [70, 70], [70, 20]]),
        # the displayed size (CVAT >= 2.1 applies EXIF): as they are
        ((100, 200), [[20, 20], [70, 20], [70, 30], [20, 30]]),
    ],
)
def test_exif_rotated_image(tmp_path, declared, expected):
    src = tmp_path / "src"
    save_image(src / "images" / "phone.jpg", (200, 100), orientation=6)
    box = '<box label="text" xtl="20" ytl="20" xbr="70" ybr="30"><attribute name="text">A</attribute></box>'
    (src / "annotations.xml").write_text(
        cvat_xml(f'<image id="0" name="phone.jpg" width="{declared[0]}" height="{declared[1]}">{box}</image>\n')
    )
    convert("cvat", src, tmp_path / "dst", split=(1, 0, 0), progress=False)
    np.testing.assert_allclose(load_all(tmp_path / "dst")["phone.jpg"]["0001"].points, expected, atol=1e-3)


def test_exif_wrong_declared_size_is_a_problem(tmp_path):
    src = tmp_path / "src"
    save_image(src / "images" / "phone.jpg", (200, 100), orientation=6)
    xml = src / "annotations.xml"
    xml.write_text(cvat_xml('<image id="3" name="phone.jpg" width="150" height="100"></image>\n'))
    with pytest.raises(DataError) as err:
        convert("cvat", src, tmp_path / "dst", progress=False)
    assert str(err.value) == (
        f"{xml}: image 'phone.jpg' (id 3): {src / 'images' / 'phone.jpg'}: labelled as 150x100 px, "
        "but the image is 100x200 as it displays; were the labels drawn on a resized copy?"
    )


# --- bad input ----------------------------------------------------------------------------------

GOOD_BOX = '<box label="text" xtl="10" ytl="10" xbr="50" ybr="20"><attribute name="text">ok</attribute></box>'
# name -> (<image> content with the bad shape second, or a bad image), the expected problem (after "<xml>: ")
BAD = {
    "good.jpg": (GOOD_BOX, None),
    "bx.jpg": (
        GOOD_BOX + '<box label="text" xtl="2O" ytl="10" xbr="50" ybr="20"></box>',
        "image 'bx.jpg' (id 1), shape 2 <box>: xtl is not a number: '2O'",
    ),
    "pts.jpg": (
        GOOD_BOX + '<polygon label="text" points="1,1;9,1;x,9"></polygon>',
        "image 'pts.jpg' (id 2), shape 2 <polygon>: point 3 is not a pair of numbers 'x,y': 'x,9'",
    ),
    "tp.jpg": (
        GOOD_BOX + '<polygon label="text" points="1,1;9,1;9,9"></polygon>',
        "image 'tp.jpg' (id 3), shape 2 <polygon>: polygon has 3 point(s); a word needs at least 4",
    ),
    "nowhere.jpg": (
        GOOD_BOX,
        "image 'nowhere.jpg' (id 4): image file is missing (looked for {src}/images/nowhere.jpg and {src}/nowhere.jpg)",
    ),
    "broken.jpg": (GOOD_BOX, "image 'broken.jpg' (id 5): {src}/images/broken.jpg: cannot read image header"),
    "../outside.jpg": (
        GOOD_BOX,
        "image '../outside.jpg' (id 6): name escapes the source folder (absolute, or with "
        "'..'); it must be a path inside SRC",
    ),
    "far.jpg": (
        GOOD_BOX + '<box label="text" xtl="150" ytl="10" xbr="260" ybr="20"></box>',
        "image 'far.jpg' (id 7), shape 2 <box>: points lie far outside the 200x100 image far.jpg",
    ),
    "circle.jpg": (
        GOOD_BOX + '<circle label="text" cx="5" cy="5" r="2"></circle>',
        "image 'circle.jpg' (id 8), shape 2 <circle>: unknown shape <circle>; text regions are <polygon> or <box>",
    ),
    "mask.jpg": (
        GOOD_BOX + '<mask label="text" rle="3, 5" left="1" top="1" width="4" height="2"></mask>',
        "image 'mask.jpg' (id 9), shape 2 <mask>: a mask is not a polygon; redraw it as a polygon or box",
    ),
    "size.jpg": (
        GOOD_BOX,
        "image 'size.jpg' (id 10): {src}/images/size.jpg: labelled as 300x100 px, but the image is "
        "200x100 as it displays",
    ),
}


def bad_src(tmp_path: Path, names: list[str]) -> tuple[Path, Path]:
    src = tmp_path / "src"
    for name in BAD:
        if name not in ("nowhere.jpg", "broken.jpg", "../outside.jpg"):
            save_image(src / "images" / name, (200, 100))
    (src / "images" / "broken.jpg").write_bytes(b"this is not a JPEG")
    save_image(src / "outside.jpg", (200, 100))  # exists, but outside SRC/images: still refused
    save_image(tmp_path / "outside.jpg", (200, 100))
    body = ""
    for k, name in enumerate(BAD):
        if name in names:
            width = 300 if name == "size.jpg" else 200
            body += f'  <image id="{k}" name="{name}" width="{width}" height="100">{BAD[name][0]}</image>\n'
    xml = src / "annotations.xml"
    xml.write_text(cvat_xml(body), encoding="utf-8")
    return src, xml


def test_bad_input_lenient_keeps_the_rest_and_lists_each_problem(tmp_path):
    src, xml = bad_src(tmp_path, list(BAD))
    summary = convert("cvat", src, tmp_path / "dst", split=(1, 0, 0), strict=False, progress=False)
    problems = [str(p) for p in summary.report.problems]
    expected = [f"{xml}: " + want.format(src=src) for _, want in BAD.values() if want]
    assert len(problems) == len(expected)
    for got, want in zip(problems, expected):
        assert got.startswith(want), (got, want)
    images = load_all(tmp_path / "dst")
    assert sorted(images) == ["bx.jpg", "circle.jpg", "far.jpg", "good.jpg", "mask.jpg", "pts.jpg", "tp.jpg"]
    assert all([w.transcription for w in words.values()] == ["ok"] for words in images.values())


@pytest.mark.parametrize("name", [n for n, (_, want) in BAD.items() if want])
def test_bad_input_strict_names_file_item_and_what(tmp_path, name):
    src, xml = bad_src(tmp_path, ["good.jpg", name])
    with pytest.raises(DataError) as err:
        convert("cvat", src, tmp_path / "dst", progress=False)
    assert str(err.value).startswith(f"{xml}: " + BAD[name][1].format(src=src))
    assert not (tmp_path / "dst").exists()


def test_malformed_xml_names_its_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    xml = src / "annotations.xml"
    xml.write_text(cvat_xml('  <image id="0" name="a.jpg" width="2" height="2">\n    <box xtl="1" <\n  </image>\n'))
    with pytest.raises(DataError, match=r"annotations\.xml: not well-formed XML \(line 5, column 18: not well-formed"):
        convert("cvat", src, tmp_path / "dst", strict=False, progress=False)


def test_billion_laughs_and_external_entities_are_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    xml = src / "annotations.xml"
    lol = ['<!ENTITY a0 "lollollollollollollollollollol">'] + [
        f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10)
    ]
    xml.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE annotations [\n' + "\n".join(lol) + "\n]>\n<annotations>"
        '<image id="0" name="&a9;" width="2" height="2"></image></annotations>\n'
    )
    start = time.monotonic()
    with pytest.raises(
        DataError,
        match=r"annotations\.xml: not well-formed XML \(line \d+, column \d+: "
        r"limit on input amplification factor",
    ):
        convert("cvat", src, tmp_path / "dst", progress=False)
    assert time.monotonic() - start < 5
    (tmp_path / "secret.txt").write_text("secret")
    xml.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE annotations [<!ENTITY s SYSTEM "file://{tmp_path}/secret.txt">]>\n'
        "<annotations><version>&s;</version></annotations>\n"
    )
    with pytest.raises(DataError, match=r"not well-formed XML \(line 3, column 23: undefined entity &s;\)"):
        convert("cvat", src, tmp_path / "dst", progress=False)


def test_layout_errors_tracks_and_duplicate_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(DataError, match=r"no annotations\.xml; expected the unpacked \"CVAT for images 1\.1\" export"):
        convert("cvat", src, tmp_path / "dst", progress=False)
    (src / "task.xml").write_text("<dataset/>")
    with pytest.raises(
        DataError, match=r"task\.xml: not a CVAT export; expected <annotations> at the top, found <dataset>"
    ):
        convert("cvat", src, tmp_path / "dst", progress=False)
    (src / "task.xml").unlink()
    save_image(src / "images" / "a" / "r.jpg", (200, 100))
    save_image(src / "images" / "b" / "r.jpg", (200, 100))
    xml = src / "annotations.xml"
    xml.write_text(
        cvat_xml(
            '  <image id="0" name="a/r.jpg" width="200" height="100"></image>\n'
            '  <image id="1" name="b/r.jpg" width="200" height="100"></image>\n'
            '  <track id="0" label="text" source="manual"><box frame="0" xtl="1" ytl="1" xbr="5" ybr="5" '
            'outside="0" occluded="0" keyframe="1"></box></track>\n',
            version="1.0",
        )
    )
    summary = convert("cvat", src, tmp_path / "dst", strict=False, split=(1, 0, 0), progress=False)
    assert [str(p) for p in summary.report.problems] == [
        f'{xml}: track id \'0\': a "CVAT for video" track is not read; export the task as "CVAT for images 1.1"',
        f"{xml}: image 'b/r.jpg' (id 1): same file name r.jpg as image 'a/r.jpg' (id 0); rename one",
    ]
    assert "annotations.xml says version '1.0'; read as CVAT for images 1.1" in summary.notes

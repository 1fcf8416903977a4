"""Label Studio JSON import: the fixture export, rotation and EXIF by hand-worked numbers, a round
trip, every kind of bad input (strict and lenient), the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import model.cli
from model.data.convert import assign_splits, convert
from model.data.labelstudio import image_reference_name, is_dont_care_name, rotated_rect
from model.data.ufo import SPLITS, Word
from model.errors import DataError
from tests.importers import load_all, save_image

FIXTURE = Path(__file__).parent / "fixtures" / "importers" / "labelstudio"
C30, S30 = np.sqrt(3) / 2, 0.5

# The fixture's words, worked out by hand: percentages of original_width x original_height.
EXPECTED = {
    "3f2a9c1e-receipt_a.jpg": [  # 200x100; the upload prefix is kept: the file in SRC has it
        ([[20, 20], [70, 20], [70, 30], [20, 30]], "TOTAL", False),
        # x, y = 20, 50 px; 50 x 10 px turned 30° clockwise about (20, 50): (50, 0) -> (50 cos, 50 sin) ...
        (
            [
                [20, 50],
                [20 + 50 * C30, 50 + 50 * S30],
                [20 + 50 * C30 - 10 * S30, 50 + 50 * S30 + 10 * C30],
                [20 - 10 * S30, 50 + 10 * C30],
            ],
            "12.50",
            False,
        ),
        ([[100, 50], [160, 50], [160, 70], [100, 70]], "CASH?", True),  # label "Illegible"
    ],
    "receipt_b.png": [  # 120x160, the last submitted annotation (id 23)
        ([[12, 16], [60, 16], [60, 32], [12, 32]], None, True),  # polygonlabels "###", no text area
        ([[6, 80], [66, 80], [66, 100], [6, 100]], "CAF\u00c9, 2 \u00d7 3", False),
    ],
    "receipt_c.jpg": [],  # annotated without regions; the file has no upload prefix
}
SIZES = {"3f2a9c1e-receipt_a.jpg": (200, 100), "receipts/receipt_b.png": (120, 160), "receipt_c.jpg": (80, 80)}


def fixture_src(tmp_path: Path) -> Path:
    """The fixture export and its images (generated: tiny, nothing binary checked in)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURE / "export.json", src / "project-1-at-2024-05-04-08-01-3f2a9c1e.json")
    for rel, size in SIZES.items():
        save_image(src / rel, size)
    return src


def assert_words(words: dict[str, Word], expected: list) -> None:
    assert list(words) == [f"{i:04d}" for i in range(1, len(expected) + 1)]
    for word, (points, text, illegible) in zip(words.values(), expected):
        np.testing.assert_allclose(word.points, np.asarray(points, dtype=float), atol=1e-3)
        assert word.transcription == text
        assert word.illegible is illegible


# --- the fixture export ------------------------------------------------------------------------


def test_fixture_converts_and_loads_strictly(tmp_path):
    src = fixture_src(tmp_path)
    summary = convert("labelstudio", src, tmp_path / "dst", progress=False)
    assert not summary.report.problems
    images = load_all(tmp_path / "dst")
    assert sorted(images) == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        assert_words(images[name], expected)
    assert sum(summary.words.values()) == 5 and sum(summary.images.values()) == 3
    notes = "\n".join(summary.notes)
    assert "1 task(s) without a submitted annotation left out: 4" in notes
    assert "several submitted annotations" in notes and ": 2" in notes
    assert "without Label Studio's upload prefix: receipt_c.jpg" in notes
    assert "results without a region shape ignored: 1 textarea" in notes  # the image-level comment
    assert "annotated without any region: receipt_c.jpg" in notes
    # images are copied byte for byte
    for split in SPLITS:
        for copy in (tmp_path / "dst" / "images" / split).iterdir():
            original = next(src.rglob(copy.name))
            assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()


def test_split_is_deterministic(tmp_path):
    src = fixture_src(tmp_path)
    split = (0.34, 0.33, 0.33)
    a = convert("labelstudio", src, tmp_path / "a", seed=3, split=split, progress=False)
    b = convert("labelstudio", src, tmp_path / "b", seed=3, split=split, progress=False)
    assert a.images == b.images == {"train": 1, "val": 1, "test": 1}
    expected = assign_splits(list(EXPECTED), 3, split)
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
    assert model.cli.main(["convert", "labelstudio", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "no problems" in out and "note: 1 task(s) without a submitted annotation" in out
    assert model.cli.main(["check", str(dst), "--strict"]) == 0
    capsys.readouterr()
    # a bad export: the CLI names the file and the task/result and exits 2; --lenient goes on
    export = next(src.glob("*.json"))
    tasks = json.loads(export.read_text(encoding="utf-8"))
    tasks[0]["annotations"][0]["result"][0]["value"]["x"] = "10"
    export.write_text(json.dumps(tasks), encoding="utf-8")
    assert model.cli.main(["convert", "labelstudio", str(src), str(tmp_path / "bad")]) == 2
    assert f"error: {export}: task 1, result 'r1': value.x is not a number: '10'" in capsys.readouterr().err
    assert model.cli.main(["convert", "labelstudio", str(src), str(tmp_path / "bad"), "--lenient"]) == 0
    assert "1 problem(s), skipped:" in capsys.readouterr().out


# --- geometry and names, by hand --------------------------------------------------------------


def test_rotated_rect_hand_worked():
    np.testing.assert_allclose(rotated_rect(20, 20, 50, 10, 0), [[20, 20], [70, 20], [70, 30], [20, 30]])
    # 90° clockwise on screen about the top-left corner: the width now points down
    np.testing.assert_allclose(rotated_rect(20, 20, 50, 10, 90), [[20, 20], [20, 70], [10, 70], [10, 20]], atol=1e-9)
    np.testing.assert_allclose(rotated_rect(0, 0, 10, 10, 180), [[0, 0], [-10, 0], [-10, -10], [0, -10]], atol=1e-9)


def test_image_reference_names_and_dont_care_names():
    assert image_reference_name("/data/upload/1/3f2a9c1e-receipt.jpg") == "3f2a9c1e-receipt.jpg"
    assert image_reference_name("/data/local-files/?d=scans/2024/r%20one.JPG") == "r one.JPG"
    assert image_reference_name("s3://bucket/receipts/r.png") == "r.png"
    assert image_reference_name("https://x.example/r.jpg?X-Amz-Signature=abc") == "r.jpg"
    assert image_reference_name("C:\\scans\\r.jpg") == "r.jpg"
    assert image_reference_name("/data/local-files/?d=scans/") == ""
    assert all(is_dont_care_name(n) for n in ("###", "Illegible", "don't care", "Dont_Care", "dont-care", "UNREADABLE"))
    assert not any(is_dont_care_name(n) for n in ("Text", "illegible text", "", None, "##"))


# --- a round trip: UFO words -> Label Studio JSON -> UFO words ----------------------------------


def write_labelstudio(images: dict[str, tuple[tuple[int, int], list[Word]]]) -> list[dict]:
    """A small Label Studio writer: one task per image, each word a polygonlabels region (label
    "Illegible" for don't care) and a text area linked by the region id."""
    tasks = []
    for k, (name, (size, words)) in enumerate(images.items(), start=1):
        results = []
        for i, word in enumerate(words):
            pct = (word.points / np.array(size) * 100).tolist()
            base = {
                "original_width": size[0],
                "original_height": size[1],
                "image_rotation": 0,
                "id": f"w{i}",
                "to_name": "image",
            }
            label = "Illegible" if word.illegible else "Text"
            results.append(
                base
                | {"type": "polygonlabels", "from_name": "label", "value": {"points": pct, "polygonlabels": [label]}}
            )
            if word.transcription is not None:
                results.append(
                    base
                    | {
                        "type": "textarea",
                        "from_name": "transcription",
                        "value": {"points": pct, "text": [word.transcription]},
                    }
                )
        tasks.append(
            {
                "id": k,
                "data": {"image": f"/data/upload/3/{k:08x}-{name}"},
                "annotations": [{"id": k, "result": results, "was_cancelled": False}],
            }
        )
    return tasks


def test_round_trip(tmp_path):
    words_a = [
        Word(np.array([[10.5, 12.25], [90, 12.25], [90, 30], [10.5, 30]]), "Subtotal 9,90"),
        Word(np.array([[5, 40], [50, 38], [95, 40], [95, 60], [50, 62], [5, 60]]), "###"),
        Word(np.array([[20, 70], [60, 70], [60, 90], [20, 90]]), "blur", illegible=True),
        Word(np.array([[100, 5], [130, 5], [130, 15], [100, 15]]), None),
    ]
    words_b = [Word(np.array([[0, 0], [64, 0], [64, 48], [0, 48]]), "\u00a3 4.20 \U0001f9fe")]
    images = {"a.jpg": ((160, 120), words_a), "b.png": ((64, 48), words_b)}
    src = tmp_path / "src"
    src.mkdir()
    (src / "export.json").write_text(json.dumps(write_labelstudio(images)), encoding="utf-8")
    for k, (name, (size, _)) in enumerate(images.items(), start=1):
        save_image(src / f"{k:08x}-{name}", size)
    summary = convert("labelstudio", src, tmp_path / "dst", split=(1, 0, 0), progress=False)
    assert not summary.report.problems
    loaded = load_all(tmp_path / "dst")
    for k, (name, (_, words)) in enumerate(images.items(), start=1):
        assert_words(loaded[f"{k:08x}-{name}"], [(w.points, w.transcription, w.illegible) for w in words])
    assert loaded["00000001-a.jpg"]["0002"].dont_care  # a "###" transcription is don't care by UFO's rule


# --- EXIF ---------------------------------------------------------------------------------------


def exif_task(original: tuple[int, int]) -> dict:
    value = {"x": 10, "y": 20, "width": 25, "height": 10, "rotation": 0, "rectanglelabels": ["Text"]}
    return {
        "id": 1,
        "data": {"image": "/data/upload/1/phone.jpg"},
        "annotations": [
            {
                "id": 1,
                "result": [
                    {
                        "original_width": original[0],
                        "original_height": original[1],
                        "image_rotation": 0,
                        "value": value,
                        "id": "e1",
                        "from_name": "label",
                        "to_name": "image",
                        "type": "rectanglelabels",
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    "original, expected",
    [
        # the stored size 200x100 (labelled where EXIF was ignored): (20, 20)-(70, 30) on the stored
        # pixels, turned by orientation 6 (90° clockwise): (x, y) -> (100 - y, x)
        ((200, 100), [[80, 20], [80, 70], [70, 70], [70, 20]]),
        # the displayed size 100x200 (a browser applies EXIF): percentages of the display, as they are
        ((100, 200), [[10, 40], [35, 40], [35, 60], [10, 60]]),
    ],
)
def test_exif_rotated_image(tmp_path, original, expected):
    src = tmp_path / "src"
    save_image(src / "phone.jpg", (200, 100), orientation=6)
    (src / "export.json").write_text(json.dumps([exif_task(original)]), encoding="utf-8")
    convert("labelstudio", src, tmp_path / "dst", split=(1, 0, 0), progress=False)
    words = load_all(tmp_path / "dst")["phone.jpg"]
    np.testing.assert_allclose(words["0001"].points, expected, atol=1e-3)


def test_exif_wrong_declared_size_is_a_problem(tmp_path):
    src = tmp_path / "src"
    save_image(src / "phone.jpg", (200, 100), orientation=6)
    export = src / "export.json"
    export.write_text(json.dumps([exif_task((150, 100))]), encoding="utf-8")
    with pytest.raises(DataError) as err:
        convert("labelstudio", src, tmp_path / "dst", progress=False)
    assert str(err.value) == (
        f"{export}: task 1: {src / 'phone.jpg'}: labelled as 150x100 px, but the image is 100x200 "
        "as it displays; were the labels drawn on a resized copy? (result 'e1')"
    )


# --- bad input ----------------------------------------------------------------------------------


def rect(rid: str, x=10, y=10, w=20, h=10, **extra) -> dict:
    return {
        "original_width": 200,
        "original_height": 100,
        "image_rotation": 0,
        "id": rid,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": ["Text"]} | extra,
    }


def task(tid: int, ref: str, results: list[dict]) -> dict:
    return {"id": tid, "data": {"image": ref}, "annotations": [{"id": tid, "result": results, "was_cancelled": False}]}


def bad_tasks(src: Path) -> list[dict]:
    """One task per kind of bad input, each also holding a good region where it can; task 1 is all good."""
    poly3 = rect("tp") | {
        "type": "polygonlabels",
        "value": {"points": [[1, 1], [9, 1], [9, 9]], "polygonlabels": ["Text"]},
    }
    ellipse = rect("el") | {
        "type": "ellipselabels",
        "value": {"x": 50, "y": 50, "radiusX": 5, "radiusY": 3, "ellipselabels": ["Text"]},
    }
    for name in ("good", "bx", "tp", "far", "el", "size"):
        save_image(src / f"{name}.jpg", (200, 100))
    (src / "broken.jpg").write_bytes(b"this is not a JPEG")
    (src.parent / "outside").mkdir(exist_ok=True)
    save_image(src.parent / "outside" / "secret.jpg", (200, 100))
    return [
        task(1, "/data/upload/1/good.jpg", [rect("g1")]),
        task(11, "/data/upload/1/bx.jpg", [rect("ok"), rect("bx", x="10")]),  # bad number
        task(12, "/data/upload/1/tp.jpg", [rect("ok"), poly3]),  # too few points
        task(13, "/data/upload/1/deadbeef-nowhere.jpg", [rect("ok")]),  # missing image
        task(14, "/data/upload/1/broken.jpg", [rect("ok")]),  # undecodable image
        task(15, "/data/local-files/?d=../outside/secret.jpg", [rect("ok")]),  # only its base name is looked up
        task(16, "/data/local-files/?d=receipts/..", [rect("ok")]),  # no file name at all
        task(17, "/data/upload/1/far.jpg", [rect("ok"), rect("far", x=150, w=20)]),  # points far outside
        task(18, "/data/upload/1/el.jpg", [rect("ok"), ellipse]),  # unknown shape type
        task(19, "/data/upload/1/size.jpg", [rect("ok") | {"original_width": 300}]),  # wrong declared size
    ]


def expected_problems(src: Path, export: Path) -> list[str]:
    return [
        f"{export}: task 11, result 'bx': value.x is not a number: '10'",
        f"{export}: task 12, result 'tp': polygon has 3 point(s); a word needs at least 4",
        f"{export}: task 13: image file is missing: deadbeef-nowhere.jpg or nowhere.jpg "
        f"(from '/data/upload/1/deadbeef-nowhere.jpg') is nowhere under {src}",
        f"{export}: task 14: {src / 'broken.jpg'}: cannot read image header",
        f"{export}: task 15: image file is missing: secret.jpg (from '/data/local-files/?d=../outside/secret.jpg') "
        f"is nowhere under {src}",
        f"{export}: task 16: image reference '/data/local-files/?d=receipts/..' does not end in a file name",
        f"{export}: task 17, result 'far': points lie far outside the 200x100 image far.jpg",
        f"{export}: task 18, result 'el': ellipselabels is not a text region shape (use rectangles or polygons)",
        f"{export}: task 19: {src / 'size.jpg'}: labelled as 300x100 px, but the image is 200x100 as it displays",
    ]


def test_bad_input_lenient_keeps_the_rest_and_lists_each_problem(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    export = src / "export.json"
    export.write_text(json.dumps(bad_tasks(src), indent=1), encoding="utf-8")
    summary = convert("labelstudio", src, tmp_path / "dst", split=(1, 0, 0), strict=False, progress=False)
    problems = [str(p) for p in summary.report.problems]
    expected = expected_problems(src, export)
    assert len(problems) == len(expected)
    for got, want in zip(problems, expected):
        assert got.startswith(want), (got, want)
    # the good regions of tasks with one bad region are kept; tasks with a bad image or size are not
    images = load_all(tmp_path / "dst")
    assert sorted(images) == ["bx.jpg", "el.jpg", "far.jpg", "good.jpg", "tp.jpg"]
    assert all(len(words) == 1 for words in images.values())
    assert f"{len(expected)} problem(s), skipped:" in str(summary)


@pytest.mark.parametrize("tid", [11, 12, 13, 14, 15, 16, 17, 18, 19])
def test_bad_input_strict_names_file_item_and_what(tmp_path, tid):
    src = tmp_path / "src"
    src.mkdir()
    export = src / "export.json"
    tasks = bad_tasks(src)
    export.write_text(json.dumps([t for t in tasks if t["id"] in (1, tid)]), encoding="utf-8")
    with pytest.raises(DataError) as err:
        convert("labelstudio", src, tmp_path / "dst", progress=False)
    want = next(p for p in expected_problems(src, export) if f"task {tid}" in p)
    assert str(err.value).startswith(want)
    assert not (tmp_path / "dst").exists()  # nothing written on a strict failure


def test_malformed_json_names_its_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    export = src / "export.json"
    export.write_text('[\n  {"id": 1,\n   "data": {"image": "a.jpg"},,\n  }\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"export\.json: not valid JSON \(line 3, column 31: "):
        convert("labelstudio", src, tmp_path / "dst", strict=False, progress=False)


def test_export_layout_errors(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(DataError, match="no Label Studio export"):
        convert("labelstudio", src, tmp_path / "dst", progress=False)
    (src / "a.json").write_text("[]")
    (src / "b.json").write_text("[]")
    with pytest.raises(DataError, match=r"several \.json files \(a\.json, b\.json\)"):
        convert("labelstudio", src, tmp_path / "dst", progress=False)
    (src / "b.json").unlink()
    (src / "a.json").write_text('{"images": {}}')
    with pytest.raises(DataError, match="expected a list of tasks"):
        convert("labelstudio", src, tmp_path / "dst", progress=False)
    # JSON-MIN rows have no "data": named, not guessed
    (src / "a.json").write_text(json.dumps([{"image": "/data/upload/1/x.jpg", "id": 5, "label": []}]))
    with pytest.raises(DataError, match=r"task 5: has no \"data\"; is this the JSON-MIN or CSV export"):
        convert("labelstudio", src, tmp_path / "dst", progress=False)


def test_same_image_twice_and_ambiguous_names_are_problems(tmp_path):
    src = tmp_path / "src"
    save_image(src / "a" / "r.jpg", (200, 100))
    save_image(src / "b" / "r.jpg", (200, 100))
    save_image(src / "s.jpg", (200, 100))
    export = src / "export.json"
    export.write_text(
        json.dumps(
            [
                task(1, "/data/upload/1/s.jpg", [rect("x")]),
                task(2, "s3://b/s.jpg", [rect("y")]),
                task(3, "/data/upload/1/r.jpg", [rect("z")]),
            ]
        ),
        encoding="utf-8",
    )
    summary = convert("labelstudio", src, tmp_path / "dst", strict=False, split=(1, 0, 0), progress=False)
    assert [str(p) for p in summary.report.problems] == [
        f"{export}: task 2: image s.jpg is already used by task 1; skipped",
        f"{export}: task 3: image r.jpg is found in several places under {src}: a/r.jpg, b/r.jpg",
    ]

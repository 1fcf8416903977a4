"""ICDAR 2015 import: the real gt_img_1.txt, layouts, BOM/CRLF, don't care, a round trip, bad input, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import model.cli
from model.data.convert import assign_splits, convert
from model.data.ufo import SPLITS, Word
from model.errors import DataError
from tests.importers import load_all, save_image, truncated_jpeg

FIXTURE = Path(__file__).parent / "fixtures" / "importers" / "icdar2015"
GT_DIR = "Challenge4_Test_Task1_GT"
IMG_DIR = "ch4_test_images"
ICDAR_SIZE = (1280, 720)


def fixture_src(tmp_path: Path) -> Path:
    """The fixture's ground truth and a generated 1280x720 image per gt file, as the official zips unpack."""
    src = tmp_path / "src"
    shutil.copytree(FIXTURE / GT_DIR, src / GT_DIR)
    for gt in sorted((src / GT_DIR).glob("gt_*.txt")):
        save_image(src / IMG_DIR / (gt.stem.removeprefix("gt_") + ".jpg"), ICDAR_SIZE)
    return src


def raw_gt(path: Path) -> list[tuple[list[float], str]]:
    """The test's own reading of a gt file: BOM and CR dropped, 8 numbers then the transcription."""
    text = path.read_bytes().decode("utf-8")
    assert text.startswith("\ufeff")
    out = []
    for line in text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n"):
        if line:
            fields = line.split(",", 8)
            out.append(([float(v) for v in fields[:8]], fields[8]))
    return out


# --- the fixture: real ICDAR 2015 ground truth ---------------------------------------------------


def test_fixture_converts_and_loads_strictly_with_every_word(tmp_path):
    src = fixture_src(tmp_path)
    summary = convert("icdar2015", src, tmp_path / "dst", progress=False)
    assert not summary.report.problems
    images = load_all(tmp_path / "dst")
    assert sorted(images) == ["img_1.jpg", "img_2.jpg"]
    for name in images:
        expected = raw_gt(FIXTURE / GT_DIR / f"gt_{Path(name).stem}.txt")
        words = images[name]
        assert list(words) == [f"{i:04d}" for i in range(1, len(expected) + 1)]
        for word, (coords, text) in zip(words.values(), expected):
            assert word.points.tolist() == np.asarray(coords).reshape(4, 2).tolist()
            assert word.transcription == text
            assert word.illegible == (text == "###")
    img1 = images["img_1.jpg"]
    assert [w.transcription for w in img1.values()] == [
        "Genaxis Theatre",
        "[06]",
        "###",
        "62-03",
        "Carpark",
        "###",
        "###",
    ]
    assert img1["0001"].points.tolist() == [[377, 117], [463, 117], [465, 130], [378, 130]]
    img2 = images["img_2.jpg"]
    assert b"\r\n" in (FIXTURE / GT_DIR / "gt_img_2.txt").read_bytes()  # the fixture does test CRLF
    assert img2["0001"].transcription == "TOTAL: 1,234.50, CASH"  # commas kept, CRLF and BOM gone
    assert img2["0002"].points.tolist() == [[640.5, 100], [700, 100], [700, 130.25], [640.5, 130.25]]
    assert img2["0003"].transcription == "edge"  # 10 px outside the image: within the tolerance, kept
    # don't care reaches the UFO JSON as "illegibility": true, only on the ### words
    raw = {}
    for s in SPLITS:
        raw.update(json.loads((tmp_path / "dst" / "jsons" / f"{s}.json").read_text())["images"])
    flags = [w.get("illegibility", False) for w in raw["img_1.jpg"]["words"].values()]
    assert flags == [False, False, True, False, False, True, True]


def test_split_is_the_seeded_one_and_deterministic(tmp_path):
    src = fixture_src(tmp_path)
    for i in range(3, 12):  # more images: a split with something in every part
        shutil.copy(src / GT_DIR / "gt_img_1.txt", src / GT_DIR / f"gt_img_{i}.txt")
        save_image(src / IMG_DIR / f"img_{i}.jpg", ICDAR_SIZE)
    convert("icdar2015", src, tmp_path / "a", seed=7, progress=False)
    names = [p.name for p in (src / IMG_DIR).iterdir()]
    expected = assign_splits(names, 7)
    for s in SPLITS:
        got = sorted(p.name for p in (tmp_path / "a" / "images" / s).iterdir())
        assert got == sorted(n for n in names if expected[n] == s)
    assert {s: len(list((tmp_path / "a" / "images" / s).iterdir())) for s in SPLITS} == {
        "train": 9,
        "val": 1,
        "test": 1,
    }
    convert("icdar2015", src, tmp_path / "b", seed=7, progress=False)
    for s in SPLITS:
        assert (tmp_path / "a" / "jsons" / f"{s}.json").read_bytes() == (
            tmp_path / "b" / "jsons" / f"{s}.json"
        ).read_bytes()


def test_files_side_by_side_give_the_same_root(tmp_path):
    src = fixture_src(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in [*(src / GT_DIR).iterdir(), *(src / IMG_DIR).iterdir()]:
        (flat / p.name).symlink_to(p)
    (flat / "readme.txt").write_text("not ground truth")  # other .txt files are left alone
    convert("icdar2015", src, tmp_path / "a", progress=False)
    summary = convert("icdar2015", flat, tmp_path / "b", progress=False)
    assert not summary.report.problems
    for s in SPLITS:
        assert (tmp_path / "a" / "jsons" / f"{s}.json").read_bytes() == (
            tmp_path / "b" / "jsons" / f"{s}.json"
        ).read_bytes()


def test_cli_convert_then_check_strict(tmp_path, capsys):
    src = fixture_src(tmp_path)
    dst = tmp_path / "dst"
    assert model.cli.main(["convert", "icdar2015", str(src), str(dst)]) == 0
    assert "no problems" in capsys.readouterr().out
    assert model.cli.main(["check", str(dst), "--strict"]) == 0
    # the check can fail: a word moved far outside its image
    json_path = next(p for p in (dst / "jsons").iterdir() if "img_1.jpg" in p.read_text())
    json_path.write_text(json_path.read_text().replace("377", "9377", 1))
    capsys.readouterr()
    assert model.cli.main(["check", str(dst), "--strict"]) == 2
    assert "image 'img_1.jpg': word '0001': points lie far outside the 1280x720 image" in capsys.readouterr().err


# --- round trip ----------------------------------------------------------------------------------


def write_icdar(src: Path, images: dict[str, list[Word]], size=ICDAR_SIZE) -> Path:
    """A small ICDAR 2015 writer: img_N.jpg in images/, gt_img_N.txt (BOM, CRLF) in gts/."""
    for name, words in images.items():
        save_image(src / "images" / name, size)
        lines = []
        for w in words:
            coords = ",".join(f"{v:g}" for v in w.points.reshape(-1).tolist())
            lines.append(f"{coords},{'###' if w.illegible else w.transcription}")
        (src / "gts").mkdir(parents=True, exist_ok=True)
        (src / "gts" / f"gt_{Path(name).stem}.txt").write_bytes(
            ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")
        )
    return src


def test_round_trip_from_known_words(tmp_path):
    rng = np.random.default_rng(3)
    known: dict[str, list[Word]] = {}
    for i in range(1, 6):
        words = []
        for j in range(4):
            x, y = rng.integers(0, 1200), rng.integers(0, 680)
            pts = np.array([[x, y], [x + 60.5, y], [x + 60.5, y + 20.25], [x, y + 20.25]])
            dont_care = j == 3
            words.append(Word(pts, "###" if dont_care else f"w{i}{j}, ok", illegible=dont_care))
        known[f"img_{i}.jpg"] = words
    write_icdar(tmp_path / "src", known)
    convert("icdar2015", tmp_path / "src", tmp_path / "dst", progress=False)
    images = load_all(tmp_path / "dst")
    assert sorted(images) == sorted(known)
    for name, words in known.items():
        got = list(images[name].values())
        assert [w.points.tolist() for w in got] == [w.points.tolist() for w in words]
        assert [(w.transcription, w.illegible) for w in got] == [(w.transcription, w.illegible) for w in words]


# --- bad input -----------------------------------------------------------------------------------

GOOD = "\ufeff10,10,60,10,60,30,10,30,TOTAL\r\n10,40,100,40,100,60,10,60,###\r\n"


def make_src(src: Path, gts: dict[str, str | bytes], images: dict[str, bytes | None]) -> Path:
    """gts: stem -> gt text; images: file name -> bytes (None: a real 120x200 JPEG)."""
    src.mkdir(parents=True)
    for stem, content in gts.items():
        (src / f"gt_{stem}.txt").write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    for name, data in images.items():
        if data is None:
            save_image(src / name, (120, 200))
        else:
            (src / name).write_bytes(data)
    return src


BAD_CASES = {
    # kind: (gt files, images, the problem's message after "<src>/")
    "bad number": (
        {"a": "10,10,60,10,6O,30,10,30,TOTAL\n"},
        {"a.jpg": None},
        "gt_a.txt: line 1: coordinate x3 is not a number: '6O'",
    ),
    "too few points": (
        {"a": GOOD + "1,2,3,4,5,6,7\n"},
        {"a.jpg": None},
        "gt_a.txt: line 3: expected 8 coordinates and a transcript (x1,y1,...,x4,y4,text), found 7 comma-separated field(s)",
    ),
    "missing image": ({"a": GOOD}, {}, "gt_a.txt: ground truth file has no image (expected a.jpg in {src})"),
    "missing gt": ({}, {"a.jpg": None}, "a.jpg: image has no ground truth file (expected gt_a.txt in {src})"),
    "does not decode": (
        {"a": GOOD},
        {"a.jpg": b"not a jpeg"},
        "a.jpg: cannot read image header (cannot identify image file",
    ),
    "truncated": ({"a": GOOD}, {"a.jpg": truncated_jpeg()}, "a.jpg: cannot decode image (image file is truncated"),
    "far outside": (
        {"a": GOOD + "10,10,900,10,900,30,10,30,far\n"},
        {"a.jpg": None},
        "gt_a.txt: line 3: points lie far outside the 120x200 image a.jpg",
    ),
    "duplicate file name": (
        {"a": GOOD},
        {"a.jpg": None, "a.png": None},
        "a.png: second image for 'a' (first: a.jpg); skipped",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_CASES))
def test_bad_input_strict_names_file_item_and_reason(tmp_path, kind):
    gts, images, message = BAD_CASES[kind]
    gts = {**gts, "ok": GOOD}
    images = {**images, "ok.jpg": None}
    src = make_src(tmp_path / "src", gts, images)
    with pytest.raises(DataError) as err:
        convert("icdar2015", src, tmp_path / "dst", progress=False)
    assert str(err.value).startswith(f"{src}/" + message.format(src=src))
    assert not (tmp_path / "dst").exists()  # nothing written on a strict failure


def test_bad_input_lenient_keeps_the_rest_and_lists_every_problem(tmp_path):
    gts = {"ok": GOOD}
    images: dict = {"ok.jpg": None}
    expected = []
    for i, (gt, imgs, message) in enumerate(BAD_CASES.values()):
        # one source folder: rename each case's files to stems of their own
        stem = f"k{i}"
        gts.update({stem: content for _, content in gt.items()})
        images.update({stem + Path(n).suffix: data for n, data in imgs.items()})
        expected.append(
            message.replace("gt_a.txt", f"gt_{stem}.txt")
            .replace("a.jpg", f"{stem}.jpg")
            .replace("a.png", f"{stem}.png")
            .replace("'a'", f"'{stem}'")
        )
    src = make_src(tmp_path / "src", gts, images)
    summary = convert("icdar2015", src, tmp_path / "dst", split=(1, 0, 0), strict=False, progress=False)
    messages = [str(p) for p in summary.report.problems]
    assert len(messages) == len(expected)
    for want in expected:
        assert sum(m.startswith(f"{src}/" + want.format(src=src)) for m in messages) == 1, want
    assert f"{len(expected)} problem(s), skipped:" in str(summary)
    images_out = load_all(tmp_path / "dst")
    # kept: every good image, and the good lines of files with a bad line
    assert sorted(images_out) == ["k0.jpg", "k1.jpg", "k6.jpg", "k7.jpg", "ok.jpg"]
    assert images_out["k0.jpg"] == {}  # its one line was bad: the image stays, without words
    assert [w.transcription for w in images_out["k1.jpg"].values()] == ["TOTAL", "###"]
    assert [w.transcription for w in images_out["k6.jpg"].values()] == ["TOTAL", "###"]
    assert summary.images["train"] == 5 and summary.words["train"] == 2 * 4
    assert any("without any word: k0.jpg" in n for n in summary.notes)


def test_layout_errors(tmp_path):
    src = tmp_path / "two"
    for d in ("ch4_training_images", "ch4_test_images"):
        save_image(src / d / "img_1.jpg", ICDAR_SIZE)
    for d in ("ch4_training_localization_transcription_gt", "Challenge4_Test_Task1_GT"):
        (src / d).mkdir(parents=True)
        (src / d / "gt_img_1.txt").write_text(GOOD)
    with pytest.raises(DataError, match="several candidate folders .*point SRC at a folder holding one pair"):
        convert("icdar2015", src, tmp_path / "dst", progress=False)
    (tmp_path / "none").mkdir()
    save_image(tmp_path / "none" / "img_1.jpg", ICDAR_SIZE)
    with pytest.raises(DataError, match=r"no ICDAR 2015 ground truth \(gt_<image>\.txt files\)"):
        convert("icdar2015", tmp_path / "none", tmp_path / "dst", progress=False)

"""PaddleOCR / PPOCRLabel import: the documented formats, path rules, don't care, a round trip, bad input, the CLI."""

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

FIXTURE = Path(__file__).parent / "fixtures" / "importers" / "paddleocr"


def ppocrlabel_src(tmp_path: Path) -> Path:
    """The fixture's PPOCRLabel folder (receipts/Label.txt) with its two images and PPOCRLabel's other files."""
    root = tmp_path / "ppocrlabel"
    shutil.copytree(FIXTURE / "ppocrlabel", root)
    for name in ("img1.jpg", "img2.jpg"):
        save_image(root / "receipts" / name, (640, 480))
    (root / "receipts" / "fileState.txt").write_text(f"{root / 'receipts' / 'img1.jpg'}\t1\n")
    (root / "receipts" / "rec_gt.txt").write_text("crop_img/img1_crop_0.jpg\tMASA\n")
    return root


def det_gt_src(tmp_path: Path) -> Path:
    src = tmp_path / "det_gt"
    shutil.copytree(FIXTURE / "det_gt", src)
    save_image(src / "ch4_test_images" / "img_61.jpg", (1280, 720))
    return src


def raw_labels(label_file: Path) -> dict[str, list[dict]]:
    """The test's own reading: file name -> the JSON list of its line."""
    out = {}
    for line in label_file.read_text(encoding="utf-8").splitlines():
        key, words = line.split("\t")
        out[key.rsplit("/", 1)[-1]] = json.loads(words)
    return out


def assert_words_match(images: dict[str, dict[str, Word]], label_file: Path) -> None:
    expected = raw_labels(label_file)
    assert sorted(images) == sorted(expected)
    for name, items in expected.items():
        words = list(images[name].values())
        assert list(images[name]) == [f"{i:04d}" for i in range(1, len(items) + 1)]
        assert [w.points.tolist() for w in words] == [np.asarray(i["points"], dtype=float).tolist() for i in items]
        assert [w.transcription for w in words] == [i["transcription"] for i in items]
        assert [w.illegible for w in words] == [
            i["transcription"] in ("###", "*") or i.get("difficult", False) for i in items
        ]


# --- the fixtures: PaddleOCR's documented line, PPOCRLabel's Label.txt ---------------------------


def test_ppocrlabel_folder_converts_and_loads_strictly(tmp_path):
    root = ppocrlabel_src(tmp_path)
    save_image(root / "receipts" / "img3.jpg", (640, 480))  # not checked in PPOCRLabel yet: not in Label.txt
    summary = convert("paddleocr", root / "receipts", tmp_path / "dst", progress=False)
    assert not summary.report.problems
    images = load_all(tmp_path / "dst")
    assert_words_match(images, FIXTURE / "ppocrlabel" / "receipts" / "Label.txt")
    img2 = list(images["img2.jpg"].values())
    assert (
        img2[0].transcription == "合计: 12,50"
        and img2[0].points.shape == (6, 2)
        and img2[0].points[2].tolist() == [125.5, 30]
    )
    assert (img2[1].transcription, img2[1].illegible) == ("hard", True)  # "difficult": true
    assert any("1 image(s) next to Label.txt are not listed in it" in n and "img3.jpg" in n for n in summary.notes)
    # don't care reaches the UFO JSON as "illegibility": true
    raw = {}
    for s in SPLITS:
        raw.update(json.loads((tmp_path / "dst" / "jsons" / f"{s}.json").read_text(encoding="utf-8"))["images"])
    assert [w.get("illegibility", False) for w in raw["img1.jpg"]["words"].values()] == [False, True]
    assert raw["img1.jpg"]["words"]["0002"]["transcription"] == "###"


def test_ppocrlabel_parent_folder_gives_the_same_root(tmp_path):
    root = ppocrlabel_src(tmp_path)
    convert("paddleocr", root / "receipts", tmp_path / "a", progress=False)
    summary = convert("paddleocr", root, tmp_path / "b", progress=False)  # SRC/receipts/Label.txt
    assert not summary.report.problems
    for s in SPLITS:
        assert (tmp_path / "a" / "jsons" / f"{s}.json").read_bytes() == (
            tmp_path / "b" / "jsons" / f"{s}.json"
        ).read_bytes()


def test_paddleocr_det_gt_file_relative_to_its_folder(tmp_path):
    src = det_gt_src(tmp_path)
    summary = convert("paddleocr", src, tmp_path / "dst", progress=False)
    assert not summary.report.problems
    images = load_all(tmp_path / "dst")
    assert_words_match(images, FIXTURE / "det_gt" / "test_icdar2015_label.txt")
    words = list(images["img_61.jpg"].values())
    assert (
        words[0].points.tolist() == [[310, 104], [416, 141], [418, 216], [312, 179]]
        and words[0].transcription == "MASA"
    )
    assert (words[1].transcription, words[1].illegible) == ("*", True)  # PaddleOCR's other ignore mark


def test_split_is_the_seeded_one(tmp_path):
    src = tmp_path / "src"
    lines = []
    for i in range(10):
        save_image(src / "imgs" / f"r{i}.jpg", (100, 100))
        lines.append(
            f"imgs/r{i}.jpg\t" + json.dumps([{"transcription": "x", "points": [[1, 1], [50, 1], [50, 20], [1, 20]]}])
        )
    (src / "train.txt").write_text("\n".join(lines) + "\n")
    convert("paddleocr", src, tmp_path / "dst", seed=3, progress=False)
    expected = assign_splits([f"r{i}.jpg" for i in range(10)], 3)
    for s in SPLITS:
        got = sorted(p.name for p in (tmp_path / "dst" / "images" / s).iterdir())
        assert got == sorted(n for n, where in expected.items() if where == s)


def test_cli_convert_then_check_strict(tmp_path, capsys):
    root = ppocrlabel_src(tmp_path)
    dst = tmp_path / "dst"
    assert model.cli.main(["convert", "paddleocr", str(root / "receipts"), str(dst), "--split", "1,0,0"]) == 0
    assert "no problems" in capsys.readouterr().out
    assert model.cli.main(["check", str(dst), "--strict"]) == 0
    (dst / "images" / "train" / "img1.jpg").write_bytes(b"broken")  # the check can fail
    assert model.cli.main(["check", str(dst), "--strict"]) == 2


# --- which label files ---------------------------------------------------------------------------


def test_several_det_label_files_are_read_as_one_set(tmp_path):
    src = tmp_path / "src"
    word = [{"transcription": "A", "points": [[1, 1], [30, 1], [30, 9], [1, 9]]}]
    for split in ("train", "val"):
        save_image(src / split / f"{split}.jpg", (64, 64))
        (src / f"{split}.txt").write_text(f"{split}/{split}.jpg\t{json.dumps(word)}\n")
    (src / "fileState.txt").write_text(f"{src / 'train' / 'train.jpg'}\t1\n")  # not a label file
    (src / "rec_gt.txt").write_text("crop_img/x.jpg\tA\n")  # nor this
    summary = convert("paddleocr", src, tmp_path / "dst", split=(1, 0, 0), progress=False)
    assert not summary.report.problems and summary.images["train"] == 2
    # Label.txt wins over the others, which are named in the notes
    save_image(src / "own.jpg", (64, 64))
    (src / "Label.txt").write_text(f"src/own.jpg\t{json.dumps(word)}\n")
    summary = convert("paddleocr", src, tmp_path / "dst2", split=(1, 0, 0), progress=False)
    assert summary.images["train"] == 1
    assert summary.notes[0] == "read Label.txt; left alone: train.txt, val.txt"


def test_no_label_file(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "rec_gt.txt").write_text("crop_img/x.jpg\tA\n")
    with pytest.raises(DataError, match="no PaddleOCR detection label file: expected Label.txt"):
        convert("paddleocr", tmp_path / "src", tmp_path / "dst", progress=False)


# --- round trip ----------------------------------------------------------------------------------


def write_ppocrlabel(folder: Path, images: dict[str, list[Word]], size=(400, 300)) -> Path:
    """A small PPOCRLabel writer: the images, and Label.txt as `savePPlabel` writes it."""
    lines = []
    for name, words in images.items():
        save_image(folder / name, size)
        items = [
            {
                "transcription": "###" if w.illegible else w.transcription,
                "points": w.points.tolist(),
                "difficult": False,
            }
            for w in words
        ]
        lines.append(f"{folder.name}/{name}\t{json.dumps(items, ensure_ascii=False)}")
    (folder / "Label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_round_trip_from_known_words(tmp_path):
    rng = np.random.default_rng(5)
    known: dict[str, list[Word]] = {}
    for i in range(6):
        words = []
        for j in range(5):
            n = 4 + j % 3  # 4, 5 and 6-point polygons
            angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
            centre = rng.uniform(40, 260, 2)
            pts = np.round(centre + np.stack([np.cos(angles) * 30, np.sin(angles) * 12], axis=1), 2)
            words.append(Word(pts, "###" if j == 4 else f"商品 {i}.{j}, ok", illegible=j == 4))
        known[f"r{i}.jpg"] = words
    write_ppocrlabel(tmp_path / "receipts", known)
    convert("paddleocr", tmp_path / "receipts", tmp_path / "dst", progress=False)
    images = load_all(tmp_path / "dst")
    assert sorted(images) == sorted(known)
    for name, words in known.items():
        got = list(images[name].values())
        assert [w.points.tolist() for w in got] == [w.points.tolist() for w in words]
        assert [(w.transcription, w.illegible) for w in got] == [(w.transcription, w.illegible) for w in words]


# --- bad input -----------------------------------------------------------------------------------


def item(points, text="T", **extra) -> dict:
    return {"transcription": text, "points": points, **extra}


BOX = [[10, 10], [60, 10], [60, 30], [10, 30]]


# kind: (the label line after "receipts/", images to create: name -> bytes or None for a 120x200 JPEG,
#        the problem's message after "<Label.txt>: ")
BAD_CASES = {
    "bad number": (
        "a.jpg\t" + json.dumps([item([[10, "1O"], [60, 10], [60, 30], [10, 30]])]),
        {"a.jpg": None},
        'line {n}, item 1: "points" holds "1O", which is not a finite number',
    ),
    "not a number at all": (
        "a.jpg\t" + json.dumps([item(BOX), item([[1, 2], [3, 4], [5, 6], [7, float("nan")]])]),
        {"a.jpg": None},
        'line {n}, item 2: "points" holds NaN, which is not a finite number',
    ),
    "too few points": (
        "a.jpg\t" + json.dumps([item(BOX), item([[10, 10], [60, 10], [60, 30]])]),
        {"a.jpg": None},
        "line {n}, item 2: has 3 point(s); a word needs at least 4",
    ),
    "no transcription": (
        "a.jpg\t" + json.dumps([{"points": BOX}]),
        {"a.jpg": None},
        'line {n}, item 1: "transcription" is missing or not a string',
    ),
    "bad JSON": ('a.jpg\t[{"transcription": "x", ', {"a.jpg": None}, "line {n}: words are not valid JSON (column"),
    "no TAB": (
        "a.jpg " + json.dumps([item(BOX)]),
        {"a.jpg": None},
        "line {n}: expected <image path><TAB><JSON list of words>, found no TAB",
    ),
    "missing image": (
        "a.jpg\t" + json.dumps([item(BOX)]),
        {},
        "line {n}: image 'receipts/a.jpg' not found (looked for receipts/a.jpg and a.jpg)",
    ),
    "does not decode": (
        "a.jpg\t" + json.dumps([item(BOX)]),
        {"a.jpg": b"not an image"},
        "line {n}: image a.jpg: cannot read image header (cannot identify image file",
    ),
    "truncated": (
        "a.jpg\t" + json.dumps([item(BOX)]),
        {"a.jpg": truncated_jpeg()},
        "line {n}: image a.jpg: cannot decode image (image file is truncated",
    ),
    "far outside": (
        "a.jpg\t" + json.dumps([item(BOX), item([[10, 10], [900, 10], [900, 30], [10, 30]], "far")]),
        {"a.jpg": None},
        "line {n}, item 2: points lie far outside the 120x200 image a.jpg",
    ),
    "duplicate file name": (
        "sub/ok.jpg\t" + json.dumps([item(BOX)]),
        {"sub/ok.jpg": None},
        "line {n}: image file name 'ok.jpg' is already taken by Label.txt line 1 (ok.jpg); skipped",
    ),
}
ESCAPES = {  # never read: the files exist, outside SRC
    "parent path": (
        "../../outside.jpg",
        "line {n}: image path 'receipts/../../outside.jpg' leads out of the source folder {src} (not read)",
    ),
    "absolute path": (
        "{abs}",
        "line {n}: image path '{abs}' is absolute; paths must be relative to the label file's folder (not read)",
    ),
}


def make_receipts(tmp_path: Path, lines: list[str], images: dict[str, bytes | None]) -> Path:
    """SRC = a PPOCRLabel folder `receipts` holding ok.jpg, `images` and Label.txt (`receipts/` prefixed)."""
    src = tmp_path / "receipts"
    save_image(src / "ok.jpg", (120, 200))
    for name, data in images.items():
        if data is None:
            save_image(src / name, (120, 200))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
    all_lines = ["receipts/ok.jpg\t" + json.dumps([item(BOX, "OK")])] + [f"receipts/{line}" for line in lines]
    (src / "Label.txt").write_text("\n".join(all_lines) + "\n", encoding="utf-8")
    save_image(tmp_path / "outside.jpg", (120, 200))
    return src


@pytest.mark.parametrize("kind", list(BAD_CASES) + list(ESCAPES))
def test_bad_input_strict_names_file_item_and_reason(tmp_path, kind):
    outside = tmp_path / "outside.jpg"
    if kind in ESCAPES:
        path, message = ESCAPES[kind]
        line, images = path.format(abs=outside) + "\t" + json.dumps([item(BOX)]), {}
    else:
        line, images, message = BAD_CASES[kind]
    src = make_receipts(tmp_path, [line], images)
    if kind == "absolute path":  # no "receipts/" prefix on an absolute path
        text = (src / "Label.txt").read_text().replace(f"receipts/{outside}", str(outside))
        (src / "Label.txt").write_text(text)
    with pytest.raises(DataError) as err:
        convert("paddleocr", src, tmp_path / "dst", progress=False)
    assert str(err.value).startswith(f"{src / 'Label.txt'}: " + message.format(n=2, src=src, abs=outside))
    assert not (tmp_path / "dst").exists()


def test_bad_input_lenient_keeps_the_rest_and_lists_every_problem(tmp_path):
    lines, images, expected = [], {}, []
    for i, (line, imgs, message) in enumerate(BAD_CASES.values()):
        stem = f"k{i}"
        if line.startswith("sub/"):  # the duplicate name case: keep its own names
            lines.append(line)
            images.update(imgs)
            expected.append(message.format(n=i + 2))
            continue
        lines.append(line.replace("a.jpg", f"{stem}.jpg"))
        images.update({n.replace("a.jpg", f"{stem}.jpg"): d for n, d in imgs.items()})
        expected.append(message.replace("a.jpg", f"{stem}.jpg").format(n=i + 2))
    n = len(lines) + 2
    lines.append("../../outside.jpg\t" + json.dumps([item(BOX)]))
    expected.append(ESCAPES["parent path"][1].format(n=n, src=tmp_path / "receipts"))
    src = make_receipts(tmp_path, lines, images)
    summary = convert("paddleocr", src, tmp_path / "dst", split=(1, 0, 0), strict=False, progress=False)
    messages = [str(p) for p in summary.report.problems]
    assert len(messages) == len(expected)
    for got, want in zip(messages, expected):
        assert got.startswith(f"{src / 'Label.txt'}: {want}"), (got, want)
    out = load_all(tmp_path / "dst")
    # kept: ok.jpg, every image whose line parsed (its good items only)
    assert sorted(out) == ["k0.jpg", "k1.jpg", "k2.jpg", "k3.jpg", "k9.jpg", "ok.jpg"]
    assert [len(out[f"k{i}.jpg"]) for i in (0, 1, 2, 3, 9)] == [0, 1, 1, 0, 1]
    assert summary.words["train"] == 1 + 3


def test_ambiguous_path_is_a_problem(tmp_path):
    src = tmp_path / "receipts"
    save_image(src / "a.jpg", (120, 200))
    save_image(src / "receipts" / "a.jpg", (200, 120))  # two different files the path could mean
    (src / "Label.txt").write_text("receipts/a.jpg\t" + json.dumps([item(BOX)]) + "\n")
    with pytest.raises(
        DataError, match=r"line 1: image path 'receipts/a\.jpg' is ambiguous: both receipts/a\.jpg and a\.jpg exist"
    ):
        convert("paddleocr", src, tmp_path / "dst", progress=False)

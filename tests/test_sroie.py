"""SROIE import: the real 120 receipts, determinism, bad input, encodings, the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model.cli
from model.data.convert import assign_splits, check_fractions, convert, get_converter, parse_fractions, split_counts
from model.data.sroie import parse_box_line
from model.data.ufo import SPLITS, DatasetRoot, read_ufo
from model.errors import DataError


def raw_boxes(box_file: Path) -> list[tuple[list[int], str]]:
    """The test's own reading of a SROIE box file: non-blank lines, 8 ints then the transcript."""
    out = []
    for line in box_file.read_bytes().decode("utf-8").replace("\r\n", "\n").split("\n"):
        if line.strip():
            fields = line.split(",", 8)
            out.append(([int(v) for v in fields[:8]], fields[8]))
    return out


# --- the real SROIE sample ---------------------------------------------------------------------


def test_real_sroie_loads_strictly_with_every_image_and_word(sroie_root, sroie_dir):
    expected_words = sum(len(raw_boxes(p)) for p in (sroie_dir / "box").glob("*.csv"))
    image_names = {p.name for p in (sroie_dir / "img").glob("*.jpg")}
    assert len(image_names) == 120 and expected_words > 6000

    root = DatasetRoot(sroie_root)
    loaded = {s: root.load(s, strict=True, decode=True) for s in SPLITS}
    assert all(not s.report.problems for s in loaded.values())
    assert {s: len(x.images) for s, x in loaded.items()} == {"train": 96, "val": 12, "test": 12}
    names = [n for x in loaded.values() for n in x.images]
    assert len(names) == len(set(names)) and set(names) == image_names
    assert sum(x.n_words for x in loaded.values()) == expected_words
    # every split folder holds exactly its listed images
    for s, x in loaded.items():
        assert sorted(p.name for p in x.image_dir.iterdir()) == sorted(x.images)


def test_real_sroie_words_points_and_transcripts_verbatim(sroie_root, sroie_dir):
    images = {}
    for s in SPLITS:
        images.update(read_ufo(Path(sroie_root) / "jsons" / f"{s}.json")[0])
    with_commas = 0
    for box_file in sorted((sroie_dir / "box").glob("*.csv")):
        words = images[box_file.stem + ".jpg"]
        expected = raw_boxes(box_file)
        assert list(words) == [f"{i:04d}" for i in range(1, len(expected) + 1)]
        for word, (coords, text) in zip(words.values(), expected):
            assert word.points.tolist() == np.asarray(coords, dtype=float).reshape(4, 2).tolist()
            assert word.transcription == text
            with_commas += "," in text
    assert with_commas > 50  # the sample has many transcripts with commas; none were cut


def test_real_sroie_images_are_copied_byte_for_byte(sroie_root, sroie_dir):
    for s in SPLITS:
        for copy in (Path(sroie_root) / "images" / s).iterdir():
            original = sroie_dir / "img" / copy.name
            assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()


def test_real_sroie_is_deterministic_and_accepts_files_side_by_side(sroie_root, sroie_dir, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    # the competition's layout: NNN.jpg and NNN.txt in one folder (symlinks: nothing copied)
    for p in (sroie_dir / "img").iterdir():
        (flat / p.name).symlink_to(p)
    for p in (sroie_dir / "box").iterdir():
        (flat / (p.stem + ".txt")).symlink_to(p)
    summary = convert("sroie", flat, tmp_path / "again", seed=42, progress=False)
    assert not summary.report.problems
    for s in SPLITS:
        a = (Path(sroie_root) / "jsons" / f"{s}.json").read_bytes()
        b = (tmp_path / "again" / "jsons" / f"{s}.json").read_bytes()
        assert a == b


# --- the split ---------------------------------------------------------------------------------


def test_split_depends_on_seed_and_names_only():
    names = [f"{i:03d}.jpg" for i in range(120)]
    a = assign_splits(names, 42)
    assert a == assign_splits(list(reversed(names)), 42)
    assert a == assign_splits(set(names), 42)
    assert [list(a.values()).count(s) for s in SPLITS] == [96, 12, 12]
    b = assign_splits(names, 43)
    assert a != b and [list(b.values()).count(s) for s in SPLITS] == [96, 12, 12]
    # adding an image moves at most that image's neighbours in the order, never reshuffles all
    c = assign_splits(names + ["new.jpg"], 42)
    assert sum(a[n] != c[n] for n in names) <= 2


def test_split_counts_and_fractions():
    assert split_counts(120, (0.8, 0.1, 0.1)) == [96, 12, 12]
    assert split_counts(7, (0.8, 0.1, 0.1)) == [5, 1, 1]  # largest remainders: 5.6, 0.7, 0.7
    assert sum(split_counts(11, (1 / 3, 1 / 3, 1 / 3))) == 11
    assert parse_fractions("0.7, 0.2,0.1") == (0.7, 0.2, 0.1)
    with pytest.raises(DataError, match="sum to 1"):
        parse_fractions("0.8,0.1,0.2")
    with pytest.raises(DataError, match="three"):
        check_fractions((0.9, 0.1))
    with pytest.raises(DataError, match="three numbers"):
        parse_fractions("a,b,c")
    # a part may be 0: `--split 0,0,1` converts an unlabelled hold-out set into a test-only root
    assert check_fractions((0, 0, 1)) == (0.0, 0.0, 1.0) and split_counts(5, (0, 0, 1)) == [0, 0, 5]
    with pytest.raises(DataError, match=r"each fraction must lie in \[0, 1\]"):
        check_fractions((-0.1, 0.6, 0.5))


# --- bad input, on small receipts written here ---------------------------------------------------


def make_sroie(src: Path, boxes: dict[str, bytes | str], images: list[str] | None = None, size=(120, 200)) -> Path:
    """A tiny SROIE-layout folder: img/<stem>.jpg (real JPEGs) and box/<stem>.csv (given text/bytes)."""
    (src / "img").mkdir(parents=True)
    (src / "box").mkdir()
    for stem in images if images is not None else list(boxes):
        Image.new("RGB", size, (250, 250, 245)).save(src / "img" / f"{stem}.jpg", quality=80)
    for stem, content in boxes.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (src / "box" / f"{stem}.csv").write_bytes(data)
    return src


GOOD = "10,10,60,10,60,30,10,30,TOTAL\n10,40,100,40,100,60,10,60,RM 1,234.50, CASH\n"


def test_bad_lines_strict_names_file_and_line(tmp_path):
    src = make_sroie(tmp_path / "src", {"a": GOOD, "b": GOOD + "\n1,2,3,4,5,6,7\n"})
    with pytest.raises(DataError) as err:
        convert("sroie", src, tmp_path / "dst", progress=False)
    assert str(err.value).startswith(f"{src / 'box' / 'b.csv'}: line 4: expected 8 coordinates")
    assert "found 7" in str(err.value)
    assert not (tmp_path / "dst" / "images").exists()  # nothing written on a strict failure

    src2 = make_sroie(tmp_path / "src2", {"a": "10,10,60,10,6O,30,10,30,TOTAL\n"})
    with pytest.raises(DataError, match=r"a\.csv: line 1: coordinate x3 is not a number: '6O'"):
        convert("sroie", src2, tmp_path / "dst2", progress=False)


def test_bad_lines_lenient_skips_and_lists_them(tmp_path):
    boxes = {"a": GOOD, "b": "1,2,3\n" + GOOD + "1,2,3,4,5,6,7,y4,text\n5,5,9,5,9,9,5,nan,x\n"}
    src = make_sroie(tmp_path / "src", boxes)
    summary = convert("sroie", src, tmp_path / "dst", split=(1, 0, 0), strict=False, progress=False)
    messages = [str(p) for p in summary.report.problems]
    b = src / "box" / "b.csv"
    assert len(messages) == 3
    assert messages[0].startswith(f"{b}: line 1: expected 8 coordinates")
    assert messages[1] == f"{b}: line 4: coordinate y4 is not a number: 'y4'"
    assert messages[2] == f"{b}: line 5: coordinate y4 is not a number: 'nan'"
    assert "3 problem(s)" in str(summary)
    images, _ = read_ufo(tmp_path / "dst" / "jsons" / "train.json")
    assert [w.transcription for w in images["b.jpg"].values()] == ["TOTAL", "RM 1,234.50, CASH"]
    assert list(images["b.jpg"]) == ["0001", "0002"]


def test_unpaired_files(tmp_path):
    src = make_sroie(tmp_path / "src", {"a": GOOD, "orphan": GOOD}, images=["a", "lonely"])
    with pytest.raises(DataError, match=r"lonely\.jpg: image has no box file"):
        convert("sroie", src, tmp_path / "dst", progress=False)
    summary = convert("sroie", src, tmp_path / "dst", strict=False, split=(1, 0, 0), progress=False)
    messages = sorted(str(p) for p in summary.report.problems)
    assert messages == [
        f"{src / 'box' / 'orphan.csv'}: box file has no image (expected orphan.jpg in {src / 'img'})",
        f"{src / 'img' / 'lonely.jpg'}: image has no box file (expected lonely.csv or lonely.txt in {src / 'box'})",
    ]
    assert summary.images == {"train": 1, "val": 0, "test": 0}
    for s in SPLITS:  # empty val/test splits still load
        DatasetRoot(tmp_path / "dst").load(s, strict=True)


def test_points_far_outside_the_image_are_a_problem(tmp_path):
    src = make_sroie(tmp_path / "src", {"a": GOOD + "10,10,900,10,900,30,10,30,far\n"})
    with pytest.raises(DataError, match=r"a\.csv: line 3: points lie far outside the 120x200 image a\.jpg"):
        convert("sroie", src, tmp_path / "dst", progress=False)


def test_encodings_latin1_fallback_bom_and_crlf(tmp_path):
    latin1 = "10,10,60,10,60,30,10,30,CAF\xc9 \x85 NO.1\r\n10,40,60,40,60,60,10,60,X\r\n".encode("latin-1")
    bom = b"\xef\xbb\xbf" + "10,10,60,10,60,30,10,30,caf\u00e9\n".encode("utf-8")
    src = make_sroie(tmp_path / "src", {"lat": latin1, "bom": bom})
    summary = convert("sroie", src, tmp_path / "dst", split=(1, 0, 0), progress=False)
    images, _ = read_ufo(tmp_path / "dst" / "jsons" / "train.json")
    assert [w.transcription for w in images["lat.jpg"].values()] == ["CAF\u00c9 \x85 NO.1", "X"]
    assert [w.transcription for w in images["bom.jpg"].values()] == ["caf\u00e9"]
    assert images["bom.jpg"]["0001"].points[0].tolist() == [10, 10]
    assert any("latin-1" in n and "lat.csv" in n for n in summary.notes)


def test_parse_box_line():
    word, reason = parse_box_line("1,2,3,4,5,6,7,8,A, B,,C")
    assert reason is None and word.transcription == "A, B,,C"
    assert word.points.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    word, reason = parse_box_line(" 1.5,2,3,4,5,6,7,8")  # eight numbers, no transcript
    assert reason is None and word.transcription == "" and word.points[0, 0] == 1.5
    assert parse_box_line("1,2,3,4,5,6,7")[1].startswith("expected 8 coordinates")
    assert parse_box_line("1,2,3,4,5,6,1_0,8,x")[1] == "coordinate x4 is not a number: '1_0'"


def test_destination_must_be_new_unless_overwrite(tmp_path):
    src = make_sroie(tmp_path / "src", {"a": GOOD, "b": GOOD})
    convert("sroie", src, tmp_path / "dst", progress=False)
    with pytest.raises(DataError, match="already holds images/ and jsons/"):
        convert("sroie", src, tmp_path / "dst", progress=False)
    (tmp_path / "dst" / "images" / "train" / "stale.jpg").write_bytes(b"x")
    convert("sroie", src, tmp_path / "dst", overwrite=True, progress=False)
    assert not (tmp_path / "dst" / "images" / "train" / "stale.jpg").exists()


def test_unknown_dataset_and_layout_errors(tmp_path):
    with pytest.raises(
        DataError, match="unknown dataset 'cord'; known: coco, cvat, icdar2015, labelstudio, paddleocr, sroie"
    ):
        get_converter("cord")
    (tmp_path / "src" / "img").mkdir(parents=True)
    with pytest.raises(DataError, match="has img/ but no box/"):
        convert("sroie", tmp_path / "src", tmp_path / "dst", progress=False)
    with pytest.raises(DataError, match="source folder does not exist"):
        convert("sroie", tmp_path / "nope", tmp_path / "dst", progress=False)


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_convert(tmp_path, capsys):
    src = make_sroie(tmp_path / "src", {f"{i:03d}": GOOD for i in range(8)})
    rc = model.cli.main(
        ["convert", "sroie", str(src), str(tmp_path / "dst"), "--seed", "7", "--split", "0.5,0.25,0.25", "--json"]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == {"train": 4, "val": 2, "test": 2} and out["words"]["train"] == 8
    assert out["seed"] == 7 and out["problems"] == []

    (src / "box" / "003.csv").write_text(GOOD + "oops\n")
    assert model.cli.main(["convert", "sroie", str(src), str(tmp_path / "dst2")]) == 2
    assert (
        f"receiptflow convert: error: {src / 'box' / '003.csv'}: line 3: expected 8 coordinates"
        in capsys.readouterr().err
    )
    assert model.cli.main(["convert", "sroie", str(src), str(tmp_path / "dst2"), "--lenient"]) == 0
    assert "1 problem(s), skipped:" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        model.cli.main(["convert", "sroie", str(src), str(tmp_path / "dst3"), "--split", "0.8,0.3,0.1"])
    assert "fractions must sum to 1" in capsys.readouterr().err

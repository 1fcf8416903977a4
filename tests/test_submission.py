"""Submission CSV: UFO -> CSV -> UFO, the checker's messages, the CLI end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model.cli
from model.data.ufo import Word, read_ufo, write_ufo
from model.errors import DataError
from model.submission import (
    check_submission,
    format_polygon,
    list_test_images,
    read_submission,
    round_half_away,
    submission_text,
    write_submission,
)


def predictions() -> dict[str, dict[str, Word]]:
    quad = np.array([[10.2, 20.5], [110.5, 20.49], [110.5, 60.5], [10.2, 60.5]])
    poly = np.array([[-0.5, 1.5], [30, 2.5], [60.7, 3], [60, 40], [30, 41.5], [0, 40]])  # 6 points
    return {
        "b.jpg": {"0001": Word(quad, "TOTAL"), "0007": Word(poly)},
        "a.jpg": {"0001": Word(quad + 100)},
        "empty.jpg": {},  # an image where nothing was detected
        "odd, name.jpg": {"0001": Word(quad * 2)},  # a comma: the csv module quotes it
    }


def test_round_half_away_from_zero():
    values = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, -2.5001, 3.0, 0.0])
    assert round_half_away(values).tolist() == [1, 2, 3, -1, -2, 2, -3, 3, 0]
    assert format_polygon(np.array([[0.5, 0.49], [1, 1], [2.5, 2], [0, 3]])) == "1 0 1 1 3 2 0 3"


def test_round_trip_ufo_csv_ufo(tmp_path):
    pred = predictions()
    path = tmp_path / "sub.csv"
    write_submission(pred, path)
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    assert rows[0] == ["filename", "polygons"]
    assert [r[0] for r in rows[1:]] == sorted(pred)  # one row per image, sorted
    assert rows[2] == ["b.jpg", "10 21 111 20 111 61 10 61|-1 2 30 3 61 3 60 40 30 42 0 40"]
    assert rows[3] == ["empty.jpg", ""]
    assert '"odd, name.jpg"' in path.read_text()

    back, report = read_submission(path)
    assert not report.problems
    assert set(back) == set(pred) and back["empty.jpg"] == {}
    for name, words in pred.items():
        assert list(back[name]) == [f"{i:04d}" for i in range(1, len(words) + 1)]
        for original, restored in zip(words.values(), back[name].values()):
            assert restored.points.tolist() == round_half_away(original.points).tolist()
            assert restored.points.shape == original.points.shape


BAD_CSV = """filename,polygons
a.jpg,0 0 10 0 10 10 0 10
b.jpg,0 0 10 0 10 10
c.jpg,0 0 10 0 10 10 0
d.jpg,0 0 10 0 10 10 0 1.5|0 0 1 0 1 1 0 1
a.jpg,
z.jpg,0 0 10 0 10 10 0 10
f.jpg,0 0 10 0 10 10 0 10||
g.jpg
"""


def test_check_reports_every_problem_with_row_and_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    tests = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"]
    report = check_submission(path, tests, strict=False)
    assert [str(p) for p in report.problems] == [
        f"{path}: row 3: image 'b.jpg': polygon 1 has 3 points; at least 4 needed",
        f"{path}: row 4: image 'c.jpg': polygon 1 has 7 values, an odd number; expected x y pairs",
        f"{path}: row 5: image 'd.jpg': polygon 1: value '1.5' is not an integer",
        f"{path}: row 6: image 'a.jpg': duplicate row for this file (first at row 2)",
        f"{path}: row 7: image 'z.jpg': not a test image (extra row)",
        f"{path}: row 8: image 'f.jpg': polygon 2 is empty (stray '|')",
        f"{path}: row 8: image 'f.jpg': polygon 3 is empty (stray '|')",
        f"{path}: row 9: image 'g.jpg': has 1 field(s); expected 2 (filename,polygons)",
        f"{path}: image 'e.jpg': no row for this test image (missing)",
        f"{path}: image 'g.jpg': no row for this test image (missing)",
    ]
    with pytest.raises(DataError) as err:
        check_submission(path, tests)  # strict: the first problem
    assert str(err.value) == f"{path}: row 3: image 'b.jpg': polygon 1 has 3 points; at least 4 needed"
    # lenient reading keeps the good polygons of a row with a bad one
    images, _ = read_submission(path, strict=False)
    assert len(images["d.jpg"]) == 1 and len(images["f.jpg"]) == 1 and "z.jpg" in images


def test_check_good_csv_and_bad_headers(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(submission_text(predictions()))
    assert not check_submission(good, predictions()).problems
    bad = tmp_path / "header.csv"
    bad.write_text("file,polygons\na.jpg,\n")
    with pytest.raises(DataError, match=r"header.csv: row 1: header is 'file,polygons'; expected 'filename,polygons'"):
        check_submission(bad, ["a.jpg"], strict=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        read_submission(empty)
    with pytest.raises(DataError, match="submission file is missing"):
        read_submission(tmp_path / "nope.csv")


def test_write_checked_against_test_images(tmp_path):
    path = tmp_path / "sub.csv"
    with pytest.raises(DataError, match=r"sub.csv: image 'c.jpg': no row for this test image \(missing\)"):
        write_submission(predictions(), path, image_names=[*predictions(), "c.jpg"])
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing half-written left behind
    report = write_submission(predictions(), path, image_names=[*predictions(), "c.jpg"], strict=False)
    assert len(report.problems) == 1 and path.exists()
    with pytest.raises(DataError, match="image 'x.jpg': polygon of shape"):
        write_submission({"x.jpg": {"0001": Word(np.zeros((3, 2)))}}, tmp_path / "x.csv")


def make_test_root(root: Path, names: list[str]) -> Path:
    (root / "images" / "test").mkdir(parents=True)
    for n in names:
        Image.new("RGB", (40, 30)).save(root / "images" / "test" / n)
    return root


def test_list_test_images(tmp_path):
    root = make_test_root(tmp_path / "root", ["b.jpg", "a.png"])
    (root / "images" / "test" / "notes.txt").write_text("x")
    assert list_test_images(root) == ["a.png", "b.jpg"]
    assert list_test_images(root / "images" / "test") == ["a.png", "b.jpg"]
    with pytest.raises(DataError, match="holds no images"):
        list_test_images(tmp_path / "root" / "images")


def test_cli_submit_end_to_end(tmp_path, capsys):
    pred = predictions()
    root = make_test_root(tmp_path / "root", sorted(pred))
    pred_json = tmp_path / "pred.json"
    write_ufo(pred, pred_json)
    out = tmp_path / "out" / "submission.csv"

    assert model.cli.main(["submit", str(pred_json), "-o", str(out), "--images", str(root)]) == 0
    assert f"{out}: 4 rows, 4 polygons, checked against 4 test images" in capsys.readouterr().out
    back, _ = read_submission(out)
    original, _ = read_ufo(pred_json)
    assert set(back) == set(original)
    assert model.cli.main(["submit", "--check", str(out), "--images", str(root / "images" / "test")]) == 0
    assert f"{out}: OK" in capsys.readouterr().out

    # a CSV with problems: all listed, exit 1
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,polygons\na.jpg,1 2 3\nnew.jpg,\n")
    assert model.cli.main(["submit", "--check", str(bad), "--images", str(root)]) == 1
    text = capsys.readouterr().out
    assert f"{bad}: row 2: image 'a.jpg': polygon 1 has 3 values, an odd number; expected x y pairs" in text
    assert f"{bad}: row 3: image 'new.jpg': not a test image (extra row)" in text
    assert f"{bad}: image 'b.jpg': no row for this test image (missing)" in text
    assert f"{bad}: 5 problem(s)" in text

    # predictions missing a test image: strict writing refuses (exit 2), nothing written
    Image.new("RGB", (40, 30)).save(root / "images" / "test" / "late.jpg")
    out2 = tmp_path / "out2.csv"
    assert model.cli.main(["submit", str(pred_json), "-o", str(out2), "--images", str(root)]) == 2
    err = capsys.readouterr().err
    assert "receiptflow submit: error:" in err and "image 'late.jpg': no row for this test image" in err
    assert not out2.exists()
    assert model.cli.main(["submit", str(pred_json), "-o", str(out2), "--images", str(root), "--lenient"]) == 1
    assert out2.exists()

    with pytest.raises(SystemExit):
        model.cli.main(["submit", "--check", str(out)])  # --check needs --images
    assert "--check needs --images" in capsys.readouterr().err

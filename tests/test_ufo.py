"""Bad input: each problem is one clear line naming the item; lenient mode keeps everything else."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.cli import main
from model.data.images import image_size, read_image
from model.data.ufo import DatasetRoot, Word, read_ufo, write_ufo
from model.errors import DataError

BOX = [[10, 10], [60, 10], [60, 30], [10, 30]]


def make_root(tmp_path: Path, words: dict, extra_files: dict | None = None) -> Path:
    """A val split with a good image `good.jpg` plus whatever `words` lists (raw JSON values)."""
    img_dir = tmp_path / "images" / "val"
    img_dir.mkdir(parents=True)
    for name in ["good.jpg", *[n for n in words if n != "good.jpg"]]:
        if "/" not in name and not (extra_files and name in extra_files):
            Image.new("RGB", (120, 80), (200, 190, 180)).save(img_dir / name)
    for name, data in (extra_files or {}).items():
        (img_dir / name).write_bytes(data)
    doc = {"images": {"good.jpg": {"words": {"0001": {"points": BOX, "transcription": "ok"}}}, **words}}
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "val.json").write_text(json.dumps(doc))
    return tmp_path


def good_jpeg_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


CASES = {
    "truncated JPEG": (
        {"cut.jpg": {"words": {"0001": {"points": BOX}}}},
        {"cut.jpg": good_jpeg_bytes()[:600]},
        "cut.jpg",
        "cannot decode image",
    ),
    "unreadable image": (
        {"junk.jpg": {"words": {}}},
        {"junk.jpg": b"this is not an image"},
        "junk.jpg",
        "cannot decode image",
    ),
    "word with 2 points": (
        {"a.jpg": {"words": {"0007": {"points": [[1, 1], [5, 5]]}}}},
        None,
        "word '0007'",
        "has 2 point(s)",
    ),
    "NaN coordinates": (
        {"a.jpg": {"words": {"0003": {"points": [[1, 1], [float("nan"), 5], [5, 5], [1, 5]]}}}},
        None,
        "word '0003'",
        "NaN or infinity",
    ),
    "inf coordinates": (
        {"a.jpg": {"words": {"0003": {"points": [[1, 1], [float("inf"), 5], [5, 5], [1, 5]]}}}},
        None,
        "word '0003'",
        "NaN or infinity",
    ),
    "points far outside": (
        {"a.jpg": {"words": {"0002": {"points": [[10, 10], [900, 10], [900, 30], [10, 30]]}}}},
        None,
        "word '0002'",
        "far outside the 120x80 image",
    ),
    "parent directory name": ({"../../x.jpg": {"words": {}}}, None, "image '../../x.jpg'", "plain name"),
    "absolute path": ({"/etc/x.jpg": {"words": {}}}, None, "image '/etc/x.jpg'", "plain name"),
    "listed but missing": ({"ghost.jpg": {"words": {}}}, {}, "image 'ghost.jpg'", "missing on disk"),
    "points not numbers": (
        {"a.jpg": {"words": {"0001": {"points": [[1, "x"], [2, 2], [3, 3], [4, 4]]}}}},
        None,
        "word '0001'",
        "not a number",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_item_is_named_and_the_rest_kept(tmp_path, case):
    words, files, item, message = CASES[case]
    if case == "listed but missing":
        root = make_root(tmp_path, {})
        doc = json.loads((root / "jsons/val.json").read_text())
        doc["images"].update(words)
        (root / "jsons/val.json").write_text(json.dumps(doc))
    else:
        root = make_root(tmp_path, words, files)
    split = DatasetRoot(root).load("val", strict=False)
    assert len(split.report.problems) == 1, split.report.summary()
    line = str(split.report.problems[0])
    assert item in line and message in line and "\n" not in line
    assert "good.jpg" in split.images and len(split.images["good.jpg"]) == 1  # nothing else lost
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DatasetRoot(root).load("val", strict=True)


def test_duplicate_file_names_are_reported_and_first_kept(tmp_path):
    root = make_root(tmp_path, {})
    text = (root / "jsons/val.json").read_text()
    dup = '"good.jpg": {"words": {}}'
    (root / "jsons/val.json").write_text(text.replace('{"images": {', '{"images": {' + dup + ", ", 1))
    split = DatasetRoot(root).load("val", strict=False)
    assert any("image 'good.jpg'" in str(p) and "more than once" in str(p) for p in split.report.problems)
    assert len(split.images["good.jpg"]) == 0  # the first entry is the one kept
    with pytest.raises(DataError, match="more than once"):
        DatasetRoot(root).load("val")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "file is empty"),
        ("   \n", "file is empty"),
        ("[1, 2]", "not UFO JSON"),
        ('{"pictures": {}}', "not UFO JSON"),
        ('{"images": ', "not valid JSON (line 1"),
    ],
)
def test_unusable_json_is_one_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "val.json"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_ufo(path, strict=False)
    assert str(path) in str(err.value) and message in str(err.value)


def test_image_on_disk_but_not_listed_is_reported(tmp_path):
    root = make_root(tmp_path, {}, {"stray.jpg": good_jpeg_bytes()})
    split = DatasetRoot(root).load("val", strict=False)
    assert [p.source.endswith("stray.jpg") for p in split.report.problems] == [True]


def test_round_trip_keeps_points_and_transcriptions(tmp_path):
    images = {
        "r.jpg": {
            "0001": Word(np.array([[1.5, 2], [10, 2], [10, 8.25], [1.5, 8.25]]), "영수증"),
            "0002": Word(np.array(BOX, float)),
        }
    }
    write_ufo(images, tmp_path / "x.json")
    back, report = read_ufo(tmp_path / "x.json")
    assert not report.problems
    assert back["r.jpg"]["0001"].transcription == "영수증" and back["r.jpg"]["0002"].transcription is None
    np.testing.assert_array_equal(back["r.jpg"]["0001"].points, images["r.jpg"]["0001"].points)
    with pytest.raises(DataError, match="plain name"):
        write_ufo({"../evil.jpg": {}}, tmp_path / "y.json")


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue left strip
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "o.jpg", exif=exif, quality=95)
    array, scale = read_image(tmp_path / "o.jpg")
    assert array.shape == (40, 20, 3) and scale == 1.0
    assert array[2, 10, 2] > 200 and array[2, 10, 0] < 60  # the blue strip is now on top
    assert image_size(tmp_path / "o.jpg") == (20, 40)


def test_check_command_lists_every_problem_and_fails(tmp_path, capsys):
    root = make_root(
        tmp_path, {"a.jpg": {"words": {"0007": {"points": [[1, 1], [5, 5]]}}}, "../../x.jpg": {"words": {}}}
    )
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "word '0007'" in out and "'../../x.jpg'" in out and "val" in out
    assert main(["check", str(root), "--strict"]) == 2
    assert "has 2 point(s)" in capsys.readouterr().err

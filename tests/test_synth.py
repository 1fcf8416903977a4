"""Synthetic receipts: determinism, a dataset root that validates, exact and tight word polygons,
font lookup errors and the `receiptflow synth` command."""

from __future__ import annotations

import re
import shutil

import cv2
import numpy as np
import pytest
import shapely

from model.cli import main
from model.data.fonts import (
    DEBIAN_NANUM_DIR,
    FONT_DIR_ENV,
    NO_FONT_MESSAGE,
    bold_variant,
    find_hangul_fonts,
    has_hangul,
    is_bold,
)
from model.data.synth import UNLABELLED_INK, generate_receipt, split_counts, write_synthetic_dataset
from model.data.ufo import SPLITS, DatasetRoot, read_ufo
from model.errors import DataError

HANGUL = re.compile("[가-힣]")


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _dataset_files(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "images").rglob("*.jpg")}


def _dataset_words(root) -> dict[str, list]:
    out = {}
    for split in SPLITS:
        images, _ = read_ufo(root / "jsons" / f"{split}.json")
        for name, words in images.items():
            out[name] = [(w.points.tolist(), w.transcription) for w in words.values()]
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    summary = write_synthetic_dataset(root, 6, seed=11, workers=1, progress=False)
    return root, summary


def test_same_seed_same_bytes_whatever_n_and_workers(dataset, tmp_path):
    root, _ = dataset
    other = tmp_path / "other"
    write_synthetic_dataset(other, 4, seed=11, workers=2, progress=False)
    a, b = _dataset_files(root), _dataset_files(other)
    assert sorted(b) == [f"{i:05d}.jpg" for i in range(4)]
    for name in b:  # same (seed, index): same bytes, though n, workers and the split differ
        assert a[name] == b[name], name
    wa, wb = _dataset_words(root), _dataset_words(other)
    for name in b:
        assert wa[name] == wb[name], name


def test_different_seed_or_index_gives_a_different_receipt():
    img, words = generate_receipt(_rng(3, 0))
    again, words_again = generate_receipt(_rng(3, 0))
    assert np.array_equal(img, again)
    assert [(w.points.tolist(), w.transcription) for w in words] == [
        (w.points.tolist(), w.transcription) for w in words_again
    ]
    for rng in (_rng(4, 0), _rng(3, 1)):
        other, other_words = generate_receipt(rng)
        assert other.shape != img.shape or not np.array_equal(other, img)
        assert [w.transcription for w in other_words] != [w.transcription for w in words]


def test_dataset_loads_strictly_with_words_on_the_image(dataset):
    root, summary = dataset
    ds = DatasetRoot(root)
    assert set(summary) == set(SPLITS)
    assert [summary[s]["images"] for s in SPLITS] == list(split_counts(6, (0.7, 0.15, 0.15)))
    transcriptions = []
    clipped = 0
    for split in SPLITS:
        s = ds.load(split, strict=True)
        assert s.report.problems == []
        assert len(s.images) >= 1
        for name, words in s.images.items():
            w, h = s.sizes[name]
            assert 500 <= w <= 800 and 900 <= h <= 1400
            assert len(words) >= 10, f"{name}: only {len(words)} words"
            for word in words.values():
                assert (word.points >= 0).all() and (word.points[:, 0] <= w).all() and (word.points[:, 1] <= h).all()
                if word.transcription is None:  # cut by the image border: the visible part, >= 4 points
                    assert len(word.points) >= 4 and shapely.Polygon(word.points).area > 0
                    clipped += 1
                    continue
                assert word.points.shape == (4, 2)
                assert word.transcription.strip() == word.transcription
                transcriptions.append(word.transcription)
    assert clipped < len(transcriptions) * 0.1
    assert sum(bool(HANGUL.search(t)) for t in transcriptions) > len(transcriptions) * 0.2
    assert any(t.isascii() and any(c.isdigit() for c in t) for t in transcriptions)
    assert any(t.isascii() and any(c.isalpha() for c in t) for t in transcriptions)


def _polygon_mask(points: np.ndarray, shape) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


@pytest.mark.parametrize("index", range(4))
def test_word_polygons_are_exact_and_tight(index):
    image, words, ink = generate_receipt(_rng(5, index), return_ink=True)
    plain, plain_words = generate_receipt(_rng(5, index))
    assert np.array_equal(image, plain), "return_ink changed the image"
    assert [w.points.tolist() for w in words] == [w.points.tolist() for w in plain_words]
    h, w = ink.shape
    assert image.shape == (h, w, 3) and ink.dtype == np.uint16
    assert int(ink[ink != UNLABELLED_INK].max()) == len(words)
    fills, margins = [], []
    for i, word in enumerate(words):
        pts = word.points
        assert (pts >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all()
        # clockwise in image coordinates (y down), starting at the top-left corner
        x, y = pts[:, 0], pts[:, 1]
        assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0, word.transcription
        assert np.argmin(x + y) == 0 and np.argmax(x + y) == 2, word.transcription
        own = ink == i + 1
        n_ink = int(own.sum())
        assert n_ink > 0, f"word {word.transcription!r} has no ink"
        box = _polygon_mask(pts, ink.shape)
        covered = int((own & box).sum()) / n_ink
        assert covered >= 0.95, f"word {word.transcription!r}: box covers {covered:.0%} of its ink"
        fills.append(n_ink / box.sum())
        margins.append(_ink_margins(pts, own))
    # tight: ink reaches close to all four sides of every box, in the box's own frame (a box from
    # the advance width or the line height would leave several pixels of paper on some side)
    margins = np.array(margins)
    assert margins.max() <= 4.5, (words[int(margins.max(1).argmax())].transcription, margins.max(0))
    assert (np.median(margins, axis=0) <= 2.5).all(), np.median(margins, axis=0)
    fills = np.array(fills)
    assert fills.min() >= 0.05 and np.median(fills) >= 0.12, (fills.min(), np.median(fills))


def _ink_margins(points: np.ndarray, own: np.ndarray) -> list[float]:
    """Distance from the box's left, right, top and bottom side to the nearest ink, in pixels of
    the box's own frame (the quad mapped onto an upright rectangle of its mean side lengths)."""
    p = points.astype(np.float32)
    bw = (np.linalg.norm(p[1] - p[0]) + np.linalg.norm(p[2] - p[3])) / 2
    bh = (np.linalg.norm(p[3] - p[0]) + np.linalg.norm(p[2] - p[1])) / 2
    m = cv2.getPerspectiveTransform(p, np.float32([[0, 0], [bw, 0], [bw, bh], [0, bh]]))
    ys, xs = np.nonzero(own)
    q = cv2.perspectiveTransform(
        np.stack([xs + 0.5, ys + 0.5], 1)[:, None, :].astype(np.float64), m.astype(np.float64)
    )[:, 0]
    return [q[:, 0].min(), bw - q[:, 0].max(), q[:, 1].min(), bh - q[:, 1].max()]


def test_cropped_receipts_drop_words_that_leave_the_image():
    dropped = 0
    for index in range(4):
        image, words, ink = generate_receipt(_rng(9, index), width=360, height=420, return_ink=True)
        assert image.shape == (420, 360, 3)
        for word in words:
            assert (word.points >= 0).all() and (word.points[:, 0] <= 360).all() and (word.points[:, 1] <= 420).all()
        dropped += int((ink == UNLABELLED_INK).any())
        assert len(words) > 0
    assert dropped > 0


def test_split_counts_and_bad_arguments(tmp_path):
    assert split_counts(3, (0.7, 0.15, 0.15)) == (1, 1, 1)
    assert split_counts(4, (0.7, 0.15, 0.15)) == (2, 1, 1)
    assert split_counts(100, (0.7, 0.15, 0.15)) == (70, 15, 15)
    with pytest.raises(DataError, match="at least 3 images"):
        write_synthetic_dataset(tmp_path / "small", 2)
    with pytest.raises(DataError, match="non-negative fractions"):
        write_synthetic_dataset(tmp_path / "bad", 5, splits=(0.5, -0.1, 0.6))
    assert not (tmp_path / "small").exists() and not (tmp_path / "bad").exists()


def test_existing_output_needs_overwrite_which_replaces_only_images_and_jsons(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "README.txt").write_text("keep me")
    (out / "images" / "train").mkdir(parents=True)
    (out / "images" / "train" / "stale.jpg").write_bytes(b"old")
    with pytest.raises(DataError, match="not empty"):
        write_synthetic_dataset(out, 3, workers=1, progress=False)
    summary = write_synthetic_dataset(out, 3, workers=1, overwrite=True, progress=False)
    assert (out / "README.txt").read_text() == "keep me"
    assert not (out / "images" / "train" / "stale.jpg").exists()
    assert {s: summary[s]["images"] for s in SPLITS} == {"train": 1, "val": 1, "test": 1}


def test_font_lookup(tmp_path, monkeypatch):
    # the default lookup finds Debian's Nanum fonts (installed on these machines)
    fonts = find_hangul_fonts()
    assert fonts and all(has_hangul(f) for f in fonts)
    # a set RECEIPTFLOW_FONT_DIR without a Hangul font is an error, not a silent fall-back
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(FONT_DIR_ENV, str(empty))
    with pytest.raises(DataError) as err:
        find_hangul_fonts()
    assert NO_FONT_MESSAGE in str(err.value) and str(empty) in str(err.value)
    with pytest.raises(DataError, match="no Hangul font found"):
        write_synthetic_dataset(tmp_path / "ds", 3, workers=1, progress=False)
    assert not (tmp_path / "ds").exists()
    # a Latin-only font does not count; a Hangul font does
    latin = tmp_path / "latin"
    latin.mkdir()
    dejavu = next(iter(sorted(p for p in (DEBIAN_NANUM_DIR.parent / "dejavu").glob("*.ttf"))), None)
    if dejavu is not None:
        shutil.copy(dejavu, latin / dejavu.name)
        assert not has_hangul(latin / dejavu.name)
        monkeypatch.setenv(FONT_DIR_ENV, str(latin))
        with pytest.raises(DataError, match="no Hangul font found"):
            find_hangul_fonts()
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(fonts[0], mine / "MyHangul.ttf")
    (mine / "notes.txt").write_text("not a font")
    (mine / "broken.ttf").write_bytes(b"not a font either")
    monkeypatch.setenv(FONT_DIR_ENV, str(mine))
    assert find_hangul_fonts() == [mine / "MyHangul.ttf"]
    image, words = generate_receipt(_rng(1, 0), width=(500, 520), height=(900, 920))
    assert words and image.shape[1] <= 520


def test_bold_faces_are_told_by_file_name():
    # Debian's fonts-nanum names, plus the other spellings the rule reads
    nanum = tuple(
        f"/f/{n}.ttf"
        for n in (
            "NanumBarunGothic",
            "NanumBarunGothicBold",
            "NanumGothic",
            "NanumGothicBold",
            "NanumGothicCoding",
            "NanumGothicCodingBold",
            "NanumGothicExtraBold",
            "NanumMyeongjo",
            "NanumMyeongjoBold",
            "NanumSquareB",
            "NanumSquareR",
            "NanumSquareRoundB",
            "NanumSquareRoundR",
        )
    )
    assert [n.rsplit("/", 1)[1] for n in nanum if is_bold(n)] == [
        "NanumBarunGothicBold.ttf",
        "NanumGothicBold.ttf",
        "NanumGothicCodingBold.ttf",
        "NanumGothicExtraBold.ttf",
        "NanumMyeongjoBold.ttf",
        "NanumSquareB.ttf",
        "NanumSquareRoundB.ttf",
    ]
    assert all(is_bold(n) for n in ("Font-b.otf", "Font_B.ttf", "FontHeavy.ttf", "Font-Black.ttf"))
    assert not any(is_bold(n) for n in ("ALLCAPSB.ttf", "Font.ttf", "Font-Regular.ttf"))
    assert bold_variant("/f/NanumGothic.ttf", nanum) == "/f/NanumGothicBold.ttf"
    longer_first = ("/f/NanumGothicExtraBold.ttf", "/f/NanumGothicCodingBold.ttf", "/f/NanumGothicBold.ttf")
    assert bold_variant("/f/NanumGothic.ttf", longer_first) == "/f/NanumGothicBold.ttf"  # 5 letters more at most
    assert bold_variant("/f/NanumGothicCoding.ttf", nanum) == "/f/NanumGothicCodingBold.ttf"
    assert bold_variant("/f/NanumSquareR.ttf", nanum) == "/f/NanumSquareB.ttf"  # R → B
    assert bold_variant("/f/Other-Regular.ttf", nanum + ("/f/Other-Bold.ttf",)) == "/f/Other-Bold.ttf"
    assert bold_variant("/f/Lonely.ttf", nanum) == "/f/Lonely.ttf"  # no bold face: itself


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["synth", "--out", str(out), "--n", "3", "--seed", "2", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"dataset {out}" in printed and "generated 3 images" in printed
    for split in SPLITS:
        assert re.search(rf"^{split}\s+1\s+\d+", printed, re.M), printed
        assert DatasetRoot(out).load(split, strict=True).report.problems == []
    assert main(["synth", "--out", str(out), "--n", "3"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--n", "4", "--seed", "2", "--workers", "1", "--force"]) == 0
    assert sorted(p.name for p in (out / "images").rglob("*.jpg")) == [f"{i:05d}.jpg" for i in range(4)]

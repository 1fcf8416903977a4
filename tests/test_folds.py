"""K-fold splits: coverage, disjointness, word balance, determinism, errors, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model.cli
from model.data.folds import assign_folds, fold_split, make_folds, read_manifest
from model.data.ufo import DatasetRoot, Word, read_ufo, word_ids, write_ufo
from model.errors import DataError


def make_root(root: Path, counts: dict[str, list[int]]) -> Path:
    """A dataset root with the given words per image in each split (tiny real PNGs)."""
    for split, per_image in counts.items():
        (root / "images" / split).mkdir(parents=True)
        images = {}
        for j, n in enumerate(per_image):
            name = f"{split}_{j:03d}.png"
            Image.new("RGB", (64, 48)).save(root / "images" / split / name)
            box = np.array([[1, 1], [20, 1], [20, 9], [1, 9]], dtype=float)
            images[name] = {wid: Word(box + i % 20, f"w{i}") for i, wid in enumerate(word_ids(n))}
        write_ufo(images, root / "jsons" / f"{split}.json")
    return root


@pytest.fixture
def root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 120, size=37).tolist()  # images with 0 words included
    counts[3] = 0
    return make_root(tmp_path / "root", {"train": counts[:30], "val": counts[30:], "test": [5, 5]})


def all_words(root: Path) -> dict[str, int]:
    out = {}
    for split in ("train", "val"):
        out.update({n: len(w) for n, w in read_ufo(root / "jsons" / f"{split}.json")[0].items()})
    return out


def check_folds(out: Path, manifest: dict, words: dict[str, int]) -> None:
    k = manifest["k"]
    val_sets = []
    for i in range(k):
        train, train_paths = fold_split(out, i, "train")
        val, val_paths = fold_split(out, i, "val")
        assert not set(train) & set(val)
        assert set(train) | set(val) == set(words)
        assert all(p.is_file() for p in [*train_paths.values(), *val_paths.values()])
        assert {n: len(w) for n, w in val.items()} == {n: words[n] for n in val}
        assert manifest["folds"][i]["val"]["files"] == sorted(val)
        assert manifest["folds"][i]["val"]["words"] == sum(words[n] for n in val)
        val_sets.append(set(val))
    # each image in exactly one validation fold
    assert sorted(n for s in val_sets for n in s) == sorted(words)
    # Balance. Images go, most words first, to the fold with the fewest words so far. Take a fold F
    # that ends fullest and its last image x (its smallest, by the order): when x was placed, F was
    # the emptiest fold, so F - x <= every other fold then <= every other fold at the end. Hence
    # max - min <= the word count of the smallest image in any fullest fold (a few dozen words on
    # SROIE, where folds hold ~1,200).
    loads = [manifest["folds"][i]["val"]["words"] for i in range(k)]
    for i in range(k):
        if loads[i] == max(loads):
            assert max(loads) - min(loads) <= min(words[n] for n in val_sets[i])


def test_folds_cover_partition_and_balance(root, tmp_path):
    out = tmp_path / "folds"
    manifest = make_folds(root, out, k=5, seed=42)
    words = all_words(root)
    assert manifest["k"] == 5 and manifest["seed"] == 42 and manifest["images"] == 37
    assert manifest["words"] == sum(words.values())
    check_folds(out, manifest, words)
    # the manifest says where each image lives; the test split is never part of a fold
    assert manifest["sources"] == {n: n.split("_")[0] for n in sorted(words)}
    assert read_manifest(out) == manifest


def test_fold_annotations_equal_the_root(root, tmp_path):
    make_folds(root, tmp_path / "folds", k=3)
    train = DatasetRoot(root).load("train", decode=False).images
    images, paths = fold_split(tmp_path / "folds", 1, "val")
    for name, words in images.items():
        if name in train:
            assert paths[name] == root.resolve() / "images" / "train" / name
            assert list(words) == list(train[name])
            for wid, w in words.items():
                assert w.points.tolist() == train[name][wid].points.tolist()
                assert w.transcription == train[name][wid].transcription


def test_fold_split_with_a_moved_root(root, tmp_path):
    make_folds(root, tmp_path / "folds", k=4)
    moved = tmp_path / "moved"
    root.rename(moved)
    images, paths = fold_split(tmp_path / "folds", 0, "train", root=moved)
    assert images and all(p.is_file() and p.is_relative_to(moved) for p in paths.values())


def test_deterministic_and_seed_dependent(root, tmp_path):
    a = make_folds(root, tmp_path / "a", k=5, seed=42)
    b = make_folds(root, tmp_path / "b", k=5, seed=42)
    for rel in ["folds.json"] + [f"fold_{i}/{p}.json" for i in range(5) for p in ("train", "val")]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert a == b
    c = make_folds(root, tmp_path / "c", k=5, seed=7)
    assert [f["val"]["files"] for f in c["folds"]] != [f["val"]["files"] for f in a["folds"]]
    check_folds(tmp_path / "c", c, all_words(root))


def test_assign_folds_ties_and_input_order():
    counts = {f"{i:02d}.jpg": 10 for i in range(10)}
    a = assign_folds(counts, k=5, seed=1)
    # all equal: ties go to the fold with fewer images, so 2 images per fold
    assert sorted(list(a.values()).count(i) for i in range(5)) == [2] * 5
    assert a == assign_folds(dict(reversed(list(counts.items()))), k=5, seed=1)
    assert a != assign_folds(counts, k=5, seed=2)


def test_fewer_folds_remove_stale_fold_dirs(root, tmp_path):
    make_folds(root, tmp_path / "folds", k=5)
    make_folds(root, tmp_path / "folds", k=3)
    assert sorted(p.name for p in (tmp_path / "folds").glob("fold_*")) == ["fold_0", "fold_1", "fold_2"]


def test_errors(root, tmp_path):
    with pytest.raises(DataError, match="k=1; k-fold needs k >= 2"):
        make_folds(root, tmp_path / "f", k=1)
    with pytest.raises(DataError, match="k=38 folds but only 37 image"):
        make_folds(root, tmp_path / "f", k=38)
    dup = make_root(tmp_path / "dup", {"train": [3, 4, 5], "val": [2]})
    (dup / "images" / "val" / "val_000.png").rename(dup / "images" / "val" / "train_001.png")
    val, _ = read_ufo(dup / "jsons" / "val.json")
    write_ufo({"train_001.png": val["val_000.png"]}, dup / "jsons" / "val.json")
    with pytest.raises(DataError, match=r"image 'train_001.png' is in both images/train/ and images/val/"):
        make_folds(dup, tmp_path / "f", k=2)
    make_folds(root, tmp_path / "ok", k=2)
    with pytest.raises(DataError, match="fold 2 does not exist; folds are 0..1"):
        fold_split(tmp_path / "ok", 2, "val")
    with pytest.raises(DataError, match="fold manifest is missing"):
        fold_split(tmp_path / "nothing", 0, "val")


def test_folds_of_a_receipt_dataset(synth_root, tmp_path):
    """A generated dataset root (real JPEGs, 50-100 words per receipt) split as the pipeline does."""
    manifest = make_folds(synth_root, tmp_path / "folds", k=5, seed=42)
    words = all_words(Path(synth_root))
    assert manifest["images"] == len(words) == 20  # train 16 + val 4 (test untouched)
    check_folds(tmp_path / "folds", manifest, words)
    loads = [f["val"]["words"] for f in manifest["folds"]]
    # seed 42: 3 words between the fullest and the emptiest of ~297 (1.0 %; on the 120 SROIE
    # receipts 22 of ~1,180, 1.9 %)
    assert (max(loads) - min(loads)) / np.mean(loads) < 0.05


def test_cli_split(root, tmp_path, capsys):
    out = tmp_path / "folds"
    assert model.cli.main(["split", str(root), "--out", str(out), "--k", "3", "--seed", "5"]) == 0
    text = capsys.readouterr().out
    assert "3 folds of 37 images" in text
    manifest = json.loads((out / "folds.json").read_text())
    assert manifest["k"] == 3 and manifest["seed"] == 5
    assert all((out / f"fold_{i}" / f"{p}.json").is_file() for i in range(3) for p in ("train", "val"))
    assert model.cli.main(["split", str(root), "--out", str(out), "--k", "1"]) == 2
    assert "receiptflow split: error:" in capsys.readouterr().err


def test_hold_out_val_keeps_the_calibration_images_out_of_every_fold(root, tmp_path, capsys):
    """The pipeline's calibration set: no fold model may train on a val image or pick its best epoch there."""
    manifest = make_folds(root, tmp_path / "folds", k=4, hold_out="val")
    train_only = {n: c for n, c in all_words(root).items() if n.startswith("train_")}
    assert manifest["held_out"] == "val" and manifest["images"] == 30 and set(manifest["sources"].values()) == {"train"}
    check_folds(tmp_path / "folds", manifest, train_only)
    assert make_folds(root, tmp_path / "pooled", k=4)["held_out"] is None
    assert model.cli.main(["split", str(root), "--out", str(tmp_path / "cli"), "--k", "3", "--hold-out", "val"]) == 0
    assert "3 folds of 30 images" in capsys.readouterr().out and read_manifest(tmp_path / "cli")["held_out"] == "val"


@pytest.mark.parametrize(
    "hold_out, message",
    [
        ("test", "cannot hold out split 'test': only val can be kept out of the folds"),
        ("train", "cannot hold out split 'train'"),
    ],
)
def test_hold_out_refuses_what_cannot_be_a_calibration_set(root, tmp_path, hold_out, message):
    with pytest.raises(DataError, match=message):
        make_folds(root, tmp_path / "f", k=2, hold_out=hold_out)
    no_val = make_root(tmp_path / "noval", {"train": [3, 4, 5]})
    with pytest.raises(DataError, match=r"no labelled val split to hold out \(jsons/val.json is missing\)"):
        make_folds(no_val, tmp_path / "g", k=2, hold_out="val")

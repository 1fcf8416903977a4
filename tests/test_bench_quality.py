"""`make bench-quality`'s own logic, offline (the benchmark itself trains for hours and needs the
peers' venv): which receipts a fold trains on, which post-processing its predictions use, and
how the table summarises folds."""

from __future__ import annotations

import json
import statistics

import pytest

from model.data.folds import make_folds
from tests.benchmarks.quality.__main__ import K, mean_sd, recipe_postprocess, table, train_subset


def test_train_subset_cuts_only_training_receipts_and_is_seeded(synth_root, tmp_path):
    folds = tmp_path / "folds"
    make_folds(synth_root, folds, k=K)
    cut = train_subset(folds, 6, tmp_path)
    (tmp_path / "again").mkdir()
    again = train_subset(folds, 6, tmp_path / "again")
    for i in range(K):
        full = json.loads((folds / f"fold_{i}" / "train.json").read_text())["images"]
        part = json.loads((cut / f"fold_{i}" / "train.json").read_text())["images"]
        assert len(part) == 6 and set(part) <= set(full)
        assert all(part[name] == full[name] for name in part), "annotations are copied as they are"
        # the held-out receipts, which every variant is scored on, are never cut
        assert (cut / f"fold_{i}" / "val.json").read_text() == (folds / f"fold_{i}" / "val.json").read_text()
        assert json.loads((again / f"fold_{i}" / "train.json").read_text())["images"].keys() == part.keys()
    assert train_subset(folds, None, tmp_path) == folds
    with pytest.raises(SystemExit, match="--train-size 99: the folds train on"):
        train_subset(folds, 99, tmp_path)
    assert not (tmp_path / "folds-n99").exists()


def test_predictions_use_the_recipes_post_processing_as_it_is_now():
    post = recipe_postprocess("cpu_tiny", ["models.head.postprocess.box_thresh=0.5", "trainer.max_epochs=3"])
    assert "models.head.postprocess.thresh=0.29" in post  # cpu_tiny inherits the seed's
    assert post[-1] == "models.head.postprocess.box_thresh=0.5", "an override wins over the preset"
    assert not any("max_epochs" in p for p in post), "training settings do not reach prediction"


def test_table_reports_mean_and_sample_sd_over_folds():
    hmeans = [0.90, 0.94, 0.92]
    rows = [
        {
            "name": "a",
            "folds": [
                {"hmean": h, "precision": 1.0, "recall": h, "ms_per_image": 100 + 10 * j, "train_s": t}
                for j, (h, t) in enumerate(zip(hmeans, (600, 3000, 660)))
            ],
        }
    ]
    out = table(rows)
    assert f"| a | 3 | 0.9200 ± {statistics.stdev(hmeans):.4f} |" in out
    assert "| 110 | 11.0 min |" in out, "training time is the median fold's: one slowed fold does not move it"
    assert "| 12 |" in table(rows, {"a": 12.3}), "a --retime measurement replaces the folds' own timings"
    assert mean_sd([0.5]) == "0.5000"  # one fold has no sd


def _row(name: str, hmeans: dict[int, float], settings: list[str] | None = None) -> dict:
    return {
        "name": name,
        "settings": settings or ["preset=x"],
        "folds": [
            {"fold": i, "hmean": h, "precision": h, "recall": h, "ms_per_image": 50.0} for i, h in hmeans.items()
        ],
    }


def test_the_record_merges_folds_by_index_and_keeps_every_row(tmp_path):
    from tests.benchmarks.quality import record

    path = tmp_path / "bench.json"
    record.record([_row("a", {0: 0.9, 1: 0.9, 2: 0.9}), _row("peer", dict.fromkeys(range(5), 0.8))], {"a": 40.0}, path)
    kept = record.record([_row("b", {0: 0.95})], {}, path)
    assert [r["name"] for r in kept["rows"]] == ["a", "peer", "b"] and kept["timing"] == {"a": 40.0}
    # a later session trains folds 3-4 (and fold 2 again): the record holds all five, fold 2 the new one
    kept = record.record([_row("a", {4: 0.94, 2: 0.92, 3: 0.93})], {"a": 41.0}, path)
    assert [(f["fold"], f["hmean"]) for f in kept["rows"][0]["folds"]] == [
        (0, 0.9),
        (1, 0.9),
        (2, 0.92),
        (3, 0.93),
        (4, 0.94),
    ]
    assert kept["timing"] == {"a": 41.0}
    with pytest.raises(
        SystemExit, match="a is recorded with settings .'preset=x'.*, this run has .'preset=y'.*another --label"
    ):
        record.record([_row("a", {0: 0.99}, ["preset=y"])], {}, path)
    assert record.load(path) == kept


def test_write_docs_fills_the_fenced_blocks_from_the_record(tmp_path):
    from tests.benchmarks.quality import record

    kept = {"rows": [_row("ours", {0: 0.9, 1: 0.94}), _row("peer", {0: 0.8})], "timing": {"ours": 12.0}}
    doc = tmp_path / "doc.md"
    doc.write_text(
        "intro\n<!-- bench-quality:summary -->\nold numbers\n<!-- /bench-quality:summary -->\n"
        "middle\n<!-- bench-quality:per-fold -->\n<!-- /bench-quality:per-fold -->\nend\n"
    )
    assert record.write_docs(kept, [doc]) == [doc]
    text = doc.read_text()
    assert "old numbers" not in text and text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    assert "| ours | 2 (0, 1) | 0.9200 ± 0.0283 |" in text and "| 12 |" in text
    assert "| fold | ours | peer |\n|---|---|---|\n| 0 | 0.9000 | 0.8000 |\n| 1 | 0.9400 | — |\n" in text
    assert record.write_docs(kept, [doc]) == [], "a second write changes nothing"
    doc.write_text("<!-- bench-quality:typo -->\n<!-- /bench-quality:typo -->\n")
    with pytest.raises(SystemExit, match="unknown block"):
        record.write_docs(kept, [doc])


def test_the_docs_tables_are_the_ones_the_benchmark_recorded():
    """README.md and docs/*.md show bench-quality's tables exactly as docs/bench-quality.json renders
    them: `python -m tests.benchmarks.quality.record` rewrites them after a change to the record."""
    from tests.benchmarks.quality import record

    kept = record.load()
    assert kept["rows"], f"{record.RECORD} holds no rows"
    rendered = record.render(kept)
    found = {path.name: record.blocks(path.read_text()) for path in record.DOCS}
    assert "summary" in found["README.md"] and {"summary", "per-fold"} <= set(found["quality.md"])
    for name, blocks in found.items():
        for block, text in blocks.items():
            assert text == rendered[block], f"{name}: the {block} table is not what {record.RECORD.name} renders"


def test_extra_training_receipts_join_every_fold_and_the_held_out_stay(synth_root, tmp_path):
    """--extra-train: another root's labelled receipts are added to each fold's training part and
    load through the training's own fold reader; the held-out receipts do not move."""
    from omegaconf import OmegaConf

    from model.data.splits import load_split
    from model.data.ufo import read_ufo, write_ufo
    from tests.benchmarks.quality.__main__ import train_plus

    folds = tmp_path / "folds"
    make_folds(synth_root, folds, k=K)
    extra = tmp_path / "extra"
    (extra / "images" / "train").mkdir(parents=True)
    (extra / "jsons").mkdir()
    test_labels, _ = read_ufo(synth_root / "jsons" / "test.json")  # receipts no fold has, under new names
    renamed = {f"x_{name}": words for name, words in test_labels.items()}
    for name in test_labels:
        (extra / "images" / "train" / f"x_{name}").symlink_to(synth_root / "images" / "test" / name)
    write_ufo(renamed, extra / "jsons" / "train.json")

    plus = train_plus(folds, extra, tmp_path)
    assert train_plus(folds, None, tmp_path) == folds
    for i in range(K):
        before = json.loads((folds / f"fold_{i}" / "train.json").read_text())["images"]
        after = json.loads((plus / f"fold_{i}" / "train.json").read_text())["images"]
        assert set(after) == set(before) | set(renamed)
        assert (plus / f"fold_{i}" / "val.json").read_text() == (folds / f"fold_{i}" / "val.json").read_text()
    root = json.loads((plus / "folds.json").read_text())["root"]
    ds = OmegaConf.create({"root": root, "folds": str(plus), "fold": 1})
    train, val = load_split(ds, "train"), load_split(ds, "val")
    assert set(train.images) == set(json.loads((plus / "fold_1" / "train.json").read_text())["images"])
    assert set(val.images) == set(json.loads((folds / "fold_1" / "val.json").read_text())["images"])
    assert all(train.path(n).is_file() for n in train.images)

    clash = tmp_path / "clash"
    (clash / "jsons").mkdir(parents=True)
    write_ufo(read_ufo(synth_root / "jsons" / "train.json")[0], clash / "jsons" / "train.json")
    with pytest.raises(SystemExit, match="receipt.s. of the same name as the benchmark's"):
        train_plus(folds, clash, tmp_path)

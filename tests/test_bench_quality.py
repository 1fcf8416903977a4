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
    rows = [{"name": "a", "folds": [{"hmean": h, "precision": 1.0, "recall": h, "ms_per_image": 100 + 10 * j, "train_s": t}
                                    for j, (h, t) in enumerate(zip(hmeans, (600, 3000, 660)))]}]
    out = table(rows)
    assert f"| a | 3 | 0.9200 ± {statistics.stdev(hmeans):.4f} |" in out
    assert "| 110 | 11.0 min |" in out, "training time is the median fold's: one slowed fold does not move it"
    assert "| 12 |" in table(rows, {"a": 12.3}), "a --retime measurement replaces the folds' own timings"
    assert mean_sd([0.5]) == "0.5000 ± 0.0000"

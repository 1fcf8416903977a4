"""pipelines/sweep_report.py on the seed's 12-run table and on a synthetic export with curves."""

from __future__ import annotations

import base64
import json
import os
import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from components.katib.trials import load_trials
from pipelines.sweep_report import SEED_CLAIMS, analyze, compare_claims, find_outliers, write_report

FIXTURES = Path(__file__).parent / "fixtures"
# The seed report's §3.1 table in its own order (rank 1..12), metric at epoch 10.
SEED_ORDER = ["run8", "run3", "run4", "run2", "run7", "run6", "run10", "run11", "run9", "run12", "run5", "run1"]
SEED_VALUES = [0.9660, 0.9647, 0.9631, 0.9629, 0.9629, 0.9623, 0.9620, 0.9614, 0.9603, 0.9599, 0.9564, 0.8606]


@pytest.fixture(scope="module")
def seed_trials():
    return load_trials(FIXTURES / "seed_sweep.csv")


@pytest.fixture(scope="module")
def seed_report(seed_trials, tmp_path_factory):
    out = tmp_path_factory.mktemp("seed_report")
    return write_report(seed_trials, out, title="Seed sweep", source_note="seed §3.1", claimed=SEED_CLAIMS)


def test_ranking_matches_the_seed_table(seed_trials):
    a = analyze(seed_trials)
    assert [t.name for t in a.ranking] == SEED_ORDER
    assert [t.metric for t in a.ranking] == SEED_VALUES
    assert a.ranking[0].status == "EarlyStopped"


def test_statistics_are_computed_correctly(seed_trials):
    a = analyze(seed_trials)
    s, w = a.stats, a.stats_without_outliers
    # independently, from the raw list
    v = np.array(SEED_VALUES)
    kept = v[v != 0.8606]
    assert s.n == 12 and w.n == 11
    assert s.mean == pytest.approx(v.mean(), abs=1e-9)
    assert s.median == pytest.approx(np.median(v), abs=1e-9)
    assert s.std == pytest.approx(v.std(ddof=1), abs=1e-9)
    assert s.z_best == pytest.approx((v.max() - v.mean()) / v.std(ddof=1), abs=1e-9)
    assert w.mean == pytest.approx(kept.mean(), abs=1e-9)
    assert w.median == pytest.approx(np.median(kept), abs=1e-9)
    assert w.std == pytest.approx(kept.std(ddof=1), abs=1e-9)
    assert w.z_best == pytest.approx((kept.max() - kept.mean()) / kept.std(ddof=1), abs=1e-9)
    # and the hard numbers (the seed claims 95.74 / 96.21 / 2.83 and 96.22 / 96.23 / 0.26, z 1.46)
    assert s.mean == pytest.approx(0.9535416666666667, abs=1e-12)
    assert s.median == pytest.approx(0.96215, abs=1e-12)
    assert s.std == pytest.approx(0.029370159820450, abs=1e-12)
    assert s.z_best == pytest.approx(0.424183368748941, abs=1e-9)
    assert w.mean == pytest.approx(0.9619909090909091, abs=1e-12)
    assert w.median == pytest.approx(0.9623, abs=1e-12)
    assert w.std == pytest.approx(0.002553998647398, abs=1e-12)
    assert w.z_best == pytest.approx(1.569731022832, abs=1e-9)


def test_outlier_rule_flags_only_run1(seed_trials):
    a = analyze(seed_trials)
    assert [t.name for t in a.outliers] == ["run1"]
    assert find_outliers(SEED_VALUES) == [11]
    # the rule itself: median ± 3 × 1.4826 × MAD
    med = statistics.median(SEED_VALUES)
    mad = statistics.median(abs(x - med) for x in SEED_VALUES)
    assert [x for x in SEED_VALUES if abs(x - med) > 3 * 1.4826 * mad] == [0.8606]
    assert find_outliers([0.9, 0.9, 0.9, 0.5]) == []  # MAD 0: nothing is flagged


def test_recommendation_is_run8_with_run3_fallback(seed_trials):
    a = analyze(seed_trials)
    assert [t.name for t in a.early_beat_completed] == ["run8"]
    r, f = a.recommended, a.fallback
    assert r.name == "run8" and r.status == "EarlyStopped"
    assert r.parameters == {
        "lr": 0.0005134333170096499,
        "weight_decay": 6.797303101020006e-05,
        "T_max": 24.0,
        "eta_min": 6.388390006720873e-06,
    }
    assert f.name == "run3" and f.status == "Succeeded"
    assert f.parameters == {
        "lr": 0.0003845588887231477,
        "weight_decay": 0.00013939498132089153,
        "T_max": 22.0,
        "eta_min": 1.8596851896215065e-05,
    }


def test_seed_claims_that_differ(seed_trials):
    rows = {r["key"]: r for r in compare_claims(analyze(seed_trials), SEED_CLAIMS)}
    differs = sorted(k for k, r in rows.items() if r["differs"])
    assert differs == ["mean", "mean_without_outliers", "std", "z_best_without_outliers"]
    assert rows["mean"]["computed"] == pytest.approx(95.35416666666667)
    assert rows["median"]["computed"] == pytest.approx(96.215)  # 96.21 is within rounding
    assert rows["std_without_outliers"]["computed"] == pytest.approx(0.2553998647)  # 0.26 is within rounding


def test_bucket_counts(seed_trials):
    a = analyze(seed_trials)
    assert a.bucket_kind == {"lr": "log", "weight_decay": "log", "T_max": "category", "eta_min": "log"}
    for p, buckets in a.buckets.items():
        assert sum(b.count for b in buckets) == 12, p
    tmax = {b.label: (b.count, b.max) for b in a.buckets["T_max"]}
    assert tmax == {"T_max=20": (2, 0.9623), "T_max=22": (5, 0.9647), "T_max=24": (5, 0.9660)}
    t22 = next(b for b in a.buckets["T_max"] if b.label == "T_max=22")
    assert t22.mean == pytest.approx(np.mean([0.9647, 0.9629, 0.9631, 0.9599, 0.8606]), abs=1e-12)
    wd_top = a.buckets["weight_decay"][-1]
    assert wd_top.trials == ["run1"]


def test_markdown_report(seed_report):
    md = seed_report["markdown"].read_text()
    ranking = md.split("## Ranking")[1].split("##")[0]
    names = re.findall(r"^\| \d+ \| (run\d+) \|", ranking, flags=re.M)
    assert names == SEED_ORDER
    assert "| 1 | run8 |" in ranking and "EarlyStopped" in ranking.splitlines()[4]
    early = md.split("## Early-stopped trials that beat every completed trial")[1].split("##")[0]
    assert "**run8**: 0.9660 > best completed run3 0.9647" in early
    assert "mean (not the median)" in early and "once, at its start_step-th report" in early  # Katib's rule as it is
    differs = md.split("## Where the seed's arithmetic differs")[1].split("##")[0]
    assert "mean: claimed 95.74, computed 95.35" in differs
    assert "median: claimed" not in differs
    assert "3 × 1.4826 × MAD" in md and "Outliers: run1 (0.8606)" in md
    assert "models.optimizer.lr=0.0005134333170096499" in md
    assert "models.scheduler.T_max=24 " in md
    assert "--param run8_eta_min=6.388390006720873e-06" in md
    assert "--param run3_lr=0.0003845588887231477" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "plots/metric_vs_lr.png" in links and "plots/metric_vs_weight_decay.png" in links
    assert "plots/parallel_coordinates.png" in links
    for link in links:
        assert (seed_report["markdown"].parent / link).is_file(), link
    assert sorted(seed_report["plots"]) == sorted(seed_report["markdown"].parent / link for link in links)


def test_html_is_standalone_with_embedded_pngs(seed_report):
    page = seed_report["html"].read_text()
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == len(seed_report["plots"]) >= 3
    for data in imgs:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plots/" not in page  # nothing external
    assert "<strong>run8</strong>" in page


def test_synthetic_export_with_curves(tmp_path):
    records = []
    for i, (lr, wd, hm, status) in enumerate(
        [
            (2.5e-4, 5e-5, 0.951, "Succeeded"),
            (3e-4, 1e-4, 0.958, "EarlyStopped"),
            (4e-4, 2e-4, 0.962, "Succeeded"),
            (5e-4, 7e-5, 0.967, "EarlyStopped"),
            (6e-4, 4e-4, 0.944, "Succeeded"),
            (3.5e-4, 9e-5, None, "Failed"),
        ]
    ):
        curve = (
            None
            if hm is None
            else [round(hm - 0.05 / (e + 1), 4) for e in range(10 if status == "EarlyStopped" else 22)]
        )
        records.append(
            {
                "name": f"t{i}",
                "parameters": {"lr": lr, "weight_decay": wd, "T_max": 22, "eta_min": 1e-5 * (i + 1)},
                "metric": None if curve is None else max(curve),
                "status": status,
                "curve": curve,
            }
        )
    src = tmp_path / "export.json"
    src.write_text(json.dumps(records))
    out = write_report(load_trials(src), tmp_path / "r", title="synthetic")
    names = [p.name for p in out["plots"]]
    assert "learning_curves.png" in names and (tmp_path / "r" / "plots" / "learning_curves.png").stat().st_size > 1000
    a = out["analysis"]
    assert a.recommended.name == "t3" and a.fallback.name == "t2"
    assert [t.name for t in a.excluded] == ["t5"]
    assert "t5 (Failed)" in out["markdown"].read_text()


def test_no_usable_trial_is_a_clear_error(tmp_path):
    from model.errors import DataError

    with pytest.raises(DataError, match="no trial has a usable val/hmean"):
        write_report(load_trials(FIXTURES / "katib_trials_none_succeeded.json"), tmp_path, title="x")


def test_report_from_katib_fixture(tmp_path):
    out = write_report(load_trials(FIXTURES / "katib_trials_early_stopped_best.json"), tmp_path, title="katib")
    md = out["markdown"].read_text()
    assert out["analysis"].recommended.name == "receiptflow-run8-sweep-8hm3r5tw"
    assert "**receiptflow-run8-sweep-8hm3r5tw**: 0.9660 > best completed receiptflow-run8-sweep-4xk2pq7z 0.9647" in md


def test_unknown_claim_key(seed_trials):
    with pytest.raises(KeyError, match="unknown claim 'avg'"):
        compare_claims(analyze(seed_trials), {"avg": 1.0})


@pytest.mark.slow
def test_cli_report_from_an_export_and_clear_errors(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    seed_csv = repo / "tests" / "fixtures" / "seed_sweep.csv"

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "model.cli", "sweep", "report", *a],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "KUBECONFIG": str(tmp_path / "none")},
        )

    proc = run("--from", str(seed_csv), "--seed-claims", "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "**run8** (EarlyStopped, 0.9660)" in md and "| mean | 95.74 | 95.3542 | **differs** |" in md
    bad = tmp_path / "bad.csv"
    bad.write_text("name,status,metric,lr\na,Succeeded,high,0.001\n")
    proc = run("--from", str(bad))
    assert proc.returncode == 2 and f"{bad}: row 2 (a): metric 'high' is not a number" in proc.stderr
    proc = run("--experiment", "nowhere", "--namespace", "ns")
    assert proc.returncode == 2 and "cannot list Trials of Katib Experiment ns/nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr

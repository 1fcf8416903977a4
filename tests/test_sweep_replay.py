"""The replay harness (earlystop/replay.py), Katib's medianstop replica (earlystop/katib_medianstop.py) and
`receiptflow sweep replay`, on hand-worked curves and on the two recorded curve sets in tests/fixtures/curves/."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from earlystop import katib_medianstop as km, rule
from earlystop.replay import Curve, CurveSet, load_curves, markdown_table, replay, replay_all
from model.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "curves" / "seed_sweep.json"
TINY = FIXTURES / "curves" / "cpu_tiny_lr.json"


def _set(*curves: list[float], goal: str = "maximize") -> CurveSet:
    return CurveSet("t", tuple(Curve(chr(97 + i), tuple(v), i) for i, v in enumerate(curves)), goal)


# --- Katib medianstop, from pkg/earlystopping/v1beta1/medianstop/service.py and the collector's updateStopRules ---


def test_medianstop_defaults_are_upstreams():
    assert (km.DEFAULT_MIN_TRIALS_REQUIRED, km.DEFAULT_START_STEP) == (3, 4)  # service.py:44-45
    assert (rule.DEFAULT_MIN_TRIALS_REQUIRED, rule.DEFAULT_START_STEP) == (3, 4)


def test_medianstop_value_is_the_mean_of_early_averages_not_a_median():
    # early averages over the first 2 values: 0.15, 0.25, 0.85 -> mean 0.4166..; a median would be 0.25
    succeeded = [[0.1, 0.2, 0.9], [0.2, 0.3, 0.3], [0.8, 0.9, 0.1]]
    assert km.rule_value(succeeded, start_step=2, min_trials_required=3) == pytest.approx((0.15 + 0.25 + 0.85) / 3)
    assert km.rule_value(succeeded, start_step=2, min_trials_required=4) is None  # too few succeeded: no rule
    assert (
        km.early_average([0.5], 4) == 0.5
    )  # fewer values than start_step: the mean of what there is (service.py:211-219)
    with pytest.raises(ValueError, match="no reported objective"):
        km.early_average([], 4)


def test_medianstop_collector_checks_once_at_start_step_against_the_best_so_far():
    # best of the first 4 is 0.5 >= 0.45 although the 4th report (0.3) is below: not stopped
    assert not km.collector_stops([0.1, 0.5, 0.2, 0.3], 0.45, start_step=4)
    assert km.collector_stops([0.1, 0.2, 0.3, 0.4], 0.45, start_step=4)
    # a collapse after start_step is never looked at (checked once)
    assert not km.collector_stops([0.5, 0.5, 0.5, 0.5, 0.0, 0.0], 0.45, start_step=4)
    assert not km.collector_stops([0.0, 0.0, 0.0], 0.45, start_step=4)  # never reached start_step
    assert not km.collector_stops([0.45] * 4, 0.45, start_step=4)  # strict LESS (main.go:380)
    assert km.collector_stops([0.9, 0.6], 0.5, start_step=2, goal="minimize")  # GREATER: best (lowest) 0.6 > 0.5
    assert not km.collector_stops([0.9, 0.4], 0.5, start_step=2, goal="minimize")
    assert not km.collector_stops([0.1] * 4, None, start_step=4)  # no rule


def test_medianstop_replay_counts_only_succeeded_trials():
    """One slot, start_step 2, min 2. a and b succeed (early averages 0.55, 0.15); c gets 0.35 and is stopped at
    its 2nd epoch (best 0.3) although it would end best (0.9): a false negative. d gets 0.35 again, not the
    0.3167 it would get if stopped c counted, so d (best 0.33) is stopped too."""
    curves = _set([0.5, 0.6, 0.7], [0.1, 0.2, 0.3], [0.2, 0.3, 0.9], [0.33, 0.33, 0.33])
    r = replay(curves, "medianstop", parallel=1, start_step=2, min_trials_required=2)
    by = {o.name: o for o in r.outcomes}
    assert [by[n].rule for n in "ab"] == [None, None]
    assert by["c"].rule == pytest.approx(0.35) and by["d"].rule == pytest.approx(0.35)
    assert r.stopped == ("c", "d") and r.false_negatives == ("c",) and r.best_stopped
    assert [(by[n].start, by[n].end) for n in "abcd"] == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert (r.epochs_run, r.epochs_saved, r.makespan, r.best_found) == (10, 2, 10, 0.7)


# --- the replay's scheduling and our rule in it ---


def test_slots_fill_in_creation_order_and_free_before_creation_at_the_same_time():
    curves = CurveSet(
        "t",
        (Curve("late", (0.1,) * 4, 3), Curve("a", (0.1,) * 3, 0), Curve("b", (0.1,) * 5, 1), Curve("c", (0.1,) * 2, 2)),
    )
    r = replay(curves, "none", parallel=2)
    assert [(o.name, o.start, o.end) for o in r.outcomes] == [("a", 0, 3), ("b", 0, 5), ("c", 3, 5), ("late", 5, 9)]
    assert (r.epochs_run, r.epochs_saved, r.makespan, r.stopped) == (14, 0, 9, ())
    assert replay(curves, "none", parallel=1).makespan == 14 and replay(curves, "none", parallel=9).makespan == 5


def test_ours_counts_running_trials_that_reached_start_step_and_a_stopped_trial_frees_its_slot_then():
    """Two slots, start_step 2, min 2, running trials visible (a collector that reports while training). a, b
    start at 0 and are past start_step at 2 but b runs on; c (created at 3 when a ends) gets the median of a's and
    b's best at epoch 2 (0.6, 0.2 -> 0.4), is stopped at 3 + 2 = 5 and d starts then. Medianstop has only 1
    succeeded trial at 3: no rule for c. With the StdOut collector (the default) b's log reaches the DB only when
    b ends, so c gets no rule either."""
    curves = _set([0.5, 0.6, 0.7], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.1, 0.3, 0.35, 0.35], [0.9, 0.9])
    assert replay(curves, "medianstop-floor", parallel=2, start_step=2, min_trials_required=2).outcomes[2].rule is None
    r = replay(
        curves, "medianstop-floor", parallel=2, start_step=2, min_trials_required=2, floor=0.8, running_visible=True
    )
    by = {o.name: o for o in r.outcomes}
    assert by["c"].rule == pytest.approx(0.4) and by["c"].stopped and (by["c"].start, by["c"].end) == (3, 5)
    assert by["d"].start == 5
    assert replay(curves, "medianstop", parallel=2, start_step=2, min_trials_required=2).outcomes[2].rule is None
    # floor below the median: the rule is the floor, and c (best 0.3 >= 0.25) is never stopped
    low = replay(
        curves, "medianstop-floor", parallel=2, start_step=2, min_trials_required=2, floor=0.25, running_visible=True
    )
    assert {o.name: o for o in low.outcomes}["c"].rule == 0.25 and low.stopped == ()


def test_ours_leaves_out_trials_that_have_not_reported_start_step_values_yet():
    """start_step 3, min 1, two slots. a (1 epoch) never reaches it; c starts at 1, so when d is created at 3
    only b (started at 0) has 3 reports: d's rule is b's best 0.3, not the median with c's 0.8 (0.55)."""
    curves = _set([0.9], [0.1, 0.2, 0.3], [0.8] * 5, [0.5] * 3)
    r = replay(curves, "medianstop-floor", parallel=2, start_step=3, min_trials_required=1, running_visible=True)
    by = {o.name: o for o in r.outcomes}
    assert [by[n].start for n in "abcd"] == [0, 0, 1, 3]
    assert by["c"].rule is None and by["d"].rule == pytest.approx(0.3) and r.stopped == ()


def test_minimize_mirrors():
    curves = _set([0.5, 0.4, 0.3], [0.9, 0.8, 0.7], [0.6, 0.65, 0.1], goal="minimize")
    r = replay(curves, "medianstop-floor", parallel=1, start_step=2, min_trials_required=2, floor=0.55)
    # median of best (lowest) at step 2: 0.4, 0.8 -> 0.6; rule max(0.6, 0.55) = 0.6; c's best 0.6 is not > 0.6
    assert r.outcomes[2].rule == pytest.approx(0.6) and r.stopped == ()
    r = replay(curves, "medianstop-floor", parallel=1, start_step=2, min_trials_required=2, floor=0.3)
    assert r.outcomes[2].rule == pytest.approx(0.6)  # max(median, floor): the floor is lower, the median rules


def test_replay_is_deterministic_and_refuses_bad_settings():
    curves = load_curves(SEED)
    assert replay_all(curves, parallel=2, start_step=10, floor=0.9653) == replay_all(
        curves, parallel=2, start_step=10, floor=0.9653
    )
    with pytest.raises(ValueError, match="parallel must be >= 1"):
        replay(curves, "none", parallel=0)
    with pytest.raises(ValueError, match="policy must be one of"):
        replay(curves, "hyperband")


# --- the recorded curve sets ---


def _run_fixture(path: Path):
    curves = load_curves(path)
    d = curves.defaults
    settings = dict(
        parallel=d["parallel"],
        start_step=d["start_step"],
        min_trials_required=d["min_trials_required"],
        floor=d["floor"],
    )
    return curves, {r.policy: r for r in replay_all(curves, **settings)}, settings


def test_seed_fixture_holds_exactly_the_recorded_values():
    rows = {r["name"]: r for r in csv.DictReader((FIXTURES / "seed_sweep.csv").open())}
    doc = json.loads(SEED.read_text())
    assert {t["name"]: (t["recorded_value"], t["seed_status"]) for t in doc["trials"]} == {
        n: (float(r["metric"]), r["status"]) for n, r in rows.items()
    }
    assert [t["name"] for t in sorted(doc["trials"], key=lambda t: t["created"])] == [f"run{i}" for i in range(1, 13)]


def test_seed_sweep_ours_stops_only_trials_below_the_floor_and_keeps_run8():
    curves, r, s = _run_fixture(SEED)
    ours, median, none = r["medianstop-floor"], r["medianstop"], r["none"]
    assert ours.false_negatives == () and not ours.best_stopped and ours.best_found == 0.966
    assert "run8" not in ours.stopped and len(ours.stopped) == 6
    # flat curves: medianstop's bar (the mean of the succeeded early averages, pulled down by run1's 0.8606)
    # is at most 0.9521, under every later run: it stops nothing, so it saves nothing, and has no false negative
    assert median.stopped == () and median.epochs_saved == 0 and max(o.rule or 0 for o in median.outcomes) < 0.9522
    assert none.epochs_run == 12 * 22 and ours.epochs_saved == 6 * 12
    for start_step, parallel, visible in itertools.product((1, 4, 10, 21), (1, 2, 3, 4), (False, True)):
        res = replay_all(
            curves,
            parallel=parallel,
            start_step=start_step,
            min_trials_required=3,
            floor=s["floor"],
            running_visible=visible,
        )
        assert [x.false_negatives for x in res] == [(), (), ()], (start_step, parallel, visible)


@pytest.mark.skipif(
    not TINY.exists(), reason="tests/fixtures/curves/cpu_tiny_lr.json not recorded (tests/record_curves.py)"
)
def test_cpu_tiny_curves_ours_never_stops_a_trial_that_ends_above_the_floor_medianstop_does():
    curves, r, s = _run_fixture(TINY)
    doc = json.loads(TINY.read_text())
    default = next(t for t in doc["trials"] if t["lr"] == 0.003)
    assert s["floor"] == max(default["values"])  # the floor: the preset's lr, its best val/hmean
    ours, median = r["medianstop-floor"], r["medianstop"]
    assert ours.false_negatives == () and not ours.best_stopped and ours.best_found == r["none"].best_found
    # Katib's mean of early averages: every trial reports 0.000 for 4 epochs except lr 0.015's diverging first
    # epochs (0.013, 0.002, 0.001), so the bar is above 0 and lr 0.002 (0.000 at epoch 4, 0.831 at the end) is
    # stopped; the true median of the best at epoch 4 is 0, nothing is below it.
    assert (
        median.false_negatives == ("lr0.002",)
        and {o.name: o for o in median.outcomes}["lr0.002"].rule > 0
        and ours.stopped == ()
    )
    for start_step in range(1, 10):  # every start_step that leaves something to save, 1 to 4 slots
        for parallel, visible in itertools.product((1, 2, 3, 4), (False, True)):
            res = replay(
                curves,
                "medianstop-floor",
                parallel=parallel,
                start_step=start_step,
                min_trials_required=3,
                floor=s["floor"],
                running_visible=visible,
            )
            assert res.false_negatives == () and res.best_found == r["none"].best_found, (start_step, parallel, visible)
    # the cost: from start_step 5 on (when curves have separated) ours saves as much as medianstop or a little less
    at5 = {x.policy: x for x in replay_all(curves, parallel=2, start_step=5, min_trials_required=3, floor=s["floor"])}
    assert (at5["medianstop"].epochs_saved, at5["medianstop-floor"].epochs_saved) == (30, 25)
    assert at5["medianstop"].false_negatives == ()


@pytest.mark.skipif(not TINY.exists(), reason="tests/fixtures/curves/cpu_tiny_lr.json not recorded")
def test_cpu_tiny_fixture_records_the_commands_of_tests_record_curves():
    from tests.record_curves import EPOCHS, LRS, ORDER, SYNTH, train_args

    doc = json.loads(TINY.read_text())
    assert doc["commands"][0].startswith("python -m model.cli " + " ".join(SYNTH))
    assert [t["lr"] for t in sorted(doc["trials"], key=lambda t: t["created"])] == [LRS[i] for i in ORDER]
    for t, cmd in zip(doc["trials"], doc["commands"][1:]):
        assert cmd.split() == [
            "python",
            "-m",
            "model.cli",
            *train_args(Path("DATA"), Path(f"RUNS/{t['name']}"), t["lr"]),
        ]
        assert len(t["values"]) == EPOCHS and all(0.0 <= v <= 1.0 for v in t["values"])


# --- the CLI verb ---


def test_cli_sweep_replay_prints_the_table(capsys):
    assert main(["sweep", "replay", str(SEED)]) == 0
    out = capsys.readouterr().out
    assert (
        "parallel 2, start_step 10, min_trials_required 3, floor 0.9653, running trials not visible (StdOut collector)"
        in out
    )
    assert "| medianstop-floor | 6 | 0 | 192 | 72 (27 %) | 96 (none: 132) | 0.9660 |" in out
    assert "| none | 0 | 0 | 264 | 0 (0 %) | 132 (none: 132) | 0.9660 |" in out
    curves, r, _ = _run_fixture(SEED)
    assert markdown_table(list(r.values()), floor=0.9653) in out

    assert (
        main(["sweep", "replay", str(SEED), "--json", "--parallel", "1", "--floor", "0.97", "--start-step", "4"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["settings"] == {
        "parallel": 1,
        "start_step": 4,
        "min_trials_required": 3,
        "floor": 0.97,
        "running_visible": False,
    }
    assert [res["policy"] for res in doc["results"]] == ["medianstop", "medianstop-floor", "none"]
    assert len(doc["results"][0]["outcomes"]) == 12


def test_cli_sweep_replay_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text("{}")
    assert main(["sweep", "replay", str(bad)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {bad}: no trials (expected a 'trials' list)"]
    assert main(["sweep", "replay", str(SEED), "--start-step", "0"]) == 2
    assert "start_step must be >= 1" in capsys.readouterr().err


def test_sweep_replay_help_and_run_import_no_heavy_package():
    """`sweep replay` is pure Python: neither its --help nor a replay loads torch, kfp, numpy or grpc."""
    from tests.test_cli import imported_by

    assert (
        imported_by(["sweep", "replay", "--help"], ["sweep", "replay", str(SEED)], ["sweep", "replay", str(TINY)])
        == set()
    )


# --- the real-receipt sweep (tests/record_curves.py --set sroie_dev) ---

SROIE_DEV = FIXTURES / "curves" / "sroie_dev_lite0.json"


def test_sroie_dev_fixture_records_the_commands_of_tests_record_curves_and_a_floor_fixed_before():
    from pipelines.sweep import FLOOR
    from tests.record_curves import CONVERT, SROIE_EPOCHS, SROIE_ORDER, SROIE_TRIALS, sroie_name, sroie_train_args

    doc = json.loads(SROIE_DEV.read_text())
    assert doc["replay"] == {"parallel": 2, "start_step": 4, "min_trials_required": 3, "floor": FLOOR}
    assert doc["commands"][0].split()[3:] == [*CONVERT, "../shared/data/sroie-dev", "DATA", "--overwrite"]
    trials = sorted(doc["trials"], key=lambda t: t["created"])
    assert [(t["lr"], t["T_max"]) for t in trials] == [SROIE_TRIALS[i] for i in SROIE_ORDER]
    for t, cmd in zip(doc["trials"], doc["commands"][1:]):
        assert t["name"] == sroie_name(t["lr"], t["T_max"])
        assert cmd.split()[3:] == sroie_train_args(Path("DATA"), Path(f"RUNS/{t['name']}"), t["lr"], t["T_max"])
        assert len(t["values"]) == SROIE_EPOCHS and all(0.0 <= v <= 1.0 for v in t["values"])
    # real rising curves, not flat ones: most trials gain more than 0.3 from their first epoch
    assert sum(max(t["values"]) - t["values"][0] > 0.3 for t in trials) >= 7


def test_sroie_dev_curves_neither_rule_stops_a_winner_and_the_docs_tables_are_the_replays():
    from earlystop.replay import start_step_table

    curves, r, s = _run_fixture(SROIE_DEV)
    none = r["none"]
    for start_step, parallel, visible in itertools.product(range(1, 8), (1, 2, 3, 4), (False, True)):
        for policy in ("medianstop", "medianstop-floor"):
            res = replay(
                curves,
                policy,
                parallel=parallel,
                start_step=start_step,
                min_trials_required=3,
                floor=s["floor"],
                running_visible=visible,
            )
            assert res.false_negatives == () and res.best_found == none.best_found, (
                policy,
                start_step,
                parallel,
                visible,
            )
    assert max(max(t.values) for t in curves.trials) < s["floor"]  # the floor never acted: no trial reached it
    table = start_step_table(curves, (2, 4, 6), parallel=2, min_trials_required=3, floor=s["floor"])
    repo = Path(__file__).resolve().parents[1]
    for doc in ("README.md", "docs/katib.md"):
        text = (repo / doc).read_text()
        assert f"<!-- replay:sroie_dev -->\n{table}\n<!-- /replay:sroie_dev -->" in text, doc
    assert "| 2 | medianstop-floor | 0.9625 | 2 | 0 | 12 of 80 (15 %) |" in table  # what README's heading says

"""The test tiers (tests/conftest.py, "tiers"): `make test-fast` (-m "not slow") never trains, runs a
pipeline or builds a wheel, by a rule kept in code: users of a @slow_fixture are marked slow, and an
unmarked test that starts such work fails. Checked on small generated test files in a pytest of
their own, with this repository's conftest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CONFTEST = """
from tests.conftest import _unmarked_tests_stay_units, pytest_collection_modifyitems, slow_fixture  # noqa: F401
"""

GUARD = """
import subprocess
import sys

import pytest

import model.train  # in process, training is refused where an epoch starts


def test_unit():
    assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).returncode == 0


def test_unmarked_cli_training():
    subprocess.run(["echo", "receiptflow", "train", "preset=cpu_tiny"])


def test_unmarked_pipeline_in_a_shell():
    subprocess.run("echo python -m model.cli pipeline run --local", shell=True)


def test_unmarked_wheel():
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--help"], capture_output=True)


def test_unmarked_in_process_epoch():
    model.train._progress(None, [], 0, 1)


@pytest.mark.slow
def test_marked_may_start_anything():
    subprocess.run(["echo", "receiptflow", "train"], capture_output=True)
"""

GROUPS = """
import os
import time
from pathlib import Path

import pytest

from tests.conftest import slow_fixture

MADE = Path(os.environ["TIERS_MADE"])  # one file per instance of a slow fixture: name-pid


@slow_fixture(scope="module")
def trained_once():
    (MADE / f"trained_once-{os.getpid()}").touch()
    return "weights"


@slow_fixture(scope="module")
def other():
    (MADE / f"other-{os.getpid()}").touch()
    return "other"


@pytest.mark.parametrize("i", range(4))
def test_uses_the_slow_fixture(trained_once, i):
    time.sleep(0.1)


def test_uses_both(trained_once, other):
    time.sleep(0.1)


@pytest.mark.parametrize("i", range(4))
def test_uses_the_other(other, i):
    time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(4))
def test_slow_alone(i):
    time.sleep(0.1)
"""


@pytest.fixture
def tiers(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_guard=GUARD, test_groups=GROUPS)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\nmarkers =\n    slow: test\n")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("TIERS_MADE", str(pytester.mkdir("made")))
    return pytester


def test_an_unmarked_test_that_trains_runs_a_pipeline_or_builds_a_wheel_fails_naming_what_it_started(tiers):
    result = tiers.runpytest_subprocess("test_guard.py", "-m", "not slow", "-rf")
    result.assert_outcomes(passed=1, failed=4, deselected=1)
    for test, what in [
        ("test_unmarked_cli_training", "trains a model (echo receiptflow train"),
        ("test_unmarked_pipeline_in_a_shell", "runs a pipeline"),
        ("test_unmarked_wheel", "builds or installs a wheel"),
        ("test_unmarked_in_process_epoch", "trains a model (an epoch of model.train.train)"),
    ]:
        result.stdout.fnmatch_lines([f"*{test} {what}*but is not marked slow*"])


def test_users_of_a_slow_fixture_are_slow_and_those_sharing_one_run_on_one_worker_so_it_is_made_once(tiers):
    result = tiers.runpytest_subprocess("test_groups.py", "-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=13)  # 9 users of the slow fixtures, 4 marked alone
    assert (
        tiers.runpytest_subprocess("test_groups.py", "-m", "not slow", "--collect-only").ret == 5
    )  # none in the unit tier
    made = sorted(p.name for p in (tiers.path / "made").iterdir())
    # each module-scoped fixture made once, both on the same worker (test_uses_both joins their groups)
    assert [m.split("-")[0] for m in made] == ["other", "trained_once"], made
    assert len({m.split("-")[1] for m in made}) == 1, made

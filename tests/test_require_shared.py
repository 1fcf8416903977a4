"""RECEIPTFLOW_REQUIRE_SHARED: without ../shared, tests that need it skip on a clone and fail in CI.

Each case runs a real pytest in a subprocess on a fake repository (our conftest.py and one test
that asks for the SROIE sample) whose parent holds no shared/ folder, or one with the sample.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SHARED_ENV

CONFTEST = Path(__file__).with_name("conftest.py")
NEEDS_SROIE = """
def test_needs_the_photos(sroie_dir):
    assert (sroie_dir / "img").is_dir()
"""


def run_pytest(parent: Path, require: str | None) -> subprocess.CompletedProcess:
    repo = parent / "repo"
    (repo / "tests").mkdir(parents=True, exist_ok=True)
    shutil.copy(CONFTEST, repo / "tests" / "conftest.py")
    (repo / "tests" / "test_x.py").write_text(NEEDS_SROIE)
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_SHARED_ENV}
    env["COLUMNS"] = "500"  # the -rs summary line is cut to the terminal width
    if require is not None:
        env[REQUIRE_SHARED_ENV] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("require", [None, "", "0"])
def test_absent_shared_folder_skips_when_not_required(tmp_path, require):
    result = run_pytest(tmp_path, require)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and f"shared data folder {tmp_path / 'shared'} is absent" in result.stdout


def test_absent_shared_folder_fails_when_required(tmp_path):
    result = run_pytest(tmp_path, "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert f"shared data folder {tmp_path / 'shared'} is absent" in result.stdout
    assert f"{REQUIRE_SHARED_ENV}=1 requires it: put the team's shared folder at {tmp_path / 'shared'}" in result.stdout


def test_absent_sroie_sample_fails_when_required(tmp_path):
    (tmp_path / "shared" / "data").mkdir(parents=True)  # the folder, but not the photos
    result = run_pytest(tmp_path, "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"SROIE sample {tmp_path / 'shared' / 'data' / 'sroie'} (img/ and box/) is absent" in result.stdout


def test_present_shared_data_runs_when_required(tmp_path):
    for sub in ("img", "box"):
        (tmp_path / "shared" / "data" / "sroie" / sub).mkdir(parents=True)
    result = run_pytest(tmp_path, "1")
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr

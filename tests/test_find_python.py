"""`make setup` takes the interpreter scripts/find-python.sh names: one that pyproject.toml's
requires-python allows, or one line saying what to install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_python(tmp_path: Path, requires: str | None, **env: str) -> subprocess.CompletedProcess:
    """The script on a copy of pyproject.toml, with `requires-python` replaced where given."""
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(REPO / "scripts" / "find-python.sh", tmp_path / "scripts")
    text = (REPO / "pyproject.toml").read_text()
    if requires:
        text = text.replace('requires-python = ">=3.11,<3.12"', f'requires-python = "{requires}"')
    (tmp_path / "pyproject.toml").write_text(text)
    return subprocess.run(
        ["bash", str(tmp_path / "scripts" / "find-python.sh")],
        capture_output=True,
        text=True,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **env},
        timeout=60,
    )


def test_this_interpreter_is_found_for_the_projects_requires_python(tmp_path):
    proc = find_python(tmp_path, None, PYTHON=sys.executable)
    assert proc.returncode == 0 and proc.stdout.strip() == sys.executable, proc.stderr
    found = find_python(tmp_path, None)
    assert found.returncode == 0, found.stderr
    version = subprocess.run(
        [found.stdout.strip(), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    assert version == "(3, 11)"


def test_no_allowed_interpreter_is_one_line_saying_what_to_install(tmp_path):
    proc = find_python(tmp_path, ">=3.97,<3.98")
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("receiptflow: needs Python >=3.97,<3.98 (pyproject.toml requires-python), found ")
    assert "python3 (3.11)" in line and "install Python 3.97" in line and "PYTHON=/path/to/python3.97" in line
    proc = find_python(tmp_path, ">=3.97,<3.98", PYTHON=sys.executable)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert f"PYTHON={sys.executable} is not a Python >=3.97,<3.98" in proc.stderr

"""Shared fixtures: the team's shared data folder (../shared next to the repository root)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
SROIE_DIR = SHARED_DIR / "data" / "sroie"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared relative to the repository root; tests that need it skip where it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent (it lives next to the repository on the team's machines)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def sroie_dir(shared_dir: Path) -> Path:
    """The 120 real SROIE receipts (img/NNN.jpg + box/NNN.csv), see ../shared/data/sroie/README.md."""
    if not (SROIE_DIR / "img").is_dir() or not (SROIE_DIR / "box").is_dir():
        pytest.skip(f"SROIE sample {SROIE_DIR} (img/ and box/) is absent; it is test data only, not shipped")
    return SROIE_DIR


@pytest.fixture(scope="session")
def sroie_root(sroie_dir: Path, tmp_path_factory) -> Path:
    """The SROIE sample converted once per session (seed 42, 0.8/0.1/0.1) into a dataset root."""
    from model.data.convert import convert

    dst = tmp_path_factory.mktemp("sroie_root")
    convert("sroie", sroie_dir, dst, seed=42, strict=True, overwrite=True, progress=False)
    return dst

"""Shared fixtures: the team's shared data folder (../shared next to the repository root), a
synthetic dataset root, a real S3 server.

Tests that need ../shared (the real SROIE photos) skip where it is absent, so a fresh clone runs
everything else. CI sets RECEIPTFLOW_REQUIRE_SHARED=1 (.ci/run): there a missing folder fails
those tests instead, so they can never pass there by skipping.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
SROIE_DIR = SHARED_DIR / "data" / "sroie"
REQUIRE_SHARED_ENV = "RECEIPTFLOW_REQUIRE_SHARED"


def shared_required() -> bool:
    """RECEIPTFLOW_REQUIRE_SHARED set to anything but "" or "0"."""
    return os.environ.get(REQUIRE_SHARED_ENV, "").strip() not in ("", "0")


def missing_shared_data(reason: str):
    """Skip the test, or fail it where CI requires the shared data (RECEIPTFLOW_REQUIRE_SHARED=1)."""
    if shared_required():
        pytest.fail(f"{reason}; {REQUIRE_SHARED_ENV}=1 requires it: put the team's shared folder at {SHARED_DIR}, "
                    f"or unset {REQUIRE_SHARED_ENV} to skip these tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared relative to the repository root; tests that need it skip where it is absent (fail in CI)."""
    if not SHARED_DIR.is_dir():
        missing_shared_data(f"shared data folder {SHARED_DIR} is absent (it lives next to the repository on the team's machines)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def sroie_dir(shared_dir: Path) -> Path:
    """The 120 real SROIE receipts (img/NNN.jpg + box/NNN.csv), see ../shared/data/sroie/README.md.

    Only for what needs real photos: the converter on the real format (test_sroie.py). Tests of
    geometry, targets, datasets and folds use `synth_root`."""
    if not (SROIE_DIR / "img").is_dir() or not (SROIE_DIR / "box").is_dir():
        missing_shared_data(f"SROIE sample {SROIE_DIR} (img/ and box/) is absent; it is test data only, not shipped")
    return SROIE_DIR


@pytest.fixture(scope="session")
def sroie_root(sroie_dir: Path, tmp_path_factory) -> Path:
    """The SROIE sample converted once per session (seed 42, 0.8/0.1/0.1) into a dataset root."""
    from model.data.convert import convert

    dst = tmp_path_factory.mktemp("sroie_root")
    convert("sroie", sroie_dir, dst, seed=42, strict=True, overwrite=True, progress=False)
    return dst


# The synthetic stand-in for the SROIE sample: tests of geometry, targets, datasets, folds and the
# ground-truth round trip prove the same on synthetic receipts (exact word polygons, real JPEGs,
# ~75 words per receipt) and so run on a fresh clone without ../shared. Seeded: the same receipts
# on every run and machine with the same fonts. 24 receipts: 16 train, 4 val, 4 test (~2 s).
SYNTH_N = 24
SYNTH_SEED = 15


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic dataset root written once per session: images/{train,val,test}/ + jsons/{train,val,test}.json.

    `receiptflow synth --n 24 --seed 15` at the default receipt sizes (500-800 x 900-1400 px) and
    splits (0.7/0.15/0.15). Tests must not write into it (it is shared by the whole session).
    """
    from model.data.synth import write_synthetic_dataset

    dst = tmp_path_factory.mktemp("synth_root")
    write_synthetic_dataset(dst, SYNTH_N, seed=SYNTH_SEED, workers=1, progress=False, overwrite=True)
    return dst


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3 server (moto, in a thread) on 127.0.0.1 and a free port, with bucket "receiptflow".

    MINIO_ENDPOINT/MINIO_ACCESS_KEY/MINIO_SECRET_KEY/MINIO_SECURE=false point at it for the test;
    the server stops afterwards. Yields a handle: .endpoint, .bucket, .client() (a plain Minio
    client for inspecting the server), .stop().
    """
    pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")
    from minio import Minio
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()

    class Handle:
        endpoint = f"{host}:{port}"
        access_key = "test-access-key"
        secret_key = "test-secret-key-do-not-log"
        bucket = "receiptflow"
        stopped = False

        def client(self) -> Minio:
            return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

        def stop(self) -> None:
            if not self.stopped:
                self.stopped = True
                server.stop()

    import urllib.request

    # moto keeps its state per process, not per server: start every test from an empty server
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=10)
    handle = Handle()
    monkeypatch.setenv("MINIO_ENDPOINT", handle.endpoint)
    monkeypatch.setenv("MINIO_ACCESS_KEY", handle.access_key)
    monkeypatch.setenv("MINIO_SECRET_KEY", handle.secret_key)
    monkeypatch.setenv("MINIO_SECURE", "false")
    monkeypatch.delenv("MINIO_REGION", raising=False)
    handle.client().make_bucket(handle.bucket)
    try:
        yield handle
    finally:
        handle.stop()

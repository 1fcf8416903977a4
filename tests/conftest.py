"""Shared fixtures: the team's shared data folder (../shared next to the repository root), a
synthetic dataset root, a real S3 server.

Tests that need ../shared (the real SROIE photos) skip where it is absent, so a fresh clone runs
everything else. CI sets RECEIPTFLOW_REQUIRE_SHARED=1 (.ci/run): there a missing folder fails
those tests instead, so they can never pass there by skipping.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

# Before any test module imports torch: kfp builds the pipelines when pipelines.run8_kfold is
# imported, and each task setting calls inspect.stack() (kfp 2.17.3 dsl/pipeline_task.py
# `_ensure_container_spec_exists`), whose cost grows with sys.modules: 1 s now, 5 s once torch,
# timm and albumentations are loaded. Imported once here, every test module finds it built.
import pipelines.run8_kfold  # noqa: E402,F401

pytest_plugins = ["pytester"]  # tests/test_tiers.py

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
        pytest.fail(
            f"{reason}; {REQUIRE_SHARED_ENV}=1 requires it: put the team's shared folder at {SHARED_DIR}, "
            f"or unset {REQUIRE_SHARED_ENV} to skip these tests",
            pytrace=False,
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared relative to the repository root; tests that need it skip where it is absent (fail in CI)."""
    if not SHARED_DIR.is_dir():
        missing_shared_data(
            f"shared data folder {SHARED_DIR} is absent (it lives next to the repository on the team's machines)"
        )
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


# --- tiers -------------------------------------------------------------------------------------
# `make test-fast` runs `-m "not slow"`: the unit tier. A test is `slow` when it trains a model,
# runs a pipeline (kfp.local) or builds a wheel, and the rule is kept by the code, not by lists:
#   - a fixture that does such work is declared with `@slow_fixture`; every test that uses it,
#     directly or through another fixture, is marked slow at collection;
#   - a test that does it in its own body carries `@pytest.mark.slow` (or its module `pytestmark`);
#   - a test that is not marked and still trains, runs a pipeline or builds a wheel fails, naming
#     what it started (`_unmarked_tests_stay_units`), in `make test` as in `make test-fast`.
_SLOW = "_receiptflow_slow"


def slow_fixture(fn=None, **kwargs):
    """`pytest.fixture` for a fixture that trains, runs a pipeline or builds a wheel.

    Its tests are marked `slow`; when its scope is wider than one test, the tests sharing it run on
    one xdist worker (`make test` -n auto --dist loadgroup), so it is made once, not once per worker."""

    def wrap(f):
        setattr(f, _SLOW, True)
        return pytest.fixture(**kwargs)(f)

    return wrap(fn) if fn is not None else wrap


def _slow_fixturedefs(item) -> list:
    info = getattr(item, "_fixtureinfo", None)
    defs = [d for ds in (info.name2fixturedefs.values() if info else ()) for d in ds]
    return [d for d in defs if getattr(d.func, _SLOW, False)]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    parent: dict[str, str] = {}  # union-find over the shared slow fixtures: tests sharing any run together

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared_by_item = {}
    for item in items:
        defs = _slow_fixturedefs(item)
        if defs:
            item.add_marker(pytest.mark.slow)
        shared = [f"{d.baseid}::{d.argname}" for d in defs if d.scope != "function"]
        for key in shared[1:]:
            parent[find(key)] = find(shared[0])
        shared_by_item[item] = shared
    for item, shared in shared_by_item.items():
        if shared:
            item.add_marker(pytest.mark.xdist_group(find(shared[0])))


# What an unmarked test may not start: found in a subprocess's command line (a `sh -c` script too)
_SLOW_WORK = [
    (re.compile(r"(?:model\.cli|\breceiptflow)\s+train\b|torch\.distributed\.run|\btorchrun\b"), "trains a model"),
    (re.compile(r"(?:model\.cli|\breceiptflow)\s+pipeline\s+run\b|kfp\.dsl\.executor_main"), "runs a pipeline"),
    (re.compile(r"\bpip\s+(?:wheel|install|download)\b|-m\s+build\b"), "builds or installs a wheel"),
]


@pytest.fixture(autouse=True)
def _unmarked_tests_stay_units(request, monkeypatch):
    """Fail a test that is not marked slow and starts slow work (see "tiers" above)."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    started: list[tuple[str, bool]] = []  # (what, raised in the test's own thread)

    def refuse(what: str) -> None:
        started.append((what, threading.current_thread() is threading.main_thread()))
        pytest.fail(
            f"{request.node.nodeid} {what} but is not marked slow: mark it @pytest.mark.slow, or take the "
            "work from a @slow_fixture (tests/conftest.py, tiers)",
            pytrace=False,
        )

    real_init = subprocess.Popen.__init__

    def popen_init(self, args, *a, **kw):
        line = args if isinstance(args, (str, bytes)) else " ".join(map(str, args))
        for pattern, what in _SLOW_WORK:
            if pattern.search(str(line)):
                refuse(f"{what} ({str(line)[:120]})")
        real_init(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)
    if "model.train" in sys.modules:  # in process (`main(["train", ...])`, components): where an epoch starts,
        # so that a test of what train() refuses before any epoch stays a unit
        monkeypatch.setattr(
            sys.modules["model.train"],
            "_progress",
            lambda *a, **kw: refuse("trains a model (an epoch of model.train.train)"),
        )
    yield
    elsewhere = [what for what, main in started if not main]  # raised in another thread, maybe swallowed there
    if elsewhere:
        pytest.fail(f"{request.node.nodeid} {elsewhere[0]} but is not marked slow", pytrace=False)


@slow_fixture(scope="session")
def learned(tmp_path_factory):
    """The session's detector that has learned (tests/learned.py): trained once, on one worker."""
    from tests.learned import learned_run

    return learned_run(tmp_path_factory)

"""Object-store faults end to end (issue 8), against a real S3 server on loopback (moto) reached
through TCP proxies that misbehave: the server vanishes mid-download, answers too slowly, a bucket
is missing, the server vanishes mid-publish, the training's checkpoint mirror is unreachable.

Each fault must give bounded retries, then one clear DataError naming the s3:// URI; nothing
partial under a final key or a final local name; and a rerun against a healthy server completes.
The mid-upload cut, nothing listening and wrong credentials are in tests/test_storage.py."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model import s3, storage
from model.errors import DataError
from model.storage import LOCAL_TMP_SUFFIX, TMP_PREFIX, download, upload
from tests.test_storage import CuttingProxy, LoopbackProxy, keys, make_root, read_tree, shut

_sleep = time.sleep  # the proxies' own waits (the `sleeps` fixture patches time.sleep, which storage shares)
REQUEST_LINE = re.compile(rb"^(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/1\.[01]\r\n")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(s3, "BACKOFF_S", 0.01)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Every backoff sleep storage takes (it still sleeps): one per retry."""
    taken: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(s3.time, "sleep", lambda s: (taken.append(s), real_sleep(s)))
    return taken


def blob(n: int, seed: int = 0) -> bytes:
    """n pseudo-random bytes (not one repeated byte: a truncated copy can never look right)."""
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def upstream(s3_server) -> tuple[str, int]:
    host, port = s3_server.endpoint.split(":")
    return host, int(port)


class FaultProxy(LoopbackProxy):
    """A TCP proxy to the S3 server whose faults hit the response (downstream) direction.

    - ``vanish_after=N``: once more than N response bytes went down (all connections together),
      drop every connection and stop listening: the server is gone in the middle of a download.
    - ``cut_each_after=N``: drop each connection once it carried more than N response bytes, but
      keep listening: every try is cut mid-body (a flaky server).
    - ``delay=s`` with ``slow=re``: hold the response to every request whose ``METHOD path``
      matches ``slow`` for `s` seconds before forwarding it (a server slower than the read timeout).
      Both may be changed while the proxy runs (``proxy.delay = 0`` heals it).
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        vanish_after: int | None = None,
        cut_each_after: int | None = None,
        delay: float = 0.0,
        slow: str = ".*",
    ):
        self.vanish_after, self.cut_each_after = vanish_after, cut_each_after
        self.delay, self.slow = delay, re.compile(slow)
        self.down = 0  # response bytes forwarded, all connections
        self.delayed = 0  # responses held back
        self.requests: list[str] = []
        super().__init__(upstream)

    def _connect(self, client: socket.socket, server: socket.socket) -> None:
        conn = {"down": 0, "hold": False}
        threading.Thread(target=self._up, args=(client, server, conn), daemon=True).start()
        threading.Thread(target=self._down, args=(server, client, conn), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, conn: dict):
        try:
            while data := client.recv(65536):
                if m := REQUEST_LINE.match(data):
                    line = f"{m.group(1).decode()} {m.group(2).decode()}"
                    with self.lock:
                        self.requests.append(line)
                    conn["hold"] = bool(self.delay) and bool(self.slow.search(line))
                server.sendall(data)
        except OSError:
            pass
        finally:
            shut(client, server)

    def _down(self, server: socket.socket, client: socket.socket, conn: dict):
        try:
            while data := server.recv(65536):
                if conn["hold"]:
                    conn["hold"] = False
                    with self.lock:
                        self.delayed += 1
                    _sleep(self.delay)
                if self.vanish_after is not None and self.down + len(data) > self.vanish_after:
                    keep = max(0, self.vanish_after - self.down)  # deliver exactly up to the limit
                    client.sendall(data[:keep])
                    self.down += keep
                    self.close()
                    return
                if self.cut_each_after is not None and conn["down"] + len(data) > self.cut_each_after:
                    keep = max(0, self.cut_each_after - conn["down"])
                    client.sendall(data[:keep])
                    self.down += keep
                    return
                client.sendall(data)
                conn["down"] += len(data)
                with self.lock:
                    self.down += len(data)
        except OSError:
            pass
        finally:
            shut(client, server)


def parts(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(LOCAL_TMP_SUFFIX)] if root.exists() else []


def final_keys(s3_server, prefix: str = "") -> list[str]:
    return [k for k in keys(s3_server, prefix) if TMP_PREFIX not in k.split("/")]


def get(s3_server, key: str) -> bytes:
    response = s3_server.client().get_object(s3_server.bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


# ------------------------------------------------------------------- 1. server gone mid-download


BIG = blob(4 * 1024 * 1024, seed=1)
DS = {"a_small.txt": b"small file", "big.bin": BIG, "z_last.txt": b"last"}


def test_server_gone_mid_download_retries_then_names_the_object_and_a_rerun_completes(
    s3_server, tmp_path, monkeypatch, sleeps
):
    upload(make_root(tmp_path / "src", DS), f"s3://{s3_server.bucket}/ds", progress=False)
    proxy = FaultProxy(upstream(s3_server), vanish_after=1024 * 1024)  # a quarter of big.bin, then gone
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    dst = tmp_path / "dst"
    uri = f"s3://{s3_server.bucket}/ds/big.bin"
    with pytest.raises(DataError) as info:
        download(uri, dst / "big.bin", progress=False)
    proxy.close()
    message = str(info.value)
    assert message.startswith(
        f"{uri} -> {dst / 'big.bin'}: failed after {s3.ATTEMPTS} attempts against {proxy.endpoint}"
    )
    assert "\n" not in message and s3_server.secret_key not in message
    assert len(sleeps) == s3.ATTEMPTS - 1 and sleeps == sorted(sleeps)  # bounded, exponential backoff
    assert proxy.down == 1024 * 1024  # the cut really came in the middle of the body
    assert not (dst / "big.bin").exists() and parts(dst) == []  # no partial file, no leftover part file

    monkeypatch.setenv("MINIO_ENDPOINT", s3_server.endpoint)  # the server is reachable again
    report = download(uri, dst / "big.bin", progress=False)
    assert report.transferred == ["big.bin"]
    assert (dst / "big.bin").read_bytes() == BIG and parts(dst) == []


def test_every_try_cut_mid_body_keeps_the_previous_local_file_and_a_folder_rerun_completes(
    s3_server, tmp_path, monkeypatch, sleeps
):
    """A flaky server that cuts each connection mid-body: every try writes a part file, none survives,
    and an older local copy under the final name is left exactly as it was."""
    upload(make_root(tmp_path / "src", DS), f"s3://{s3_server.bucket}/ds", progress=False)
    dst = make_root(tmp_path / "dst", {"big.bin": b"old version"})
    proxy = FaultProxy(upstream(s3_server), cut_each_after=512 * 1024)
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    with pytest.raises(DataError) as info:
        download(f"s3://{s3_server.bucket}/ds", dst, workers=1, progress=False)
    message = str(info.value)
    assert message.startswith(
        f"s3://{s3_server.bucket}/ds/big.bin -> {dst / 'big.bin'}: failed after {s3.ATTEMPTS} attempts"
    )
    assert len(sleeps) == s3.ATTEMPTS - 1
    assert sum(r == f"GET /{s3_server.bucket}/ds/big.bin" for r in proxy.requests) == s3.ATTEMPTS
    assert (dst / "big.bin").read_bytes() == b"old version" and parts(dst) == []
    assert (dst / "a_small.txt").read_bytes() == DS["a_small.txt"]  # finished before the fault: complete
    assert not (dst / "z_last.txt").exists()  # the first failure starts nothing more
    proxy.close()

    monkeypatch.setenv("MINIO_ENDPOINT", s3_server.endpoint)
    report = download(f"s3://{s3_server.bucket}/ds", dst, workers=1, progress=False)
    assert report.transferred == ["big.bin", "z_last.txt"] and report.skipped == ["a_small.txt"]
    assert read_tree(dst) == DS


# --------------------------------------------------------------------------- 2. slow responses


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(s3, "READ_TIMEOUT_S", 0.5)


def test_slow_download_times_out_boundedly_then_completes_when_the_server_is_fast_again(
    s3_server, tmp_path, monkeypatch, sleeps
):
    upload(make_root(tmp_path / "src", DS), f"s3://{s3_server.bucket}/ds", progress=False)
    # the short read timeout only from here: on a loaded machine the upload itself can take longer
    # than 0.5 s a request, and its retries are not the ones this test counts
    monkeypatch.setattr(s3, "READ_TIMEOUT_S", 0.5)
    sleeps.clear()
    proxy = FaultProxy(upstream(s3_server), delay=1.5, slow=rf"^GET /{s3_server.bucket}/ds/big\.bin")
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    dst = tmp_path / "dst"
    uri = f"s3://{s3_server.bucket}/ds/big.bin"
    with pytest.raises(DataError) as info:  # a try that waited out the 1.5 s delay would have succeeded
        download(uri, dst / "big.bin", progress=False)
    message = str(info.value)
    assert message.startswith(f"{uri} -> {dst / 'big.bin'}: failed after {s3.ATTEMPTS} attempts")
    assert "ReadTimeoutError" in message and "\n" not in message
    assert len(sleeps) == s3.ATTEMPTS - 1 and proxy.delayed == s3.ATTEMPTS
    assert not (dst / "big.bin").exists() and parts(dst) == []

    proxy.delay = 0  # the server is fast again: the same call completes through the same proxy
    assert download(uri, dst / "big.bin", progress=False).transferred == ["big.bin"]
    assert (dst / "big.bin").read_bytes() == BIG and parts(dst) == []
    proxy.close()


def test_slow_upload_times_out_boundedly_leaves_no_final_key_then_completes(
    s3_server, tmp_path, monkeypatch, sleeps, short_timeout
):
    src = make_root(tmp_path / "src", {"a.txt": b"a", "big.bin": BIG})
    # every PUT under run/ answers too late, though the server did store what it got: an upload that wrote
    # its final key directly would leave one behind after reporting failure; a temporary must be dropped instead
    proxy = FaultProxy(upstream(s3_server), delay=1.5, slow=rf"^PUT /{s3_server.bucket}/run/")
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    uri = f"s3://{s3_server.bucket}/run"
    with pytest.raises(DataError) as info:
        upload(src, uri, workers=1, progress=False)
    message = str(info.value)
    assert message.startswith(f"{src / 'a.txt'} -> {uri}/a.txt: failed after {s3.ATTEMPTS} attempts")
    assert "ReadTimeoutError" in message
    assert len(sleeps) == s3.ATTEMPTS - 1 and proxy.delayed == s3.ATTEMPTS  # big.bin never started
    _sleep(0.2)  # let the server finish the delayed PUTs it already received
    assert final_keys(s3_server) == []  # no final key: nothing was copied into place
    assert keys(s3_server) == []  # and every temporary was removed after each failed try

    proxy.delay = 0
    report = upload(src, uri, workers=1, progress=False)
    assert report.transferred == ["a.txt", "big.bin"]
    assert keys(s3_server) == ["run/a.txt", "run/big.bin"] and get(s3_server, "run/big.bin") == BIG
    proxy.close()


# ---------------------------------------------------------------------------- 3. missing bucket


def test_missing_bucket_is_one_error_before_any_transfer_and_no_retry(s3_server, tmp_path, sleeps):
    src = make_root(tmp_path / "src", DS)
    calls = {
        "s3://no-such-bucket/run": lambda uri: upload(src, uri, progress=False),
        "s3://no-such-bucket/ds": lambda uri: download(uri, tmp_path / "dst", progress=False),
        "s3://no-such-bucket/ds/big.bin": lambda uri: download(uri, tmp_path / "one.bin", progress=False),
        "s3://no-such-bucket": lambda uri: download(uri, tmp_path / "dst", progress=False),
    }
    for uri, call in calls.items():
        with pytest.raises(DataError) as info:
            call(uri)
        whole = "" if uri == "s3://no-such-bucket" else f" (for {uri})"
        assert str(info.value) == f"s3://no-such-bucket: bucket does not exist on {s3_server.endpoint}{whole}"
    assert sleeps == []  # not retried
    assert not (tmp_path / "dst").exists() and not (tmp_path / "one.bin").exists()
    assert [b.name for b in s3_server.client().list_buckets()] == [s3_server.bucket]  # never created
    assert keys(s3_server) == []


# ---------------------------------------------------------------------------------- 4. publish


def tiny_checkpoint(path: Path, seed: int) -> None:
    """A real (untrained) cpu_tiny checkpoint: publish exports every best.pt to ONNX."""
    import torch
    from omegaconf import OmegaConf

    from model.checkpoint import save_checkpoint
    from model.config import load_config
    from model.net import build_model

    cfg = load_config(["preset=cpu_tiny"])
    torch.manual_seed(seed)
    save_checkpoint(path, {"model": build_model(cfg.models).state_dict(), "config": OmegaConf.to_container(cfg)})


FUSED = {
    "method": "maps",
    "folds": [1, 0],
    "thresh": 0.29,
    "box_thresh": 0.25,
    "calibration": "val",
}  # the ensemble's choice


def publish_inputs(root: Path) -> dict:
    from kfp.dsl import Artifact, Markdown, Metrics, Model

    def art(cls, name: str, path: Path, **kw):
        a = cls(name=name, uri=f"file://{path}", **kw)
        a.path = str(path)
        return a

    files = {
        "submission.csv": b"image,points\n" + blob(200_000, seed=2).hex().encode()[:300_000],
        "ensemble.json": json.dumps({"images": {f"{i:03d}.jpg": {"words": {}} for i in range(50)}}).encode(),
        "decision.md": "# Decision\n\nRun 8 kept (acceptable).\n".encode(),
        "data_report.md": "# Dataset\n\n- images/train/007.jpg: not a decodable image\n".encode(),
        "ensemble_report.md": "# Ensemble\n\nMethod: **fold 0 alone**\n".encode(),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    models = {}
    for i, (task, fold) in enumerate([("replication", -1), ("fold_0", 0), ("fold_1", 1)]):
        d = root / task
        d.mkdir()
        tiny_checkpoint(d / "best.pt", seed=10 + i)  # ~0.65 MB; publish adds its ~0.6 MB model.onnx
        (d / "metrics.jsonl").write_text(
            "".join(json.dumps({"epoch": e, "val/hmean": 0.9 + e / 100}) + "\n" for e in (1, 2))
        )
        (d / "summary.json").write_text(
            json.dumps(
                {
                    "task": task,
                    "fold": fold,
                    "history": [{"epoch": 1}, {"epoch": 2}],
                    "best": {"epoch": 2, "val/hmean": 0.92, "val/precision": 0.93, "val/recall": 0.91},
                }
            )
        )
        models[task] = art(Model, task, d)
    return dict(
        submission=art(Artifact, "submission", root / "submission.csv"),
        fused=art(Artifact, "fused", root / "ensemble.json", metadata=FUSED),
        replication=models["replication"],
        models=[models["fold_0"], models["fold_1"]],
        decision=art(Markdown, "decision", root / "decision.md"),
        data_report=art(Markdown, "data_report", root / "data_report.md"),
        ensemble_report=art(Markdown, "ensemble_report", root / "ensemble_report.md"),
        ensemble_metrics=art(
            Metrics,
            "ensemble_metrics",
            root / "ensemble_metrics.json",
            metadata={
                "test/hmean_fold_0": 0.95,
                "test/hmean_fold_1": 0.94,
                "test/hmean_ensemble": 0.96,
                "test/hmean_best_fold": 0.95,
            },
        ),
    )


def expected_publication(root: Path, summary_md: Path) -> dict[str, bytes]:
    out = {name: (root / name).read_bytes() for name in ("submission.csv", "ensemble.json", "decision.md")}
    out["summary.md"] = summary_md.read_bytes()
    from model.calibrate import deployment
    from model.onnx_model import export

    for task in ("replication", "fold_0", "fold_1"):
        for name in ("best.pt", "metrics.jsonl", "summary.json"):
            out[f"models/{task}/{name}"] = (root / task / name).read_bytes()
        export(root / task / "best.pt", summary_md.parent / f"{task}.onnx")  # the export is deterministic
        out[f"models/{task}/model.onnx"] = (summary_md.parent / f"{task}.onnx").read_bytes()
    out["models/ensemble.json"] = (json.dumps(deployment(FUSED, ["fold_0", "fold_1"]), indent=1) + "\n").encode()
    return out


def test_server_gone_mid_publish_leaves_no_partial_object_and_a_rerun_publishes_everything(
    s3_server, tmp_path, monkeypatch, sleeps
):
    from kfp.dsl import Markdown

    from components.publish import publish

    root = tmp_path / "artifacts"
    root.mkdir()
    inputs = publish_inputs(root)
    prefix = f"s3://{s3_server.bucket}/runs/r1"
    proxy = CuttingProxy(upstream(s3_server), limit=1536 * 1024)  # mid-way through ~3.4 MiB
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    summary = Markdown(name="summary", uri="file://summary")
    summary.path = str(tmp_path / "summary-1.md")
    with pytest.raises(DataError) as info:
        publish.python_func(**inputs, output_uri=f"s3://{s3_server.bucket}", run_id="r1", job_id="job", summary=summary)
    proxy.close()
    message = str(info.value)
    assert "\n" not in message and s3_server.secret_key not in message
    assert re.search(
        rf"-> {re.escape(prefix)}/\S+: failed after {s3.ATTEMPTS} attempts against {proxy.endpoint}", message
    ), message
    assert 0 < len(sleeps) <= storage.DEFAULT_WORKERS * (s3.ATTEMPTS - 1)  # bounded per object and overall
    expected = expected_publication(root, Path(summary.path))
    published = final_keys(s3_server, "runs/r1/")
    assert len(published) < len(expected)  # the cut really stopped the publication
    for key in published:  # whatever is under a final key is whole
        assert get(s3_server, key) == expected[key.removeprefix("runs/r1/")], key

    monkeypatch.setenv("MINIO_ENDPOINT", s3_server.endpoint)
    summary.path = str(tmp_path / "summary-2.md")
    got = publish.python_func(
        **inputs, output_uri=f"s3://{s3_server.bucket}", run_id="r1", job_id="job", summary=summary
    )
    assert got == prefix
    assert expected_publication(root, Path(summary.path)) == expected
    assert final_keys(s3_server, "runs/r1/") == sorted(f"runs/r1/{k}" for k in expected)
    for key, data in expected.items():
        assert get(s3_server, f"runs/r1/{key}") == data, key
    dst = tmp_path / "pulled"
    download(f"{prefix}/", dst, progress=False)  # temporaries a cut left behind are never pulled
    assert read_tree(dst) == expected


# ------------------------------------------------------------------- 5. training's checkpoint mirror


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from model.data.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(
        root, 8, seed=5, splits=(0.5, 0.25, 0.25), workers=1, width=(300, 340), height=(420, 480), progress=False
    )
    return root


def dead_endpoint() -> str:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


@pytest.mark.slow
@pytest.mark.parametrize("resume", ["auto", "never"])
def test_training_with_its_checkpoint_mirror_unreachable_stops_with_one_clear_line(tiny_data, tmp_path, resume):
    """resume=auto checks the mirror before training; resume=never meets it at the first epoch's sync."""
    from tests.test_train import REPO, args

    endpoint = dead_endpoint()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "MINIO_ENDPOINT": endpoint,
        "MINIO_ACCESS_KEY": "test-access-key",
        "MINIO_SECRET_KEY": "test-secret-key-do-not-log",
        "MINIO_SECURE": "false",
        "HOME": str(tmp_path),
    }
    argv = args(
        tiny_data,
        tmp_path / "run",
        "trainer.max_epochs=1",
        "models.scheduler.T_max=1",
        "checkpoint_mirror=s3://receiptflow/m",
        f"resume={resume}",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "model.cli", "train", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("receiptflow train: error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(
        f"receiptflow train: error: s3://receiptflow: failed after {s3.ATTEMPTS} attempts against {endpoint}: "
    )
    mirror = "s3://receiptflow/m/last.pt" if resume == "auto" else "s3://receiptflow/m"  # what it was reaching for
    assert errors[0].endswith(f"Connection refused (for {mirror})"), errors[0]
    assert "test-secret-key-do-not-log" not in proc.stderr + proc.stdout
    if resume == "never":  # it trained one epoch, kept its checkpoints locally, then could not mirror them
        assert (tmp_path / "run" / "last.pt").exists()
    else:  # it stopped before training
        assert not (tmp_path / "run" / "last.pt").exists()

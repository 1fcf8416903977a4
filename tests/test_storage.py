"""Storage: s3:// push/pull against a real S3 server on loopback (moto), and local copies."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from model import s3, storage
from model.errors import DataError
from model.storage import TMP_PREFIX, check_key, download, is_remote, parse_uri, upload

FILES = {
    "images/train/a.jpg": b"\xff\xd8jpeg-a" * 100,
    "images/train/영수증_1.png": b"\x89PNG" + bytes(range(256)) * 20,
    "images/val/deep/nested/ü b.jpg": b"nested",
    "jsons/train.json": '{"images": {"영수증": {}}}'.encode(),
    "empty.txt": b"",
}


def make_root(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def keys(s3_server, prefix: str = "") -> list[str]:
    return sorted(
        o.object_name for o in s3_server.client().list_objects(s3_server.bucket, prefix=prefix, recursive=True)
    )


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(s3, "BACKOFF_S", 0.01)


def test_uris_and_keys():
    assert is_remote("s3://b/k") and not is_remote("/tmp/x") and not is_remote(Path("s3:/b"))
    assert parse_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert parse_uri("s3://bucket") == ("bucket", "")
    for bad in ("../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "C:/x", ".."):
        with pytest.raises(DataError, match="unsafe key"):
            check_key(bad, "test")
    with pytest.raises(DataError, match="unsafe key"):
        parse_uri("s3://bucket/../x")
    with pytest.raises(DataError, match="not an s3:// URI"):
        parse_uri("/local/path")


def test_missing_environment_names_the_variable(tmp_path, monkeypatch):
    make_root(tmp_path / "src")
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    monkeypatch.setenv("MINIO_ACCESS_KEY", "k")
    monkeypatch.setenv("MINIO_SECRET_KEY", "s")
    with pytest.raises(DataError, match="MINIO_ENDPOINT is not set"):
        upload(tmp_path / "src", "s3://b/x", progress=False)


def test_push_pull_round_trip_and_skip(s3_server, tmp_path):
    src = make_root(tmp_path / "src")
    report = upload(src, f"s3://{s3_server.bucket}/datasets/v1", workers=3, progress=False)
    assert sorted(report.transferred) == sorted(FILES) and not report.skipped
    assert report.bytes_transferred == sum(map(len, FILES.values()))
    assert keys(s3_server) == sorted(f"datasets/v1/{k}" for k in FILES)  # no temporaries left
    stat = s3_server.client().stat_object(s3_server.bucket, "datasets/v1/jsons/train.json")
    assert len(stat.metadata["x-amz-meta-sha256"]) == 64

    again = upload(src, f"s3://{s3_server.bucket}/datasets/v1/", workers=3, progress=False)
    assert not again.transferred and sorted(again.skipped) == sorted(FILES)

    dst = tmp_path / "dst"
    pulled = download(f"s3://{s3_server.bucket}/datasets/v1", dst, workers=3, progress=False)
    assert sorted(pulled.transferred) == sorted(FILES)
    assert read_tree(dst) == FILES
    assert not download(f"s3://{s3_server.bucket}/datasets/v1", dst, progress=False).transferred

    # a changed local file (same size) is downloaded again; a single object pulls into a folder
    (dst / "jsons/train.json").write_bytes(b"x" * len(FILES["jsons/train.json"]))
    assert download(f"s3://{s3_server.bucket}/datasets/v1", dst, progress=False).transferred == ["jsons/train.json"]
    assert read_tree(dst) == FILES
    single = tmp_path / "single"
    single.mkdir()
    download(f"s3://{s3_server.bucket}/datasets/v1/images/train/영수증_1.png", single, progress=False)
    assert (single / "영수증_1.png").read_bytes() == FILES["images/train/영수증_1.png"]


def test_cli_push_pull(s3_server, tmp_path, capsys):
    from model.cli import main

    src = make_root(tmp_path / "src")
    uri = f"s3://{s3_server.bucket}/cli"
    assert main(["data", "push", str(src), uri, "--workers", "2", "--no-progress"]) == 0
    assert f"uploaded {len(FILES)} file(s)" in capsys.readouterr().out
    assert main(["data", "push", str(src), uri, "--no-progress"]) == 0
    assert "uploaded 0 file(s)" in capsys.readouterr().out
    assert main(["data", "pull", uri, str(tmp_path / "dst"), "--no-progress"]) == 0
    assert read_tree(tmp_path / "dst") == FILES
    assert main(["data", "pull", f"s3://{s3_server.bucket}/nothing-here", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "no objects under this prefix" in capsys.readouterr().err


class LoopbackProxy:
    """A TCP proxy on a free loopback port to the S3 server; a subclass's `_connect` decides how
    the bytes of each client/server connection pair flow (and when they stop)."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream, self.gone, self.lock = upstream, threading.Event(), threading.Lock()
        self.socks: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.gone.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.socks += [client, server]
            self._connect(client, server)

    def _connect(self, client: socket.socket, server: socket.socket) -> None:
        raise NotImplementedError

    def close(self):
        """Drop every connection and stop listening: the server is gone."""
        self.gone.set()
        self.listener.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            shut(s)
            s.close()


def shut(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class CuttingProxy(LoopbackProxy):
    """Drops every connection, and stops listening, once more than `limit` bytes went upstream:
    the server vanishes in the middle of an upload."""

    def __init__(self, upstream: tuple[str, int], limit: int):
        self.limit, self.sent = limit, 0
        super().__init__(upstream)

    def _connect(self, client: socket.socket, server: socket.socket) -> None:
        threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, upstream: bool):
        try:
            while data := a.recv(65536):
                if upstream:
                    with self.lock:
                        self.sent += len(data)
                        over = self.sent > self.limit
                    if over:
                        self.close()
                        return
                b.sendall(data)
        except OSError:
            pass
        finally:
            shut(a, b)


def test_server_gone_mid_upload_retries_then_clear_error(s3_server, tmp_path, monkeypatch):
    src = make_root(tmp_path / "src", {"a_small.txt": b"small", "b_big.bin": b"\x01" * (2 * 1024 * 1024)})
    host, port = s3_server.endpoint.split(":")
    proxy = CuttingProxy((host, int(port)), limit=1024 * 1024)  # cut halfway through b_big.bin
    monkeypatch.setenv("MINIO_ENDPOINT", proxy.endpoint)
    tries = []
    real_sleep = time.sleep
    monkeypatch.setattr(s3.time, "sleep", lambda s: (tries.append(s), real_sleep(s)))
    with pytest.raises(DataError) as info:
        upload(src, f"s3://{s3_server.bucket}/run", workers=1, progress=False)
    proxy.close()
    message = str(info.value)
    assert "b_big.bin" in message and f"s3://{s3_server.bucket}/run/b_big.bin" in message
    assert f"after {s3.ATTEMPTS} attempts" in message and "\n" not in message
    assert len(tries) == s3.ATTEMPTS - 1 and tries == sorted(tries)  # exponential backoff
    assert s3_server.secret_key not in message
    # the file before the cut is complete; nothing of the big one is visible, no temporary left
    assert keys(s3_server) == ["run/a_small.txt"]


def test_nothing_listening_is_a_clear_error(s3_server, tmp_path, monkeypatch):
    src = make_root(tmp_path / "src", {"a.txt": b"a"})
    s3_server.stop()
    with pytest.raises(DataError, match=rf"s3://{s3_server.bucket}: failed after {s3.ATTEMPTS} attempts against"):
        upload(src, f"s3://{s3_server.bucket}/x", progress=False)


def test_wrong_credentials_one_error_before_any_work(s3_server, tmp_path, monkeypatch):
    import moto.settings
    from moto.core.authorization import ActionAuthenticatorMixin

    src = make_root(tmp_path / "src")
    sleeps = []  # every backoff storage would take before a retry
    monkeypatch.setattr(s3.time, "sleep", sleeps.append)
    monkeypatch.setenv("MINIO_SECRET_KEY", "wrong-secret-xyz")
    with monkeypatch.context() as m:  # moto checks signatures against its IAM users from now on
        m.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        m.setattr(ActionAuthenticatorMixin, "request_count", 0)
        with pytest.raises(DataError) as info:
            upload(src, f"s3://{s3_server.bucket}/x", progress=False)
        with pytest.raises(DataError, match="MINIO_ACCESS_KEY/MINIO_SECRET_KEY rejected by"):
            download(f"s3://{s3_server.bucket}/x", tmp_path / "dst", progress=False)
    assert sleeps == []  # neither was retried
    message = str(info.value)
    assert message.startswith(f"MINIO_ACCESS_KEY/MINIO_SECRET_KEY rejected by {s3_server.endpoint}")
    assert "wrong-secret-xyz" not in message and s3_server.access_key not in message
    assert keys(s3_server) == []
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("bad", ["a/../../evil.txt", "/evil.txt", "..\\..\\evil.txt"])
def test_unsafe_keys_rejected_before_any_download(s3_server, tmp_path, bad):
    import io

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3_server.client().put_object(s3_server.bucket, "ds/good.txt", io.BytesIO(b"good"), 4)
    # the minio client refuses to write such keys, other S3 clients do not: put it into the server directly
    s3_backends[DEFAULT_ACCOUNT_ID]["global"].put_object(s3_server.bucket, f"ds/{bad}", b"evil")
    assert f"ds/{bad}" in keys(s3_server)
    dst = tmp_path / "deep" / "dst"
    with pytest.raises(DataError, match="unsafe key"):
        download(f"s3://{s3_server.bucket}/ds", dst, progress=False)
    assert not dst.exists() and not list(tmp_path.rglob("*evil*"))  # checked before any transfer
    with pytest.raises(DataError, match="unsafe key"):
        download(f"s3://{s3_server.bucket}/../x", dst, progress=False)
    with pytest.raises(DataError, match="unsafe key"):
        upload(make_root(tmp_path / "src", {"a.txt": b"a"}), f"s3://{s3_server.bucket}/a/../../x", progress=False)


def test_hidden_temporaries_are_not_downloaded(s3_server, tmp_path):
    import io

    s3_server.client().put_object(s3_server.bucket, f"ds/{TMP_PREFIX}/0123", io.BytesIO(b"half"), 4)
    s3_server.client().put_object(s3_server.bucket, "ds/x.txt", io.BytesIO(b"x"), 1)
    download(f"s3://{s3_server.bucket}/ds", tmp_path / "dst", progress=False)
    assert read_tree(tmp_path / "dst") == {"x.txt": b"x"}


def test_local_to_local_copy(tmp_path, monkeypatch):
    for name in ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)  # no server needed
    src = make_root(tmp_path / "src")
    first = upload(src, tmp_path / "copy", progress=False)
    assert sorted(first.transferred) == sorted(FILES) and read_tree(tmp_path / "copy") == FILES
    second = download(src, str(tmp_path / "copy"), progress=False)
    assert not second.transferred and len(second.skipped) == len(FILES)
    assert not list((tmp_path / "copy").rglob(f"*{storage.LOCAL_TMP_SUFFIX}"))
    with pytest.raises(DataError, match="inside the source folder"):
        upload(src, src / "sub", progress=False)

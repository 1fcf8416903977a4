"""Storage with a key scoped to one prefix, as Kubeflow 1.11 gives each profile (issue 12, item 7).

Kubeflow 1.11's profile controller gives each namespace a SeaweedFS key with the IAM policy
Allow s3:Put*/Get*/List* on `mlpipeline/{artifacts,private-artifacts/<ns>,private/<ns>,shared}/*`
and no bucket-level right (kubeflow/manifests v1.11.0, applications/pipeline/upstream/base/
installs/multi-user/pipelines-profile-controller/sync.py:356-377; SeaweedFS image 4.00,
third-party/seaweedfs/base/seaweedfs/seaweedfs-deployment.yaml:32). SeaweedFS 4.00 turns that
policy into Write/Read/List on the prefix (weed/iamapi/iamapi_management_handlers.go:31-35,
314-349) and authorises PUT, copy and DELETE of an object as Write, GET/HEAD as Read, a listing
as List on `bucket/prefix`, and HeadBucket/GetBucketLocation as Read on the bucket itself, which
such a key lacks (weed/s3api/s3api_server.go:299-322, 351, 380-383, 403-407; canDo in
weed/s3api/auth_credentials.go:485-567).

Here a real S3 server (moto's, in its own process on a loopback port) enforces the same rights
as IAM: the sync.py actions on `mlpipeline/private/<ns>/*` plus s3:DeleteObject (SeaweedFS grants
DELETE with Write), and s3:ListBucket on the bucket limited to that prefix by an `s3:prefix`
condition. One difference: moto evaluates no S3 condition (moto/iam/policy_conditions.py
verify_condition passes when the request supplies no value, and S3 requests supply none), so here
a listing is allowed anywhere in `mlpipeline`, where SeaweedFS allows it only under the prefix.

The policy above is what Kubeflow grants, and it must stay so: the lock pins moto 5.2.5 (pyproject:
`moto[server]>=5.0,<5.2.6`). moto 5.2.6 names a request's IAM action after its botocore operation
(moto/core/responses.py `_get_action_from_request`, which replaced the S3 ACTION_MAP lookup of
`_get_action_from_method_and_request_uri`), so it authorises a ListObjectsV2 as `s3:ListObjectsV2`,
an action that S3's IAM does not have; S3, MinIO and SeaweedFS authorise a listing as
`s3:ListBucket`. Granting `s3:ListObjectsV2` here would make the test pass on a policy no cluster has.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from model import s3
from model.errors import DataError
from model.storage import TMP_PREFIX, download, exists, upload
from tests.test_storage import make_root, read_tree

pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra)")
boto3 = pytest.importorskip("boto3", reason="boto3 (installed with moto) sets the server's IAM users up")

NS = "team-a"
BUCKET = "mlpipeline"
PREFIX = f"private/{NS}/receiptflow"
FILES = {"images/train/a.jpg": b"\xff\xd8jpeg" * 500, "jsons/train.json": b'{"images": {}}', "empty.txt": b""}
BOOT_KEY, BOOT_SECRET = "boot", "boot-secret"  # only for set-up, before the server checks any key


def profile_policy(ns: str) -> dict:
    """sync.py's per-profile policy for one of its prefixes, in the IAM actions SeaweedFS grants."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:Put*", "s3:Get*", "s3:List*", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{BUCKET}/private/{ns}/*"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{BUCKET}"],
                "Condition": {"StringLike": {"s3:prefix": [f"private/{ns}/*"]}},
            },
        ],
    }


class ScopedServer:
    """moto's server in a subprocess; after set-up every request is authenticated and authorised."""

    def __init__(self, log: Path):
        self.log = log.open("w+")  # a file, not a pipe: the server logs every request and must never block
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "inf"},
        )
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.1)
            if m := re.search(r"Running on http://127\.0\.0\.1:(\d+)", log.read_text()):  # werkzeug names the port
                port = int(m.group(1))
        if port is None:
            self.stop()
            pytest.fail(f"moto's server did not start: {log.read_text()[-2000:]}")
        self.endpoint = f"127.0.0.1:{port}"
        self.url = f"http://{self.endpoint}"
        boot = dict(
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=BOOT_KEY,
            aws_secret_access_key=BOOT_SECRET,
        )
        s3, iam = boto3.client("s3", **boot), boto3.client("iam", **boot)
        for bucket in (BUCKET, "receiptflow"):
            s3.create_bucket(Bucket=bucket)
        self.keys = {}
        for user, policy in (
            (
                "admin",
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]},
            ),
            (NS, profile_policy(NS)),
        ):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(UserName=user, PolicyName=f"KubeflowProject{user}", PolicyDocument=json.dumps(policy))
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        # from now on moto checks every request's signature and policy (the setting its
        # INITIAL_NO_AUTH_ACTION_COUNT environment variable gives, counted from this request)
        urllib.request.urlopen(
            urllib.request.Request(
                f"{self.url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
            ),
            timeout=10,
        )

    def admin(self):
        key, secret = self.keys["admin"]
        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret
        )

    def keys_under(self, bucket: str, prefix: str) -> list[str]:
        pages = self.admin().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def scoped_server(tmp_path_factory):
    server = ScopedServer(tmp_path_factory.mktemp("moto") / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def profile_key(scoped_server, monkeypatch):
    """MINIO_* point at the server with the profile's key; MINIO_REGION unset, as in a profile's pods."""
    key, secret = scoped_server.keys[NS]
    monkeypatch.setenv("MINIO_ENDPOINT", scoped_server.endpoint)
    monkeypatch.setenv("MINIO_ACCESS_KEY", key)
    monkeypatch.setenv("MINIO_SECRET_KEY", secret)
    monkeypatch.setenv("MINIO_SECURE", "false")
    monkeypatch.delenv("MINIO_REGION", raising=False)
    monkeypatch.setattr(s3, "BACKOFF_S", 0.01)
    return scoped_server


def test_the_server_enforces_the_profile_policy(profile_key):
    """The premise: bucket-level requests and other prefixes are refused to this key."""
    from botocore.exceptions import ClientError

    key, secret = profile_key.keys[NS]
    api = boto3.client(
        "s3", endpoint_url=profile_key.url, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret
    )
    for call in (
        lambda: api.get_bucket_location(Bucket=BUCKET),
        lambda: api.head_bucket(Bucket=BUCKET),
        lambda: api.put_object(Bucket=BUCKET, Key="private/other-ns/x", Body=b"x"),
        lambda: api.put_object(Bucket="receiptflow", Key="x", Body=b"x"),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    api.put_object(Bucket=BUCKET, Key=f"private/{NS}/premise", Body=b"x")
    api.delete_object(Bucket=BUCKET, Key=f"private/{NS}/premise")


def test_push_skip_pull_and_checkpoint_mirror_under_the_profile_prefix(profile_key, tmp_path, capsys):
    from omegaconf import OmegaConf

    from model.cli import main
    from model.train import _mirror_sync, _restore_mirror

    uri = f"s3://{BUCKET}/{PREFIX}/datasets/x"
    src = make_root(tmp_path / "src", FILES)
    assert main(["data", "push", str(src), uri, "--no-progress"]) == 0, capsys.readouterr().err
    assert f"uploaded {len(FILES)} file(s)" in capsys.readouterr().out
    assert main(["data", "push", str(src), uri, "--no-progress"]) == 0
    assert f"uploaded 0 file(s) (0 B), skipped {len(FILES)} unchanged" in capsys.readouterr().out
    # the temporaries were deleted: SeaweedFS authorises DELETE as Write on the prefix
    assert profile_key.keys_under(BUCKET, f"{PREFIX}/") == sorted(f"{PREFIX}/datasets/x/{k}" for k in FILES)
    assert main(["data", "pull", uri, str(tmp_path / "dst"), "--no-progress"]) == 0, capsys.readouterr().err
    assert read_tree(tmp_path / "dst") == FILES

    # a training's checkpoint mirror: sync after each checkpoint, restore on a fresh pod
    mirror = f"s3://{BUCKET}/{PREFIX}/runs/r1/checkpoints/fold_1"
    out = make_root(tmp_path / "out", {"last.pt": b"weights-1", "metrics.jsonl": b"{}\n"})
    assert not exists(f"{mirror}/last.pt")
    _mirror_sync(mirror)(out)
    (out / "last.pt").write_bytes(b"weights-2")
    _mirror_sync(mirror)(out)
    assert exists(f"{mirror}/last.pt")
    fresh = tmp_path / "fresh"
    _restore_mirror(OmegaConf.create({"checkpoint_mirror": mirror, "resume": "auto"}), fresh)
    assert read_tree(fresh) == {"last.pt": b"weights-2", "metrics.jsonl": b"{}\n"}
    assert not [k for k in profile_key.keys_under(BUCKET, f"{PREFIX}/") if TMP_PREFIX in k]


@pytest.mark.parametrize(
    "uri", ["s3://receiptflow/datasets/x", f"s3://{BUCKET}/private/other-ns/receiptflow/datasets/x"]
)
def test_push_outside_the_profile_prefix_is_one_clear_error(profile_key, tmp_path, capsys, uri):
    from model.cli import main

    assert main(["data", "push", str(make_root(tmp_path / "src", FILES)), uri, "--no-progress", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and uri in err and "AccessDenied" in err, err
    assert "rejected" not in err  # the key is good; the prefix is not its own
    assert profile_key.keys[NS][1] not in err
    bucket, _, key = uri[len("s3://") :].partition("/")
    assert profile_key.keys_under(bucket, key) == []


def test_wrong_secret_for_the_profile_key_is_rejected_credentials_before_any_work(profile_key, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIO_SECRET_KEY", "wrong-secret-xyz")
    uri = f"s3://{BUCKET}/{PREFIX}/datasets/wrong"
    with pytest.raises(DataError) as info:
        upload(make_root(tmp_path / "src", FILES), uri, progress=False)
    message = str(info.value)
    assert message.startswith(f"MINIO_ACCESS_KEY/MINIO_SECRET_KEY rejected by {profile_key.endpoint}")
    assert "SignatureDoesNotMatch" in message and uri in message and "wrong-secret-xyz" not in message
    with pytest.raises(DataError, match="rejected by"):
        download(uri, tmp_path / "dst", progress=False)
    assert profile_key.keys_under(BUCKET, f"{PREFIX}/datasets/wrong") == [] and not (tmp_path / "dst").exists()


class RegionalMinio:
    """What a MinIO with MINIO_SITE_REGION=eu-central-1 answers about the region a request is
    signed for (minio RELEASE.2025-10-15T17-29-55Z cmd/signature-v4-parser.go:108-109,
    cmd/api-errors.go:467-470): HEAD gets a bare 400, other requests the error body naming the
    region. A stand-in on loopback (no MinIO server runs here); it checks the region, not the
    signature, holds one empty bucket and records every request."""

    REGION = "eu-central-1"

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from xml.sax.saxutils import escape

        outer = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                outer.requests.append(f"{self.command} {self.path}")
                scope = self.headers.get("Authorization", "").partition("Credential=")[2].split("/")
                body = b""
                if len(scope) < 3 or scope[2] != outer.REGION:
                    status = 400
                    if self.command != "HEAD":
                        body = (
                            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code>'
                            "<Message>The authorization header is malformed; the region is wrong; expecting "
                            f"'{outer.REGION}'.</Message><Resource>{escape(self.path)}</Resource></Error>"
                        ).encode()
                elif self.path.rstrip("/") == f"/{BUCKET}":
                    status = 200  # HeadBucket
                else:
                    status = 404  # no objects
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_server_with_another_region_says_to_set_minio_region(tmp_path, monkeypatch):
    minio = RegionalMinio()
    try:
        monkeypatch.setenv("MINIO_ENDPOINT", minio.endpoint)
        monkeypatch.setenv("MINIO_ACCESS_KEY", "key-id")
        monkeypatch.setenv("MINIO_SECRET_KEY", "secret-not-logged")
        monkeypatch.setenv("MINIO_SECURE", "false")
        monkeypatch.delenv("MINIO_REGION", raising=False)
        uri = f"s3://{BUCKET}/{PREFIX}/datasets/x"
        with pytest.raises(DataError) as info:
            exists(uri)
        message = str(info.value)
        assert "MINIO_REGION" in message and f"expecting '{minio.REGION}'" in message and "'us-east-1'" in message
        assert "secret-not-logged" not in message and "\n" not in message
        monkeypatch.setenv("MINIO_REGION", minio.REGION)
        assert not exists(uri)
        assert not [r for r in minio.requests if "location" in r]  # never GetBucketLocation
    finally:
        minio.close()

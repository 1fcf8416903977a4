"""`s3://bucket/key` URIs and local paths, moved through the `minio` client (DESIGN.md §6).

`upload(src, dst)` and `download(src, dst)` copy one file or a whole folder / key prefix, in
parallel, with a byte progress bar. Objects that already match (same size and sha256) are
skipped; connection errors and 5xx answers are retried with exponential backoff (`ATTEMPTS` in
all), then a `DataError` names the object. Either side may be a local path, so the same call
works on a laptop without MinIO.

Nothing half-written is ever visible under a final name:

- an upload goes to ``<prefix>/.receiptflow-tmp/<uuid>``, is copied server-side to its final key
  and the temporary is deleted; on failure only the temporary is deleted, the final key is
  untouched (a crash may leave a temporary behind; `download` never lists them);
- a download (or local copy) writes a hidden temporary file next to the target and `os.replace`s it.

Every key and file name is checked before any transfer: an absolute key, a `..` or `.`
component, a backslash or NUL is a `DataError`, and every local target is resolved and must stay
inside the destination folder.

Endpoint and credentials come only from the environment, never from code or arguments:

- ``MINIO_ENDPOINT``   ``host:port`` (no scheme)
- ``MINIO_ACCESS_KEY`` / ``MINIO_SECRET_KEY``
- ``MINIO_SECURE``     ``true`` (default: TLS, so credentials never travel in clear unless you
  opt out) or ``false`` for a plain-HTTP endpoint such as a local test server
- ``MINIO_REGION``     the region requests are signed for; default ``us-east-1``, which MinIO
  without a configured region and SeaweedFS accept; a MinIO with ``MINIO_SITE_REGION`` set
  needs it (the error then names the region the server expects). Never unset: the client would
  first ask GetBucketLocation, which a key scoped to prefixes inside a bucket may not.

Keys scoped to prefixes (Kubeflow 1.11's per-profile SeaweedFS keys may only reach
``mlpipeline/{artifacts,private-artifacts/<ns>,private/<ns>,shared}/*``) are refused every
bucket-level request (GetBucketLocation, HeadBucket), so nothing here needs one: see
`_Remote.check_bucket`.

The keys are never printed; error messages mask them should a server echo them back.
Upload stores the file's sha256 in the object's user metadata (``x-amz-meta-sha256``).
"""
from __future__ import annotations

import hashlib
import mimetypes
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from tqdm import tqdm

from model.errors import DataError

ENV_ENDPOINT = "MINIO_ENDPOINT"
ENV_ACCESS_KEY = "MINIO_ACCESS_KEY"
ENV_SECRET_KEY = "MINIO_SECRET_KEY"
ENV_SECURE = "MINIO_SECURE"
ENV_REGION = "MINIO_REGION"
DEFAULT_SECURE = True
# the region MinIO (cmd/signature-v4-utils.go:131-134: any region when none is configured)
# and SeaweedFS 4.00 (weed/s3api/auth_signature_v4.go:498,555: the signature's own scope) accept
DEFAULT_REGION = "us-east-1"

SCHEME = "s3://"
TMP_PREFIX = ".receiptflow-tmp"  # hidden prefix for uploads in flight; never downloaded
LOCAL_TMP_SUFFIX = ".receiptflow-part"  # hidden temporary files of downloads in flight
SHA256_META = "sha256"  # stored as x-amz-meta-sha256
DEFAULT_WORKERS = 8
ATTEMPTS = 4  # tries per object for transient errors (connection, timeout, 5xx)
BACKOFF_S = 0.5  # wait before retry n (1-based): BACKOFF_S * 2**(n-1)
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
MAX_COPY_SIZE = 5 * 1024**3  # copy_object limit; above it compose_object does the server-side copy
CHUNK = 1024 * 1024

AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
              "ExpiredToken", "InvalidSecurity", "AuthorizationHeaderMalformed"}
TRANSIENT_CODES = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout",
                   "RequestTimeTooSkewed", "OperationAborted"}
NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound", "NotFound"}

T = TypeVar("T")


@dataclass
class TransferReport:
    """What one `upload`/`download` did: names relative to the source root, bytes and time."""

    verb: str  # "uploaded", "downloaded" or "copied"
    transferred: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_transferred: int = 0
    bytes_skipped: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.verb} {len(self.transferred)} file(s) ({_size(self.bytes_transferred)}), "
                f"skipped {len(self.skipped)} unchanged ({_size(self.bytes_skipped)}) in {self.seconds:.1f} s")


# --------------------------------------------------------------------------------------- URIs


def is_remote(uri: str | os.PathLike) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; the key may be empty or end with '/'."""
    if not is_remote(uri):
        raise DataError(f"{uri}: not an s3:// URI (expected s3://bucket/key)")
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not bucket or any(c in bucket for c in "\\\0 ") or bucket in (".", ".."):
        raise DataError(f"{uri}: no valid bucket name after s3:// (expected s3://bucket/key)")
    if key:
        check_key(key, uri, allow_trailing_slash=True)
    return bucket, key


def check_key(key: str, source: str, *, allow_trailing_slash: bool = False) -> str:
    """`key` when it is a safe relative path ('a/b.jpg'), else a DataError naming `source`."""
    if allow_trailing_slash and key.endswith("/"):
        key = key[:-1]
    why = None
    if not key:
        why = "empty name"
    elif key.startswith("/") or (len(key) > 1 and key[1] == ":"):
        why = "absolute path"
    elif "\\" in key or "\0" in key:
        why = "backslash or NUL in the name"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        why = "'.', '..' or empty path component"
    if why:
        raise DataError(f"{source}: unsafe key {key!r} ({why}); keys must be relative paths that stay under the prefix")
    return key


def _inside(root: Path, rel: str, source: str) -> Path:
    """root/rel, resolved, and checked to stay inside the resolved `root`."""
    check_key(rel, source)
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise DataError(f"{source}: {rel!r} would be written to {target}, outside the destination {root}")
    return target


def _join(prefix: str, rel: str) -> str:
    prefix = prefix.rstrip("/")
    return f"{prefix}/{rel}" if prefix else rel


# ------------------------------------------------------------------------------------- client


class _Remote:
    """A client from the environment plus what error messages need (secrets only for masking)."""

    def __init__(self, workers: int = DEFAULT_WORKERS):
        env = {}
        for name in (ENV_ENDPOINT, ENV_ACCESS_KEY, ENV_SECRET_KEY):
            env[name] = os.environ.get(name, "").strip()
            if not env[name]:
                raise DataError(f"environment variable {name} is not set; s3:// transfers need "
                                f"{ENV_ENDPOINT} (host:port), {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}")
        self.endpoint = env[ENV_ENDPOINT]
        if "://" in self.endpoint or "/" in self.endpoint:
            raise DataError(f"{ENV_ENDPOINT}={self.endpoint!r}: expected host:port without scheme or path "
                            f"(set {ENV_SECURE}=false for plain HTTP)")
        self.secure = _env_bool(ENV_SECURE, DEFAULT_SECURE)
        # a region of our own: without one minio-py sends GetBucketLocation first, which SeaweedFS
        # 4.00 refuses a prefix-scoped key (bucket-level Read, weed/s3api/s3api_server.go:351)
        self.region = os.environ.get(ENV_REGION, "").strip() or DEFAULT_REGION
        self._secrets = [s for s in (env[ENV_ACCESS_KEY], env[ENV_SECRET_KEY]) if len(s) >= 3]
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            maxsize=max(10, workers * 2),
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=False,  # retries are ours (bounded, with backoff, never for auth errors)
        )
        self.client = Minio(self.endpoint, access_key=env[ENV_ACCESS_KEY], secret_key=env[ENV_SECRET_KEY],
                            secure=self.secure, region=self.region, http_client=http)

    def mask(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def call(self, what: str, fn: Callable[[], T], cleanup: Callable[[], None] | None = None,
             denied_is_auth: bool = False) -> T:
        """fn() with up to ATTEMPTS tries on transient errors; any failure -> DataError naming `what`."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised as DataError
                if cleanup is not None:
                    cleanup()
                if isinstance(exc, DataError):
                    raise
                if _is_auth(exc, denied_is_auth):
                    raise self.auth_error(exc) from None
                if not _is_transient(exc) or attempt == ATTEMPTS:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    hint = "; this key may not reach it" if isinstance(exc, S3Error) and exc.code == "AccessDenied" else ""
                    raise DataError(self.mask(f"{what}: failed{tries} against {self.endpoint}: {_describe(exc)}{hint}")) from None
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def auth_error(self, exc: Exception) -> DataError:
        if isinstance(exc, S3Error) and exc.code == "AuthorizationHeaderMalformed":
            # MinIO's answer to a request signed for another region than its configured one
            # (cmd/api-errors.go:467-470 at RELEASE.2025-10-15T17-29-55Z: "...expecting '<region>'")
            return DataError(self.mask(f"{self.endpoint} refused requests signed for region {self.region!r} "
                                       f"({_describe(exc)}); set {ENV_REGION} to the server's region "
                                       f"(unset means {DEFAULT_REGION})"))
        return DataError(self.mask(f"{ENV_ACCESS_KEY}/{ENV_SECRET_KEY} rejected by {self.endpoint} ({_describe(exc)})"))

    def check_bucket(self, bucket: str, uri: str | None = None) -> None:
        """Cheap requests before any work: credentials accepted, bucket present, prefix reachable.

        HeadBucket first. Its answer has no body, so a 403 cannot tell wrong credentials from a key
        whose rights are only on prefixes inside the bucket (SeaweedFS 4.00 authorises HeadBucket
        as Read on the bucket itself, weed/s3api/s3api_server.go:403-407 and canDo in
        auth_credentials.go:523-567; Kubeflow 1.11's per-profile keys are such keys), nor a 400
        a wrong region: then ListObjectsV2 with prefix = the transfer's key, which such a key may
        send (SeaweedFS checks List against `bucket/prefix`, auth_credentials.go:488-491) and
        whose error body says what is wrong. `uri` (the transfer's s3:// URI) is named in every
        error, so a caller's message says which transfer failed, not just the bucket."""
        whole = f" (for {uri})" if uri and uri.rstrip("/") != f"s3://{bucket}" else ""
        head_refused = []

        def head() -> bool:
            try:
                return self.client.bucket_exists(bucket)
            except S3Error as exc:
                if exc.response is not None and exc.response.status in (400, 403):
                    head_refused.append(exc)
                    return True
                raise

        try:
            found = self.call(f"s3://{bucket}", head, denied_is_auth=True)
            denied = self._probe_prefix(bucket, uri or f"s3://{bucket}") if head_refused else None
        except DataError as exc:
            raise DataError(f"{exc}{whole}") from None
        if denied:
            raise DataError(denied)
        if not found:
            raise DataError(f"s3://{bucket}: bucket does not exist on {self.endpoint}{whole}")

    def _probe_prefix(self, bucket: str, uri: str) -> str | None:
        """ListObjectsV2 under the transfer's key (its first entry). Bad credentials or a missing bucket
        raise; a prefix this key may not reach gives the message to raise; None: go ahead."""
        key = parse_uri(uri)[1] if is_remote(uri) else ""

        def probe() -> str | None:
            try:
                # one page of the prefix's top level (non-recursive: a few entries), first entry only
                next(iter(self.client.list_objects(bucket, prefix=key)), None)
            except S3Error as exc:
                if exc.code == "NoSuchBucket":
                    raise DataError(f"s3://{bucket}: bucket does not exist on {self.endpoint}") from None
                if exc.code != "AccessDenied":
                    raise
                # the signature was checked first (SeaweedFS authRequest, auth_credentials.go:432-511)
                return self.mask(f"{uri}: {self.endpoint} accepts {ENV_ACCESS_KEY} but denies it this prefix "
                                 f"({_describe(exc)}); a key scoped to prefixes (Kubeflow 1.11's per-profile keys "
                                 f"reach only mlpipeline/{{artifacts,private-artifacts/<ns>,private/<ns>,shared}}/) "
                                 f"needs a URI under one of them")
            return None

        return self.call(uri, probe)

    def stat(self, bucket: str, key: str):
        """The object's stat, or None when there is no such object."""
        def go():
            try:
                return self.client.stat_object(bucket, key)
            except S3Error as exc:
                if exc.code in NOT_FOUND_CODES or (exc.response is not None and exc.response.status == 404):
                    return None
                raise
        return self.call(f"s3://{bucket}/{key}", go)


def exists(uri: str | os.PathLike) -> bool:
    """Whether the object (or local file or folder) `uri` exists; the bucket itself must."""
    if not is_remote(str(uri)):
        return Path(uri).exists()
    bucket, key = parse_uri(str(uri))
    remote = _Remote(1)
    remote.check_bucket(bucket, str(uri))
    return remote.stat(bucket, key) is not None


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise DataError(f"environment variable {name}={raw!r}: expected true or false")


def _status(exc: Exception) -> int | None:
    if isinstance(exc, S3Error) and exc.response is not None:
        return exc.response.status
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        return getattr(exc, "_code", None)
    return None


def _is_auth(exc: Exception, denied_is_auth: bool) -> bool:
    """Credentials rejected? AccessDenied counts only on the first request (later it is a per-object policy)."""
    if not isinstance(exc, S3Error):
        return False
    return exc.code in AUTH_CODES and (denied_is_auth or exc.code != "AccessDenied")


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # a TLS mismatch (e.g. MINIO_SECURE wrong) does not heal by retrying
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, S3Error) and exc.code in TRANSIENT_CODES:
        return True
    status = _status(exc)
    return status is not None and status >= 500


def _describe(exc: Exception) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS failed ({exc}); is {ENV_SECURE} right for this endpoint (true: https, false: http)?"
    if isinstance(exc, urllib3.exceptions.HTTPError):
        reason = getattr(exc, "reason", None)
        return f"{type(exc).__name__}: {reason or exc}"
    if isinstance(exc, MinioException):
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------- hashing


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a local file, in one read."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _meta_sha256(headers) -> str | None:
    if headers is None:
        return None
    value = headers.get(f"x-amz-meta-{SHA256_META}") or headers.get(f"X-Amz-Meta-{SHA256_META.capitalize()}")
    return value.strip().lower() if value else None


def _same(stat, size: int, sha256: str, md5: str) -> bool:
    """Does the object `stat` hold these bytes? sha256 metadata, else a single-part ETag (md5)."""
    if stat is None or stat.size != size:
        return False
    remote_sha = _meta_sha256(stat.metadata)
    if remote_sha:
        return remote_sha == sha256
    etag = (stat.etag or "").strip('"').lower()
    return "-" not in etag and etag == md5


# ---------------------------------------------------------------------------------- progress


class _Bar:
    """A thread-safe byte bar; also the `progress` object minio's put/get calls accept."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                         disable=not enabled, leave=False)
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if n:
            with self._lock:
                self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class _FileProgress:
    """minio's progress protocol (set_meta/update) for one file; `settle` fixes the count afterwards."""

    def __init__(self, bar: _Bar):
        self.bar, self.counted = bar, 0

    def set_meta(self, object_name=None, total_length=None) -> None:  # noqa: ARG002 - minio's protocol
        pass

    def update(self, n: int) -> None:
        self.counted += n
        self.bar.add(n)

    def settle(self, size: int) -> None:
        """Count exactly `size` bytes for this file (0 after a failed try)."""
        self.bar.add(size - self.counted)
        self.counted = size


# ------------------------------------------------------------------------------------ listing


@dataclass(frozen=True)
class _Item:
    rel: str  # name relative to the source root, '/'-separated
    src: str  # local path or object key
    dst: str  # local path or object key
    size: int


def _local_files(src: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of a file or of every file under a folder (symlinked folders not followed)."""
    if src.is_file():
        return [(src.name, src)]
    if not src.is_dir():
        raise DataError(f"{src}: no such file or folder")
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(LOCAL_TMP_SUFFIX):
                continue
            path = Path(dirpath) / name
            if path.is_file():
                out.append((path.relative_to(src).as_posix(), path))
    if not out:
        raise DataError(f"{src}: folder has no files")
    return out


def _single_target(dst: Path, name: str, dst_text: str) -> Path:
    """Where one file lands: into `dst` when it is a folder (or named with a trailing '/'), else `dst` itself."""
    if dst.is_dir() or dst_text.endswith(("/", os.sep)):
        return _inside(dst.resolve(), name, dst_text)
    return dst.resolve()


def _hidden(key: str) -> bool:
    return TMP_PREFIX in key.split("/")


# ------------------------------------------------------------------------------------ running


def _run(items: list[_Item], job: Callable[[_Item, _Bar], bool], report: TransferReport,
         workers: int, progress: bool, desc: str) -> TransferReport:
    """job(item, bar) -> transferred? for every item, in parallel; the first DataError stops the rest."""
    start = time.monotonic()
    bar = _Bar(sum(i.size for i in items), desc, progress)
    lock = threading.Lock()
    failed = threading.Event()

    def one(item: _Item) -> None:
        if failed.is_set():
            return  # a worker may dequeue its next item before cancel_futures runs: start nothing after a failure
        try:
            moved = job(item, bar)
        except BaseException:
            failed.set()
            raise
        with lock:
            if moved:
                report.transferred.append(item.rel)
                report.bytes_transferred += item.size
            else:
                report.skipped.append(item.rel)
                report.bytes_skipped += item.size
                bar.add(item.size)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="receiptflow-storage")
    try:
        futures = [pool.submit(one, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        pool.shutdown(wait=True, cancel_futures=True)  # the first failure stops what has not started
        for f in futures:
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    report.transferred.sort()
    report.skipped.sort()
    report.seconds = time.monotonic() - start
    return report


# ------------------------------------------------------------------------------------- upload


def upload(src: str | os.PathLike, dst_uri: str, *, workers: int = DEFAULT_WORKERS,
           progress: bool = True) -> TransferReport:
    """Copy a local file or folder to ``s3://bucket/prefix`` (or to a local path: a plain copy).

    A folder's files land under ``prefix/<relative path>``; a single file lands at ``prefix``
    itself, or at ``prefix/<name>`` when the URI ends with '/' or is the bucket alone.
    """
    if is_remote(str(src)):
        raise DataError(f"{src}: upload reads local files; use download for s3:// sources")
    if not is_remote(str(dst_uri)):
        return copy_local(src, dst_uri, workers=workers, progress=progress)
    src_path = Path(src)
    bucket, prefix = parse_uri(dst_uri)
    files = _local_files(src_path)
    items = []
    for rel, path in files:
        if src_path.is_file() and prefix and not prefix.endswith("/"):
            key = prefix
        else:
            key = _join(prefix, check_key(rel, str(path)))
        items.append(_Item(rel, str(path), key, path.stat().st_size))
    # temporaries live under the transfer's prefix (a folder) or next to the final key (a file)
    tmp_root = _join(prefix if src_path.is_dir() else items[0].dst.rpartition("/")[0], TMP_PREFIX)
    remote = _Remote(workers)
    remote.check_bucket(bucket, dst_uri)

    def job(item: _Item, bar: _Bar) -> bool:
        path = Path(item.src)
        sha256, md5 = _hashes(path)
        if _same(remote.stat(bucket, item.dst), item.size, sha256, md5):
            return False
        _put_atomic(remote, bucket, item, path, sha256, f"{tmp_root}/{uuid.uuid4().hex}", bar)
        return True

    return _run(items, job, TransferReport("uploaded"), workers, progress, f"push s3://{bucket}/{prefix}")


def _put_atomic(remote: _Remote, bucket: str, item: _Item, path: Path, sha256: str, tmp_key: str,
                bar: _Bar) -> None:
    meta = {SHA256_META: sha256}
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    fp = _FileProgress(bar)
    client = remote.client

    def drop_tmp() -> None:
        try:
            client.remove_object(bucket, tmp_key)
        except Exception:  # noqa: BLE001 - best effort; the final key is untouched either way
            pass

    def attempt() -> None:
        fp.settle(0)
        client.fput_object(bucket, tmp_key, str(path), content_type=ctype, metadata=meta, progress=fp)
        if item.size > MAX_COPY_SIZE:
            client.compose_object(bucket, item.dst, [ComposeSource(bucket, tmp_key)], metadata=meta)
        else:
            client.copy_object(bucket, item.dst, CopySource(bucket, tmp_key))
        fp.settle(item.size)

    remote.call(f"{path} -> s3://{bucket}/{item.dst}", attempt, cleanup=lambda: (fp.settle(0), drop_tmp()))
    drop_tmp()


# ----------------------------------------------------------------------------------- download


def download(src_uri: str, dst: str | os.PathLike, *, workers: int = DEFAULT_WORKERS,
             progress: bool = True) -> TransferReport:
    """Copy an object or every object under ``s3://bucket/prefix/`` into a local folder (or file).

    Objects under a prefix land at ``dst/<key relative to the prefix>``; a single object lands at
    ``dst`` itself, or at ``dst/<name>`` when `dst` is a folder. A local `src` is a plain copy.
    """
    if not is_remote(str(src_uri)):
        return copy_local(src_uri, dst, workers=workers, progress=progress)
    if is_remote(str(dst)):
        raise DataError(f"{dst}: download writes local files; use upload for s3:// destinations")
    bucket, key = parse_uri(src_uri)
    remote = _Remote(workers)
    remote.check_bucket(bucket, src_uri)
    dst_path = Path(dst)
    items: list[_Item] = []
    single = remote.stat(bucket, key) if key and not key.endswith("/") else None
    if single is not None:
        name = PurePosixPath(key).name
        items.append(_Item(name, key, str(_single_target(dst_path, name, str(dst))), single.size))
    else:
        prefix = key.rstrip("/") + "/" if key else ""
        root = dst_path.resolve()
        listing = remote.call(src_uri, lambda: list(remote.client.list_objects(bucket, prefix=prefix, recursive=True)))
        for obj in listing:
            name = obj.object_name
            if name.endswith("/") or _hidden(name[len(prefix):]):
                continue
            rel = name[len(prefix):]
            target = _inside(root, rel, f"s3://{bucket}/{name}")
            items.append(_Item(rel, name, str(target), obj.size or 0))
        if not items:
            raise DataError(f"{src_uri}: no objects under this prefix on {remote.endpoint}")
    _check_no_clash(items, str(dst))

    def job(item: _Item, bar: _Bar) -> bool:
        target = Path(item.dst)
        if target.is_file() and target.stat().st_size == item.size:
            sha256, md5 = _hashes(target)
            if _same(remote.stat(bucket, item.src), item.size, sha256, md5):
                return False
        _get_atomic(remote, bucket, item, target, bar)
        return True

    return _run(items, job, TransferReport("downloaded"), workers, progress, f"pull {src_uri}")


def _get_atomic(remote: _Remote, bucket: str, item: _Item, target: Path, bar: _Bar) -> None:
    fp = _FileProgress(bar)
    target.parent.mkdir(parents=True, exist_ok=True)

    def attempt() -> None:
        fp.settle(0)
        response = remote.client.get_object(bucket, item.src)
        try:
            want = _meta_sha256(response.headers)
            sha, size = hashlib.sha256(), 0
            with _atomic_file(target) as f:
                for chunk in response.stream(CHUNK):
                    f.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
                    fp.update(len(chunk))
                if want and sha.hexdigest() != want:
                    raise DataError(f"s3://{bucket}/{item.src}: downloaded bytes do not match its sha256 metadata")
        finally:
            response.close()
            response.release_conn()
        fp.settle(size)

    remote.call(f"s3://{bucket}/{item.src} -> {target}", attempt, cleanup=lambda: fp.settle(0))


class _atomic_file:
    """Open a hidden temporary next to `target`; on clean exit os.replace it into place, else delete it."""

    def __init__(self, target: Path):
        self.target = target

    def __enter__(self):
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=LOCAL_TMP_SUFFIX,
                                        dir=self.target.parent)
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.target)
        else:
            Path(self.tmp).unlink(missing_ok=True)
        return False


def _check_no_clash(items: Iterable[_Item], dst: str) -> None:
    """Two sources may not land on one path, nor one below another (file 'a' and 'a/b')."""
    seen = {Path(i.dst) for i in items}
    for p in seen:
        for parent in p.parents:
            if parent in seen:
                raise DataError(f"{dst}: {parent} would be both a file and a folder")


# --------------------------------------------------------------------------------- local copy


def copy_local(src: str | os.PathLike, dst: str | os.PathLike, *, workers: int = DEFAULT_WORKERS,
               progress: bool = True) -> TransferReport:
    """The same as upload/download between two local paths (a laptop run without MinIO)."""
    src_path, dst_path = Path(src), Path(dst)
    files = _local_files(src_path)
    items = []
    if src_path.is_file():
        rel, path = files[0]
        items.append(_Item(rel, str(path), str(_single_target(dst_path, rel, str(dst))), path.stat().st_size))
    else:
        root = dst_path.resolve()
        if root == src_path.resolve() or root.is_relative_to(src_path.resolve()):
            raise DataError(f"{dst}: destination is inside the source folder {src}")
        for rel, path in files:
            items.append(_Item(rel, str(path), str(_inside(root, rel, str(path))), path.stat().st_size))
    _check_no_clash(items, str(dst))

    def job(item: _Item, bar: _Bar) -> bool:
        target, source = Path(item.dst), Path(item.src)
        if target.is_file() and target.stat().st_size == item.size and _hashes(target)[0] == _hashes(source)[0]:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(source, "rb") as fin, _atomic_file(target) as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
        except OSError as exc:
            raise DataError(f"{source} -> {target}: {exc.strerror or exc}") from None
        bar.add(item.size)
        return True

    return _run(items, job, TransferReport("copied"), workers, progress, f"copy {src}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"

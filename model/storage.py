"""`s3://bucket/key` URIs and local paths, moved through the `minio` client (docs/design.md §6).

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
`Remote.check_bucket` in model/s3.py.

The keys are never printed; error messages mask them should a server echo them back.
Upload stores the file's sha256 in the object's user metadata (``x-amz-meta-sha256``).

The public functions are here; the URIs, the client and its retries are in model/s3.py, the
listing, checks, progress and parallel runner in model/transfer.py.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from minio.commonconfig import ComposeSource, CopySource

from model.errors import DataError

# the URIs, the client and the transfer machinery live in model/s3.py and model/transfer.py; the
# public names stay importable from here. Retry and timeout knobs (ATTEMPTS, BACKOFF_S,
# READ_TIMEOUT_S) are read in model/s3.py: patch them there.
from model.s3 import (  # noqa: F401
    DEFAULT_WORKERS,
    ENV_ACCESS_KEY,
    ENV_ENDPOINT,
    ENV_REGION,
    ENV_SECRET_KEY,
    ENV_SECURE,
    SCHEME,
    Remote,
    check_key,
    is_remote,
    join_key,
    parse_uri,
)
from model.transfer import (  # noqa: F401
    CHUNK,
    LOCAL_TMP_SUFFIX,
    SHA256_META,
    TMP_PREFIX,
    ByteBar,
    FileProgress,
    TransferItem,
    TransferReport,
    atomic_file,
    check_no_clash,
    file_hashes,
    inside_root,
    is_hidden_key,
    local_files,
    meta_sha256,
    run_transfers,
    same_bytes,
    single_target,
)

MAX_COPY_SIZE = 5 * 1024**3  # copy_object limit; above it compose_object does the server-side copy


def exists(uri: str | os.PathLike) -> bool:
    """Whether the object (or local file or folder) `uri` exists; the bucket itself must."""
    if not is_remote(str(uri)):
        return Path(uri).exists()
    bucket, key = parse_uri(str(uri))
    remote = Remote(1)
    remote.check_bucket(bucket, str(uri))
    return remote.stat(bucket, key) is not None


# ------------------------------------------------------------------------------------- upload


def upload(
    src: str | os.PathLike, dst_uri: str, *, workers: int = DEFAULT_WORKERS, progress: bool = True
) -> TransferReport:
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
    files = local_files(src_path)
    items = []
    for rel, path in files:
        if src_path.is_file() and prefix and not prefix.endswith("/"):
            key = prefix
        else:
            key = join_key(prefix, check_key(rel, str(path)))
        items.append(TransferItem(rel, str(path), key, path.stat().st_size))
    # temporaries live under the transfer's prefix (a folder) or next to the final key (a file)
    tmp_root = join_key(prefix if src_path.is_dir() else items[0].dst.rpartition("/")[0], TMP_PREFIX)
    remote = Remote(workers)
    remote.check_bucket(bucket, dst_uri)

    def job(item: TransferItem, bar: ByteBar) -> bool:
        path = Path(item.src)
        sha256, md5 = file_hashes(path)
        if same_bytes(remote.stat(bucket, item.dst), item.size, sha256, md5):
            return False
        _put_atomic(remote, bucket, item, path, sha256, f"{tmp_root}/{uuid.uuid4().hex}", bar)
        return True

    return run_transfers(items, job, TransferReport("uploaded"), workers, progress, f"push s3://{bucket}/{prefix}")


def _put_atomic(
    remote: Remote, bucket: str, item: TransferItem, path: Path, sha256: str, tmp_key: str, bar: ByteBar
) -> None:
    meta = {SHA256_META: sha256}
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    fp = FileProgress(bar)
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


def download(
    src_uri: str, dst: str | os.PathLike, *, workers: int = DEFAULT_WORKERS, progress: bool = True
) -> TransferReport:
    """Copy an object or every object under ``s3://bucket/prefix/`` into a local folder (or file).

    Objects under a prefix land at ``dst/<key relative to the prefix>``; a single object lands at
    ``dst`` itself, or at ``dst/<name>`` when `dst` is a folder. A local `src` is a plain copy.
    """
    if not is_remote(str(src_uri)):
        return copy_local(src_uri, dst, workers=workers, progress=progress)
    if is_remote(str(dst)):
        raise DataError(f"{dst}: download writes local files; use upload for s3:// destinations")
    bucket, key = parse_uri(src_uri)
    remote = Remote(workers)
    remote.check_bucket(bucket, src_uri)
    dst_path = Path(dst)
    items: list[TransferItem] = []
    single = remote.stat(bucket, key) if key and not key.endswith("/") else None
    if single is not None:
        name = PurePosixPath(key).name
        items.append(TransferItem(name, key, str(single_target(dst_path, name, str(dst))), single.size))
    else:
        prefix = key.rstrip("/") + "/" if key else ""
        root = dst_path.resolve()
        listing = remote.call(src_uri, lambda: list(remote.client.list_objects(bucket, prefix=prefix, recursive=True)))
        for obj in listing:
            name = obj.object_name
            if name.endswith("/") or is_hidden_key(name[len(prefix) :]):
                continue
            rel = name[len(prefix) :]
            target = inside_root(root, rel, f"s3://{bucket}/{name}")
            items.append(TransferItem(rel, name, str(target), obj.size or 0))
        if not items:
            raise DataError(f"{src_uri}: no objects under this prefix on {remote.endpoint}")
    check_no_clash(items, str(dst))

    def job(item: TransferItem, bar: ByteBar) -> bool:
        target = Path(item.dst)
        if target.is_file() and target.stat().st_size == item.size:
            sha256, md5 = file_hashes(target)
            if same_bytes(remote.stat(bucket, item.src), item.size, sha256, md5):
                return False
        _get_atomic(remote, bucket, item, target, bar)
        return True

    return run_transfers(items, job, TransferReport("downloaded"), workers, progress, f"pull {src_uri}")


def _get_atomic(remote: Remote, bucket: str, item: TransferItem, target: Path, bar: ByteBar) -> None:
    fp = FileProgress(bar)
    target.parent.mkdir(parents=True, exist_ok=True)

    def attempt() -> None:
        fp.settle(0)
        response = remote.client.get_object(bucket, item.src)
        try:
            want = meta_sha256(response.headers)
            sha, size = hashlib.sha256(), 0
            with atomic_file(target) as f:
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


# --------------------------------------------------------------------------------- local copy


def copy_local(
    src: str | os.PathLike, dst: str | os.PathLike, *, workers: int = DEFAULT_WORKERS, progress: bool = True
) -> TransferReport:
    """The same as upload/download between two local paths (a laptop run without MinIO)."""
    src_path, dst_path = Path(src), Path(dst)
    files = local_files(src_path)
    items = []
    if src_path.is_file():
        rel, path = files[0]
        items.append(TransferItem(rel, str(path), str(single_target(dst_path, rel, str(dst))), path.stat().st_size))
    else:
        root = dst_path.resolve()
        if root == src_path.resolve() or root.is_relative_to(src_path.resolve()):
            raise DataError(f"{dst}: destination is inside the source folder {src}")
        for rel, path in files:
            items.append(TransferItem(rel, str(path), str(inside_root(root, rel, str(path))), path.stat().st_size))
    check_no_clash(items, str(dst))

    def job(item: TransferItem, bar: ByteBar) -> bool:
        target, source = Path(item.dst), Path(item.src)
        if target.is_file() and target.stat().st_size == item.size and file_hashes(target)[0] == file_hashes(source)[0]:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(source, "rb") as fin, atomic_file(target) as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
        except OSError as exc:
            raise DataError(f"{source} -> {target}: {exc.strerror or exc}") from None
        bar.add(item.size)
        return True

    return run_transfers(items, job, TransferReport("copied"), workers, progress, f"copy {src}")

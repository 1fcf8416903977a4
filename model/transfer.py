"""The transfer machinery behind model/storage.py's upload, download and copy_local: what to move
(listing, key and path checks), whether it already matches (sha256 / single-part ETag), moving
many files in parallel with one byte progress bar, and atomic local writes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from model.errors import DataError
from model.s3 import check_key

TMP_PREFIX = ".receiptflow-tmp"  # hidden prefix for uploads in flight; never downloaded
LOCAL_TMP_SUFFIX = ".receiptflow-part"  # hidden temporary files of downloads in flight
SHA256_META = "sha256"  # stored as x-amz-meta-sha256
CHUNK = 1024 * 1024


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
        return (
            f"{self.verb} {len(self.transferred)} file(s) ({_size(self.bytes_transferred)}), "
            f"skipped {len(self.skipped)} unchanged ({_size(self.bytes_skipped)}) in {self.seconds:.1f} s"
        )


def inside_root(root: Path, rel: str, source: str) -> Path:
    """root/rel, resolved, and checked to stay inside the resolved `root`."""
    check_key(rel, source)
    target = (root / rel).resolve()
    if not target.is_relative_to(root):
        raise DataError(f"{source}: {rel!r} would be written to {target}, outside the destination {root}")
    return target


# ---------------------------------------------------------------------------------- hashing


def file_hashes(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a local file, in one read."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def meta_sha256(headers) -> str | None:
    if headers is None:
        return None
    value = headers.get(f"x-amz-meta-{SHA256_META}") or headers.get(f"X-Amz-Meta-{SHA256_META.capitalize()}")
    return value.strip().lower() if value else None


def same_bytes(stat, size: int, sha256: str, md5: str) -> bool:
    """Does the object `stat` hold these bytes? sha256 metadata, else a single-part ETag (md5)."""
    if stat is None or stat.size != size:
        return False
    remote_sha = meta_sha256(stat.metadata)
    if remote_sha:
        return remote_sha == sha256
    etag = (stat.etag or "").strip('"').lower()
    return "-" not in etag and etag == md5


# ---------------------------------------------------------------------------------- progress


class ByteBar:
    """A thread-safe byte bar; also the `progress` object minio's put/get calls accept."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled, leave=False
        )
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if n:
            with self._lock:
                self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class FileProgress:
    """minio's progress protocol (set_meta/update) for one file; `settle` fixes the count afterwards."""

    def __init__(self, bar: ByteBar):
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
class TransferItem:
    rel: str  # name relative to the source root, '/'-separated
    src: str  # local path or object key
    dst: str  # local path or object key
    size: int


def local_files(src: Path) -> list[tuple[str, Path]]:
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


def single_target(dst: Path, name: str, dst_text: str) -> Path:
    """Where one file lands: into `dst` when it is a folder (or named with a trailing '/'), else `dst` itself."""
    if dst.is_dir() or dst_text.endswith(("/", os.sep)):
        return inside_root(dst.resolve(), name, dst_text)
    return dst.resolve()


def is_hidden_key(key: str) -> bool:
    return TMP_PREFIX in key.split("/")


# ------------------------------------------------------------------------------------ running


def run_transfers(
    items: list[TransferItem],
    job: Callable[[TransferItem, ByteBar], bool],
    report: TransferReport,
    workers: int,
    progress: bool,
    desc: str,
) -> TransferReport:
    """job(item, bar) -> transferred? for every item, in parallel; the first DataError stops the rest."""
    start = time.monotonic()
    bar = ByteBar(sum(i.size for i in items), desc, progress)
    lock = threading.Lock()
    failed = threading.Event()

    def one(item: TransferItem) -> None:
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


class atomic_file:
    """Open a hidden temporary next to `target`; on clean exit os.replace it into place, else delete it."""

    def __init__(self, target: Path):
        self.target = target

    def __enter__(self):
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=LOCAL_TMP_SUFFIX, dir=self.target.parent)
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.target)
        else:
            Path(self.tmp).unlink(missing_ok=True)
        return False


def check_no_clash(items: Iterable[TransferItem], dst: str) -> None:
    """Two sources may not land on one path, nor one below another (file 'a' and 'a/b')."""
    seen = {Path(i.dst) for i in items}
    for p in seen:
        for parent in p.parents:
            if parent in seen:
                raise DataError(f"{dst}: {parent} would be both a file and a folder")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"

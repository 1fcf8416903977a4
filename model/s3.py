"""The S3 side of model/storage.py: `s3://bucket/key` URIs and key checks, the `minio` client
built from the environment (MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_SECURE,
MINIO_REGION: see model/storage.py), bounded retries with backoff, and one-line errors that
name the object and mask the keys.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

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
DEFAULT_WORKERS = 8
ATTEMPTS = 4  # tries per object for transient errors (connection, timeout, 5xx)
BACKOFF_S = 0.5  # wait before retry n (1-based): BACKOFF_S * 2**(n-1)
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0

AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
}
TRANSIENT_CODES = {
    "InternalError",
    "SlowDown",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "OperationAborted",
}
NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound", "NotFound"}

T = TypeVar("T")

# --------------------------------------------------------------------------------------- URIs


def is_remote(uri: str | os.PathLike) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; the key may be empty or end with '/'."""
    if not is_remote(uri):
        raise DataError(f"{uri}: not an s3:// URI (expected s3://bucket/key)")
    bucket, _, key = uri[len(SCHEME) :].partition("/")
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


def join_key(prefix: str, rel: str) -> str:
    prefix = prefix.rstrip("/")
    return f"{prefix}/{rel}" if prefix else rel


# ------------------------------------------------------------------------------------- client


class Remote:
    """A client from the environment (or from `source`, the same MINIO_* names, e.g. a Secret's data) plus what
    error messages need (secrets only for masking)."""

    def __init__(self, workers: int = DEFAULT_WORKERS, source: Mapping[str, str] | None = None):
        source = os.environ if source is None else source
        env = {}
        for name in (ENV_ENDPOINT, ENV_ACCESS_KEY, ENV_SECRET_KEY):
            env[name] = source.get(name, "").strip()
            if not env[name]:
                raise DataError(
                    f"environment variable {name} is not set; s3:// transfers need "
                    f"{ENV_ENDPOINT} (host:port), {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}"
                )
        self.endpoint = env[ENV_ENDPOINT]
        if "://" in self.endpoint or "/" in self.endpoint:
            raise DataError(
                f"{ENV_ENDPOINT}={self.endpoint!r}: expected host:port without scheme or path "
                f"(set {ENV_SECURE}=false for plain HTTP)"
            )
        self.secure = _env_bool(source, ENV_SECURE, DEFAULT_SECURE)
        # a region of our own: without one minio-py sends GetBucketLocation first, which SeaweedFS
        # 4.00 refuses a prefix-scoped key (bucket-level Read, weed/s3api/s3api_server.go:351)
        self.region = source.get(ENV_REGION, "").strip() or DEFAULT_REGION
        self._secrets = [s for s in (env[ENV_ACCESS_KEY], env[ENV_SECRET_KEY]) if len(s) >= 3]
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            maxsize=max(10, workers * 2),
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=False,  # retries are ours (bounded, with backoff, never for auth errors)
        )
        self.client = Minio(
            self.endpoint,
            access_key=env[ENV_ACCESS_KEY],
            secret_key=env[ENV_SECRET_KEY],
            secure=self.secure,
            region=self.region,
            http_client=http,
        )

    def mask(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def call(
        self, what: str, fn: Callable[[], T], cleanup: Callable[[], None] | None = None, denied_is_auth: bool = False
    ) -> T:
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
                    hint = (
                        "; this key may not reach it" if isinstance(exc, S3Error) and exc.code == "AccessDenied" else ""
                    )
                    raise DataError(
                        self.mask(f"{what}: failed{tries} against {self.endpoint}: {_describe(exc)}{hint}")
                    ) from None
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def auth_error(self, exc: Exception) -> DataError:
        if isinstance(exc, S3Error) and exc.code == "AuthorizationHeaderMalformed":
            # MinIO's answer to a request signed for another region than its configured one
            # (cmd/api-errors.go:467-470 at RELEASE.2025-10-15T17-29-55Z: "...expecting '<region>'")
            return DataError(
                self.mask(
                    f"{self.endpoint} refused requests signed for region {self.region!r} "
                    f"({_describe(exc)}); set {ENV_REGION} to the server's region "
                    f"(unset means {DEFAULT_REGION})"
                )
            )
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
                return self.mask(
                    f"{uri}: {self.endpoint} accepts {ENV_ACCESS_KEY} but denies it this prefix "
                    f"({_describe(exc)}); a key scoped to prefixes (Kubeflow 1.11's per-profile keys "
                    f"reach only mlpipeline/{{artifacts,private-artifacts/<ns>,private/<ns>,shared}}/) "
                    f"needs a URI under one of them"
                )
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


def _env_bool(source: Mapping[str, str], name: str, default: bool) -> bool:
    raw = source.get(name, "").strip().lower()
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

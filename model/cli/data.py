"""`receiptflow data push SRC s3://bucket/prefix` and `receiptflow data pull s3://bucket/prefix DST`.

Either side may also be a local path (a plain copy). The endpoint and credentials come from
MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_SECURE (default true) and MINIO_REGION
(default us-east-1); see model/storage.py.
"""

from __future__ import annotations

# model.storage (minio, urllib3) is imported when a transfer runs; DEFAULT_WORKERS is its default, which
# tests/test_cli.py keeps equal to model.storage.DEFAULT_WORKERS (the option passes only what is given)
DEFAULT_WORKERS = 8

ENV_HELP = (
    "Endpoint and credentials come from the environment: MINIO_ENDPOINT (host:port), MINIO_ACCESS_KEY, "
    "MINIO_SECRET_KEY, MINIO_SECURE (true by default; false for plain HTTP), MINIO_REGION (us-east-1 by "
    "default; set it for a MinIO with another region). Files whose size and sha256 "
    "already match are skipped; transient errors are retried with backoff."
)


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="push/pull dataset files to and from s3:// (MinIO)",
        description="Move dataset roots, checkpoints and predictions between local folders and "
        "s3://bucket/prefix. " + ENV_HELP,
    )
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    push = cmds.add_parser(
        "push",
        help="upload a local file or folder to s3://bucket/prefix",
        description="Upload SRC (a file or a folder, recursively) to DST. " + ENV_HELP,
    )
    push.add_argument("src", help="local file or folder")
    push.add_argument("dst", help="s3://bucket/prefix (or a local path: plain copy)")
    pull = cmds.add_parser(
        "pull",
        help="download s3://bucket/prefix into a local folder",
        description="Download the object SRC or every object under the prefix SRC into DST. " + ENV_HELP,
    )
    pull.add_argument("src", help="s3://bucket/prefix or s3://bucket/key (or a local path: plain copy)")
    pull.add_argument("dst", help="local folder (or file, for a single object)")
    for c in (push, pull):
        c.add_argument("--workers", type=int, default=None, help=f"parallel transfers (default {DEFAULT_WORKERS})")
        c.add_argument("--no-progress", action="store_true", help="no progress bar")
    push.set_defaults(func=run_push)
    pull.set_defaults(func=run_pull)


def run_push(args) -> int:
    from model.storage import upload

    report = upload(args.src, args.dst, progress=not args.no_progress, **_workers(args))
    print(f"{args.src} -> {args.dst}: {report.summary()}")
    return 0


def run_pull(args) -> int:
    from model.storage import download

    report = download(args.src, args.dst, progress=not args.no_progress, **_workers(args))
    print(f"{args.src} -> {args.dst}: {report.summary()}")
    return 0


def _workers(args) -> dict:
    return {} if args.workers is None else {"workers": args.workers}

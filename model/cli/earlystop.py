"""`receiptflow earlystop serve`: Katib's EarlyStopping gRPC service, algorithm `medianstop-floor`.

    receiptflow earlystop serve [--port 6788] [--host 0.0.0.0]

The service lives in earlystop/ (imported only when the command runs: grpc stays out of --help).
"""

from __future__ import annotations

# Katib's early-stopping services listen on 6788 (pkg/controller.v1beta1/consts/const.go:89 at v0.19.0,
# DefaultEarlyStoppingPort); the suggestion controller dials that port in the suggestion pod.
DEFAULT_PORT = 6788


def register(sub) -> None:
    p = sub.add_parser(
        "earlystop",
        help="serve the medianstop-floor early-stopping algorithm to Katib",
        description="Katib early stopping that never stops a trial at or above an absolute floor: a trial "
        "stops at its start_step-th report if its best value so far is worse than min(median, floor).",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = verbs.add_parser(
        "serve",
        help="run the gRPC service until SIGTERM",
        description="Katib's EarlyStopping gRPC API (v1beta1); one log line per call. Settings come "
        "with every call (min_trials_required, start_step, floor), observation logs from Katib's DB manager.",
    )
    s.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}, Katib's)"
    )
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    s.set_defaults(func=_serve)


def _serve(args) -> int:
    import logging

    from earlystop.service import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    serve(args.host, args.port)
    return 0

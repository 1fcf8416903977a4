"""Katib's side of early stopping, for tests/test_earlystop_service.py, as Katib v0.19.0 does it:

- `DBManager`: a real gRPC server (Katib's DBManager service from earlystop/proto/katib_api.proto,
  on loopback) that stores what ReportObservationLog sends and answers GetObservationLog with a
  trial's logs of one metric ordered by time, as katib-db-manager's MySQL backend does
  (pkg/db/v1beta1/mysql/mysql.go:109-175: `WHERE trial_name = ? AND metric_name = ? ORDER BY time`).
- `collect_observation_log`: what the StdOut/File collector reports for a trial when it ends
  (pkg/metricscollector/v1beta1/file-metricscollector/file-metricscollector.go:71-159, text format).
- `collector_stops`: whether the collector's rule check stops a trial while it prints these lines
  (cmd/metricscollector/v1beta1/file-metricscollector/main.go:147-262,336-386): the objective's best
  value so far, compared once, at its start_step-th report.
"""

from __future__ import annotations

import re
from concurrent import futures
from contextlib import contextmanager
from datetime import datetime, timezone

import grpc

from earlystop.api import pb2, services

# pkg/metricscollector/v1beta1/common/const.go:47; our Experiments set model.metric_lines.KATIB_METRICS_FILTER
DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's time.Time{}.UTC().Format(time.RFC3339)
UNAVAILABLE = "unavailable"  # pkg/controller.v1beta1/consts/const.go UnavailableMetricValue
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc)


def collect_observation_log(text: str, metrics: list[str], filters: list[str]) -> list[tuple[str, str, str]]:
    """(timestamp, metric name, value) for every match of `metrics` in the lines; the objective
    (metrics[0]) as "unavailable" if it was never printed (newObservationLog)."""
    regexps = [re.compile(f) for f in (filters or [DEFAULT_FILTER])]
    logs = []
    for line in text.split("\n"):
        if not any(m in line for m in metrics):
            continue
        first, sep, _ = line.partition(" ")
        stamp = first if sep and RFC3339.match(first) else ZERO_TIME
        for regexp in regexps:
            for match in regexp.finditer(line):
                if match.re.groups < 2:
                    continue
                name, value = match.group(1).strip(), match.group(2).strip()
                if name in metrics:
                    logs.append((stamp, name, value))
    if not any(name == metrics[0] for _, name, _ in logs):
        return [(ZERO_TIME, metrics[0], UNAVAILABLE)]
    return logs


def collector_stops(text: str, rules, objective: str, goal: str, filters: list[str]) -> int | None:
    """The report (1-based count of the rule metric's values) at which the collector stops the
    trial, or None. `rules` are EarlyStoppingRule messages; all must fire for a stop."""
    regexps = [re.compile(f) for f in filters]
    pending = list(rules)
    steps = {r.name: r.start_step for r in rules if r.start_step}
    optimal = None
    reports = 0
    for line in text.split("\n"):
        if not any(r.name in line for r in pending):
            continue
        for regexp in regexps:
            for match in regexp.finditer(line):
                name, value = match.group(1).strip(), float(match.group(2).strip())
                for r in list(pending):
                    if name != r.name:
                        continue
                    if name == objective:
                        reports += 1
                        optimal = value if optimal is None else (max if goal == "maximize" else min)(optimal, value)
                        value = optimal
                    if r.name in steps:
                        steps[r.name] -= 1
                        if steps[r.name] != 0:
                            continue  # checked only when it reaches 0: once, at start_step
                    limit = float(r.value)
                    if (
                        (r.comparison == pb2.EQUAL and value == limit)
                        or (r.comparison == pb2.LESS and value < limit)
                        or (r.comparison == pb2.GREATER and value > limit)
                    ):
                        pending.remove(r)
        if not pending:
            return reports
    return None


class DBManager(services.DBManagerServicer):
    def __init__(self):
        self.logs: dict[str, list[tuple[str, str, str]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.down = False  # answer UNAVAILABLE, like a DB manager whose MySQL is gone

    def report(self, trial: str, logs: list[tuple[str, str, str]]) -> None:
        self.logs.setdefault(trial, []).extend(logs)

    def ReportObservationLog(self, request, context):
        self.report(
            request.trial_name,
            [(m.time_stamp, m.metric.name, m.metric.value) for m in request.observation_log.metric_logs],
        )
        return pb2.ReportObservationLogReply()

    def GetObservationLog(self, request, context):
        self.requests.append((request.trial_name, request.metric_name))
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "Failed to get ObservationLogs: dial tcp: connection refused")
        rows = [
            r for r in self.logs.get(request.trial_name, []) if not request.metric_name or r[1] == request.metric_name
        ]
        rows.sort(key=lambda r: _time(r[0]))  # ORDER BY time (stable, as MySQL happens to be for equal times)
        return pb2.GetObservationLogReply(
            observation_log=pb2.ObservationLog(
                metric_logs=[pb2.MetricLog(time_stamp=t, metric=pb2.Metric(name=n, value=v)) for t, n, v in rows]
            )
        )


@contextmanager
def serving(servicer, add):
    """`servicer` on a free loopback port through `add(servicer, server)`; yields "127.0.0.1:PORT"."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


@contextmanager
def dbmanager(db: DBManager | None = None):
    db = db or DBManager()
    with serving(db, services.add_DBManagerServicer_to_server) as address:
        yield db, address

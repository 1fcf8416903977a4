"""The per-epoch metric line that training prints (DESIGN §3) and the filter Katib reads it with.

Torch-free, so that what renders Katib Experiments (pipelines/sweep.py) and the tests that parse
training output import it without the training stack.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

# The StdOut metrics filter our Katib Experiments use. Katib's default, `([\w|-]+)\s*=\s*...`, does
# not match the "/" of val/hmean; tests parse real training output with exactly this one. The value
# must hold a digit: Katib's default value part (`\d*(\.\d+)?...`) also matches the empty string, so
# `train/loss=nan` would yield "" and, once stop rules are active, the collector's
# strconv.ParseFloat fails and klog.Fatalf kills it (katib v0.19.0
# cmd/metricscollector/v1beta1/file-metricscollector/main.go:205-216 parses every match on the line).
# Group 1 is the name, group 2 the value (the webhook requires two groups: pkg/webhook/v1beta1/
# experiment/validator/validator.go:557-570); no ";" (the collector splits its -f flag on it, main.go:404).
KATIB_METRICS_FILTER = r"([\w|/-]+)\s*=\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[Ee][+-]?\d+)?)"


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-29T04:12:36.120Z``."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def metric_lines(metrics: dict) -> list[str]:
    """The epoch's metric line, and a note when a value is not finite.

    The line starts with ``metrics["time"]`` and a space: Katib's collector takes the first
    space-separated token as the observation time when time.Parse(RFC3339Nano) accepts it, else
    stamps 0001-01-01 (katib v0.19.0 pkg/metricscollector/v1beta1/file-metricscollector/
    file-metricscollector.go:89-99), and the DB orders observations by time alone (pkg/db/v1beta1/
    mysql/mysql.go:134), so without it median stop's "first start_step values" and "latest" are
    arbitrary. A nan/inf value is left out of the line (the collector dies on a value that is not a
    float once stop rules are active) and named on a second line without "=", which no filter matches.
    """
    finite = {k: v for k, v in metrics.items() if k != "time" and not (isinstance(v, float) and not math.isfinite(v))}
    lines = [f"{metrics['time']} " + " ".join(f"{k}={v!r}" for k, v in finite.items())]
    bad = [f"{k} is {v!r}" for k, v in metrics.items() if k != "time" and k not in finite]
    if bad:
        lines.append(f"epoch {metrics.get('epoch')}: not finite, left out of the metric line: {', '.join(bad)}")
    return lines

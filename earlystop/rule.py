"""The `medianstop-floor` rule: a true median over comparable trials, capped by an absolute floor.

Pure Python (no gRPC, no Kubernetes) so the service and the replay harness decide identically.

Katib's rule shape is fixed by its metrics collector: a rule is (metric, value, comparison,
start_step) and the collector checks it once, when the trial has reported `start_step` values,
against the best value so far (Katib v0.19.0 cmd/metricscollector/v1beta1/file-metricscollector/
main.go). So the only freedom we have is *which value* the service hands out; this module
computes it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

ALGORITHM_NAME = "medianstop-floor"
GOALS = ("maximize", "minimize")

# Katib's medianstop defaults (pkg/earlystopping/v1beta1/medianstop/service.py at v0.19.0,
# MedianStopService.__init__): keep them so switching algorithms changes only the rule.
DEFAULT_MIN_TRIALS_REQUIRED = 3
DEFAULT_START_STEP = 4


def _check_goal(goal: str) -> None:
    if goal not in GOALS:
        raise ValueError(f"goal must be 'maximize' or 'minimize', got {goal!r}")


def best_so_far(values: Sequence[float], goal: str, start_step: int) -> float | None:
    """Best of the first `start_step` reported values, or None if fewer were reported.

    This is what Katib's collector compares with the rule's value at `start_step`, so it is also
    the value we compare trials on ("comparable").
    """
    _check_goal(goal)
    if start_step < 1:
        raise ValueError(f"start_step must be >= 1, got {start_step}")
    if len(values) < start_step:
        return None
    head = [float(v) for v in values[:start_step]]
    return max(head) if goal == "maximize" else min(head)


def stop_value(comparable: Sequence[float], goal: str, floor: float | None, min_trials_required: int) -> float | None:
    """The rule's value: stop a trial whose best so far at start_step is worse than this.

    `comparable` holds, for every trial that has reached start_step -- finished or still running --
    its `best_so_far(..., start_step)`. Counting running trials is deliberate: Katib's medianstop
    averages only *succeeded* trials, so early in a sweep (when most trials are still running)
    it has no rule at all, and later the bar is set by whichever trials happened to finish first.
    Judging every trial against all trials that got as far as it did -- the way Hyperband compares
    a rung -- is fairer and available sooner. Trials that never reached start_step say nothing
    about the value at start_step and are left out. (Which trials are visible is the caller's
    business: in a cluster, Katib's StdOut/File collector sends a trial's log to the DB only when the
    trial ends, so the service sees running trials only with a push collector; see service.py.)

    Returns None (no rule) with fewer than `min_trials_required` comparable values. Otherwise,
    for maximize, min(true median, floor): a trial stops if its best so far is < that, so a trial
    at or above the floor is never stopped. For minimize it is max(median, floor) and a trial
    stops if its best so far is > that. With floor None it is the plain median.
    """
    _check_goal(goal)
    if min_trials_required < 1:
        raise ValueError(f"min_trials_required must be >= 1, got {min_trials_required}")
    values = [float(v) for v in comparable]
    if len(values) < min_trials_required or not values:
        return None
    median = statistics.median(values)  # true median (mean of the middle two when even)
    if floor is None:
        return median
    return min(median, floor) if goal == "maximize" else max(median, floor)


def should_stop(best: float, value: float, goal: str) -> bool:
    """Katib's comparison: LESS for maximize, GREATER for minimize (strict, as the collector does)."""
    _check_goal(goal)
    return best < value if goal == "maximize" else best > value


@dataclass(frozen=True)
class Settings:
    min_trials_required: int = DEFAULT_MIN_TRIALS_REQUIRED
    start_step: int = DEFAULT_START_STEP
    floor: float | None = None


def _int_at_least_one(name: str, raw: str) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer >= 1, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {raw!r}")
    return value


def parse_settings(settings: Iterable[tuple[str, str]]) -> Settings:
    """Settings from Katib's (name, value) strings; ValueError naming the setting on any bad one.

    Unknown names are refused (as Katib's medianstop does) so a typo never silently means
    "no floor".
    """
    parsed: dict[str, object] = {}
    for name, raw in settings:
        if name in parsed:
            raise ValueError(f"{name} is given twice; give it once")
        if name in ("min_trials_required", "start_step"):
            parsed[name] = _int_at_least_one(name, raw)
        elif name == "floor":
            try:
                value = float(str(raw).strip())
            except ValueError:
                raise ValueError(f"floor must be a number (the objective value never stopped), got {raw!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"floor must be a finite number, got {raw!r}")
            parsed[name] = value
        else:
            raise ValueError(
                f"unknown setting {name!r} for algorithm {ALGORITHM_NAME}; "
                "known: min_trials_required, start_step, floor"
            )
    return Settings(**parsed)  # type: ignore[arg-type]

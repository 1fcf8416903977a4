"""Katib v0.19.0's built-in `medianstop`, replicated for the replay harness (earlystop/replay.py).

Pure Python, the upstream semantics exactly (file:line at tag v0.19.0):

- Defaults min_trials_required 3, start_step 4
  (pkg/earlystopping/v1beta1/medianstop/service.py:43-45).
- A trial's contribution is the AVERAGE of its first start_step reported objective values
  (service.py:208-219: `metric_logs[:start_step]`, sum / len), taken only from trials whose latest
  condition is Succeeded (service.py:189-194; the controller sends only the latest condition,
  pkg/controller.v1beta1/suggestion/suggestionclient/suggestionclient.go:372-375, and an
  early-stopped trial's is EarlyStopped, suggestionclient.go:411-412, so it never counts).
- The rule value is the MEAN of those averages, not a median, and exists once at least
  min_trials_required trials succeeded (service.py:230-243).
- Comparison LESS for maximize, GREATER for minimize (service.py:141-144).
- Rules are requested with each new suggestion, i.e. when a trial is created
  (suggestionclient.go:131-160), and stay fixed for that trial.
- The metrics collector checks the rule ONCE, at the start_step-th report of the objective, against
  the best value so far (cmd/metricscollector/v1beta1/file-metricscollector/main.go:350-369: the
  counter hits 0 once; later reports take it below 0 and return early), strictly
  (main.go:380-383); a rule that holds is deleted and a trial with no rule left is stopped
  (main.go:264-266).
"""

from __future__ import annotations

from typing import Iterable, Sequence

ALGORITHM_NAME = "medianstop"
DEFAULT_MIN_TRIALS_REQUIRED = 3  # service.py:44
DEFAULT_START_STEP = 4  # service.py:45


def early_average(values: Sequence[float], start_step: int) -> float:
    """A succeeded trial's contribution: the mean of its first start_step values (fewer if it reported fewer)."""
    head = [float(v) for v in values[:start_step]]
    if not head:  # upstream divides by len(first_x_logs) == 0 here (service.py:219) and the call fails
        raise ValueError("a succeeded trial with no reported objective value has no early average (Katib fails here)")
    return sum(head) / len(head)


def rule_value(
    succeeded: Iterable[Sequence[float]],
    *,
    start_step: int = DEFAULT_START_STEP,
    min_trials_required: int = DEFAULT_MIN_TRIALS_REQUIRED,
) -> float | None:
    """The value medianstop hands a new trial, from the curves of the trials that have Succeeded so far;
    None (no rule) with fewer than min_trials_required of them."""
    averages = [early_average(v, start_step) for v in succeeded]
    if len(averages) < min_trials_required:
        return None
    return sum(averages) / len(averages)


def collector_stops(
    values: Sequence[float], value: float | None, *, start_step: int = DEFAULT_START_STEP, goal: str = "maximize"
) -> bool:
    """Whether Katib's collector stops a trial holding rule `value` with these reports: once, at the
    start_step-th report, the best so far strictly worse than `value`. No rule or too few reports: never."""
    if value is None or len(values) < start_step:
        return False
    head = [float(v) for v in values[:start_step]]
    if goal == "maximize":
        return max(head) < value
    if goal == "minimize":
        return min(head) > value
    raise ValueError(f"goal must be 'maximize' or 'minimize', got {goal!r}")

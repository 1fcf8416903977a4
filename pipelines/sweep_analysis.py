"""The sweep's statistics (pipelines/sweep_report.py writes them up): ranking by absolute metric
with early-stopped trials included, statistics with and without outliers, per-parameter buckets,
early-stopped trials that beat every completed one, the recommended replication config and its
fallback, and the comparison with the figures a report claims.

Outlier rule: a metric is an outlier when it lies more than 3 × 1.4826 × MAD from the median
(MAD = median absolute deviation; 1.4826 × MAD estimates σ for normal data). On the seed's 12 runs
it flags Run 1 (0.8606) and nothing else.

Statistics use the sample standard deviation (ddof=1); z of the best = (best − mean) / sd.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from components.katib.trials import Trial, best_trial, natural_key, rank_trials

# The seed report's §6.1 figures (percent of val/hmean; z in σ), as printed there.
SEED_CLAIMS: dict[str, float] = {
    "mean": 95.74,
    "median": 96.21,
    "std": 2.83,
    "max": 96.60,
    "min": 86.06,
    "mean_without_outliers": 96.22,
    "median_without_outliers": 96.23,
    "std_without_outliers": 0.26,
    "z_best_without_outliers": 1.46,
}

OUTLIER_RULE = "|metric − median| > 3 × 1.4826 × MAD (MAD = median absolute deviation from the median)"
_MAD_SCALE = 1.4826
_MAD_K = 3.0


@dataclass
class Stats:
    n: int
    mean: float
    median: float
    std: float | None  # sample sd (ddof=1); None for n < 2
    min: float
    max: float
    z_best: float | None  # (best − mean) / std, best = max when maximizing


@dataclass
class Bucket:
    label: str
    count: int
    mean: float | None
    max: float | None
    trials: list[str]


@dataclass
class Analysis:
    objective: str
    maximize: bool
    ranking: list[Trial]  # rankable trials, best first (ties: natural name order)
    excluded: list[Trial]  # failed / killed / metrics-unavailable / no metric
    stats: Stats
    outliers: list[Trial]
    stats_without_outliers: Stats
    early_beat_completed: list[Trial]  # early-stopped trials better than every Succeeded one
    recommended: Trial
    fallback: Trial | None  # best Succeeded trial other than `recommended`
    buckets: dict[str, list[Bucket]] = field(default_factory=dict)
    bucket_kind: dict[str, str] = field(default_factory=dict)  # "log", "linear" or "category"


def compute_stats(values: list[float], *, maximize: bool = True) -> Stats:
    """n, mean, median, sample sd (ddof=1), min, max and z of the best value."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    best = max(values) if maximize else min(values)
    z = (best - mean) / sd if sd else None
    return Stats(
        n=len(values), mean=mean, median=statistics.median(values), std=sd, min=min(values), max=max(values), z_best=z
    )


def find_outliers(values: list[float]) -> list[int]:
    """Indices of outliers by OUTLIER_RULE (none when MAD is 0 or fewer than 3 values)."""
    if len(values) < 3:
        return []
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    if mad == 0:
        return []
    return [i for i, v in enumerate(values) if abs(v - med) > _MAD_K * _MAD_SCALE * mad]


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) for v in values)


def _kind(values: list) -> str:
    if not _numeric(values) or all(float(v).is_integer() for v in values):
        return "category"
    return "log" if min(values) > 0 else "linear"


def fmt_num(v: float | str) -> str:
    """Full precision, shortest round-trip form; integral floats without '.0' (T_max=24)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def fmt_short(v: float | str) -> str:
    """Three significant digits for a non-integral float (a table cell); else as fmt_num."""
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}"
    return fmt_num(v)


def bucketize(trials: list[Trial], param: str) -> tuple[str, list[Bucket]]:
    """Buckets of one parameter over trials with a metric: categories for strings and integral
    values (T_max); else log-spaced (all positive) or linear buckets, k = clamp(round(√n), 2, 4),
    edges from the smallest to the largest value, last bucket closed."""
    pts = [(t.parameters[param], t) for t in trials if param in t.parameters and t.metric is not None]
    values = [v for v, _ in pts]
    kind = _kind(values)
    groups: dict[str, list[Trial]] = {}
    if kind == "category":
        for v in sorted(set(values), key=lambda x: (isinstance(x, str), x)):
            groups[f"{param}={fmt_num(v)}"] = [t for w, t in pts if w == v]
    else:
        lo, hi = min(values), max(values)
        k = max(2, min(4, round(math.sqrt(len(values)))))
        if lo == hi:
            groups[f"{param}={fmt_short(lo)}"] = [t for _, t in pts]
        else:
            f = math.log if kind == "log" else (lambda x: x)
            span = f(hi) - f(lo)
            edges = [math.exp(f(lo) + span * i / k) if kind == "log" else lo + span * i / k for i in range(k + 1)]
            edges[0], edges[-1] = lo, hi
            members: list[list[Trial]] = [[] for _ in range(k)]
            for v, t in pts:
                members[min(k - 1, int((f(v) - f(lo)) / span * k))].append(t)
            for i in range(k):
                groups[f"[{edges[i]:.3g}, {edges[i + 1]:.3g}{']' if i == k - 1 else ')'}"] = members[i]
    buckets = []
    for label, ts in groups.items():
        ms = [t.metric for t in ts]
        buckets.append(
            Bucket(
                label=label,
                count=len(ts),
                mean=statistics.fmean(ms) if ms else None,
                max=max(ms) if ms else None,
                trials=[t.name for t in sorted(ts, key=lambda t: natural_key(t.name))],
            )
        )
    return kind, buckets


def analyze(trials: list[Trial], *, objective: str = "val/hmean", maximize: bool = True) -> Analysis:
    """The whole analysis; raises DataError when no trial has a usable metric. Ranked: Succeeded,
    EarlyStopped, Running and Pending trials with a metric (components.katib.trials.RANKABLE)."""
    recommended = best_trial(trials, maximize=maximize, objective=objective)
    ranking = rank_trials(trials, maximize=maximize)
    excluded = [t for t in trials if not any(t is r for r in ranking)]
    values = [t.metric for t in ranking]
    out_idx = set(find_outliers(values))
    outliers = [ranking[i] for i in sorted(out_idx)]
    kept = [v for i, v in enumerate(values) if i not in out_idx]
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)
    completed = [t for t in ranking if t.status == "Succeeded"]
    early = []
    if completed:
        best_done = completed[0].metric
        early = [t for t in ranking if t.status == "EarlyStopped" and better(t.metric, best_done)]
    fallback = next((t for t in completed if t is not recommended), None)
    params: list[str] = []
    for t in ranking:
        for p in t.parameters:
            if p not in params:
                params.append(p)
    buckets, kinds = {}, {}
    for p in params:
        kinds[p], buckets[p] = bucketize(ranking, p)
    return Analysis(
        objective=objective,
        maximize=maximize,
        ranking=ranking,
        excluded=excluded,
        stats=compute_stats(values, maximize=maximize),
        outliers=outliers,
        stats_without_outliers=compute_stats(kept or values, maximize=maximize),
        early_beat_completed=early,
        recommended=recommended,
        fallback=fallback,
        buckets=buckets,
        bucket_kind=kinds,
    )


def compare_claims(analysis: Analysis, claimed: dict[str, float], *, decimals: int = 2) -> list[dict]:
    """Claimed vs computed for each claim key. Metric-valued claims are in percent (metric × 100),
    z in σ. A claim differs when |claimed − computed| exceeds half a unit of the claim's last
    place (0.005 for 2 decimals): more than rounding explains."""
    s, w = analysis.stats, analysis.stats_without_outliers
    computed = {
        "mean": s.mean * 100,
        "median": s.median * 100,
        "std": (s.std or 0) * 100,
        "max": s.max * 100,
        "min": s.min * 100,
        "z_best": s.z_best,
        "mean_without_outliers": w.mean * 100,
        "median_without_outliers": w.median * 100,
        "std_without_outliers": (w.std or 0) * 100,
        "z_best_without_outliers": w.z_best,
        "max_without_outliers": w.max * 100,
        "min_without_outliers": w.min * 100,
    }
    half = 0.5 * 10**-decimals + 1e-9
    rows = []
    for key, claim in claimed.items():
        if key not in computed:
            raise KeyError(f"unknown claim {key!r}; known: {', '.join(computed)}")
        value = computed[key]
        rows.append(
            {"key": key, "claimed": claim, "computed": value, "differs": value is None or abs(claim - value) > half}
        )
    return rows

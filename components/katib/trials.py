"""The normalized sweep trial record and its loaders.

A `Trial` is what the sweep report needs from one Katib Trial (or one row of an exported sweep
table): its name, its hyperparameters, the objective's best value, its final status, every
metric's best value and, where an export has it, the objective per epoch.

Sources:
- `trial_from_katib(obj)`: one kubeflow.org/v1beta1 Trial custom object exactly as the cluster
  returns it (`kubectl get trial NAME -o json`);
- `list_trials(experiment, namespace)`: every Trial of a Katib Experiment, from the cluster;
- `load_trials(path)`: a JSON export (a list of Trial objects, `kubectl get trials -o json`'s
  `{"items": [...]}`, or a list of flat records) or a CSV table.

Parameter values: anything that parses as a number becomes a `float` (Katib stores every
assignment as a string, so T_max "24" becomes 24.0); anything else stays a `str`. CSV and flat
JSON records are normalized the same way, so a trial reads the same from every source.

A plain module (see components/katib/__init__.py for why it lives here); the kubernetes
client (components/kube.py) is imported only inside `list_trials`.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from model.errors import DataError

KATIB_GROUP = "kubeflow.org"
KATIB_VERSION = "v1beta1"
KATIB_TRIALS = "trials"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"

# Katib Trial condition types that decide a trial's status (see katib pkg/apis/.../trial_types.go).
STATUSES = ("Succeeded", "EarlyStopped", "Failed", "Killed", "MetricsUnavailable", "Running", "Pending")
_CONDITION_TYPES = {
    "Created": "Pending",
    "Running": "Running",
    "Succeeded": "Succeeded",
    "EarlyStopped": "EarlyStopped",
    "Failed": "Failed",
    "Killed": "Killed",
    "MetricsUnavailable": "MetricsUnavailable",
}
# Statuses whose metric may be ranked; Failed / Killed / MetricsUnavailable never are.
RANKABLE = ("Succeeded", "EarlyStopped", "Running", "Pending")
# Flat-record / CSV spellings accepted for a status (the seed's Korean ones included).
_STATUS_ALIASES = {s.lower(): s for s in STATUSES} | {
    "early_stopped": "EarlyStopped",
    "early-stopped": "EarlyStopped",
    "earlystopped": "EarlyStopped",
    "stopped": "EarlyStopped",
    "종료됨": "EarlyStopped",
    "완료": "Succeeded",
    "completed": "Succeeded",
    "finished": "Succeeded",
    "complete": "Succeeded",
    "metrics_unavailable": "MetricsUnavailable",
    "created": "Pending",
    "실패": "Failed",
}


@dataclass
class Trial:
    """One sweep trial, normalized.

    metric: the objective's best value reached (maximize: the observation's `max`, else `latest`;
    minimize: `min`, else `latest`); None when the trial reported nothing.
    status: one of STATUSES.
    metrics: every observed metric's best value (by its Katib metric strategy where the trial
    spec names one, else by the objective's direction).
    curve: the objective per epoch, when an export carries it.
    """

    name: str
    parameters: dict[str, float | str]
    metric: float | None
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    curve: list[float] | None = None


def _number(value: Any) -> float | None:
    """A finite float from a number or numeric string; None otherwise ("unavailable", "", None)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def parameter_value(value: Any) -> float | str:
    """The normalized parameter value: numbers (and numeric strings) → float, else str."""
    x = _number(value)
    return x if x is not None else str(value)


def status_from_conditions(conditions: Iterable[dict] | None) -> str:
    """The trial status: the last condition with status "True" among the known types; "Pending"
    when none (a trial the controller has not picked up yet)."""
    status = "Pending"
    for cond in conditions or []:
        kind = _CONDITION_TYPES.get(str(cond.get("type", "")))
        if kind is not None and str(cond.get("status", "")) == "True":
            status = kind
    return status


def normalize_status(text: str, *, where: str = "") -> str:
    """A status spelling from an export (e.g. "succeeded", "EarlyStopped", "종료됨") → one of STATUSES."""
    s = _STATUS_ALIASES.get(str(text).strip().lower())
    if s is None:
        raise DataError(f"{where}: unknown status {text!r}; expected one of {', '.join(STATUSES)}")
    return s


def _best_of(metric: dict, strategy: str) -> float | None:
    key = {"max": "max", "min": "min", "latest": "latest"}.get(strategy, "max")
    best = _number(metric.get(key))
    return best if best is not None else _number(metric.get("latest"))


def trial_from_katib(obj: dict, *, objective: str | None = None, maximize: bool | None = None) -> Trial:
    """A Trial from one Katib v1beta1 Trial object (the cluster's dict). The objective's name and
    direction come from spec.objective unless given."""
    try:
        meta = obj.get("metadata") or {}
        name = meta["name"]
    except (AttributeError, KeyError, TypeError):
        raise DataError(f"Katib Trial object without metadata.name: {str(obj)[:120]}") from None
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    obj_spec = spec.get("objective") or {}
    if objective is None:
        objective = obj_spec.get("objectiveMetricName") or "val/hmean"
    if maximize is None:
        maximize = str(obj_spec.get("type", "maximize")).lower() != "minimize"
    direction = "max" if maximize else "min"
    strategies = {
        s.get("name"): str(s.get("value", direction)).lower()
        for s in obj_spec.get("metricStrategies") or []
        if s.get("name")
    }

    params: dict[str, float | str] = {}
    for a in spec.get("parameterAssignments") or []:
        if "name" not in a:
            raise DataError(f"Katib Trial {name}: parameterAssignment without a name: {a}")
        params[a["name"]] = parameter_value(a.get("value"))

    metrics: dict[str, float] = {}
    for m in (status.get("observation") or {}).get("metrics") or []:
        mname = m.get("name")
        if not mname:
            continue
        strategy = direction if mname == objective else strategies.get(mname, direction)
        best = _best_of(m, strategy)
        if best is not None:
            metrics[mname] = best
    # The objective always follows the objective's direction (max, falling back to latest).
    metric = None
    for m in (status.get("observation") or {}).get("metrics") or []:
        if m.get("name") == objective:
            metric = _best_of(m, direction)
    return Trial(
        name=name,
        parameters=params,
        metric=metric,
        status=status_from_conditions(status.get("conditions")),
        metrics=metrics,
    )


def summarize(status: dict) -> str:
    """One line of an Experiment's status: trial counts and the current best."""
    counts = ", ".join(
        f"{status[k]} {k.removeprefix('trials').lower() or 'trials'}"
        for k in ("trials", "trialsSucceeded", "trialsEarlyStopped", "trialsRunning", "trialsFailed", "trialsKilled")
        if status.get(k)
    )
    best = (status.get("currentOptimalTrial") or {}).get("observation", {}).get("metrics") or []
    shown = ", ".join(f"{m['name']}={m.get('max', m.get('latest'))}" for m in best)
    return f"{counts or 'no trials yet'}" + (f"; best so far {shown}" if shown else "")


# the pipeline's hyperparameters -> the names a trial's parameters may carry (Katib's, or config keys)
TRIAL_PARAMETER_NAMES = {
    "lr": ("lr", "models.optimizer.lr"),
    "weight_decay": ("weight_decay", "models.optimizer.weight_decay"),
    "t_max": ("T_max", "t_max", "models.scheduler.T_max"),
    "eta_min": ("eta_min", "models.scheduler.eta_min"),
}


def trial_parameters(trial: Trial) -> tuple[float, float, int, float]:
    """(lr, weight_decay, T_max, eta_min) of a trial, as the pipeline's run8_* parameters take them."""
    found = []
    for key, names in TRIAL_PARAMETER_NAMES.items():
        value = next((trial.parameters[n] for n in names if n in trial.parameters), None)
        if not isinstance(value, float):
            raise DataError(
                f"trial {trial.name}: no numeric {key} among its parameters {sorted(trial.parameters)} "
                f"(expected one of {', '.join(names)})"
            )
        found.append(value)
    lr, weight_decay, t_max, eta_min = found
    if t_max != int(t_max):
        raise DataError(f"trial {trial.name}: T_max={t_max} is not a whole number of epochs")
    return lr, weight_decay, int(t_max), eta_min


def list_trials(experiment: str, namespace: str = "kubeflow") -> list[Trial]:
    """Every Trial of Katib Experiment `namespace/experiment`, from the cluster (kube config
    in-cluster, else the local kubeconfig), sorted by name."""
    try:
        from components.kube import ApiException, custom_objects_api
    except ImportError as e:  # pragma: no cover - kubernetes is a dependency
        raise RuntimeError(
            f"listing trials of Experiment {namespace}/{experiment} needs the kubernetes client: {e}"
        ) from e
    try:
        api = custom_objects_api()
        resp = api.list_namespaced_custom_object(
            KATIB_GROUP, KATIB_VERSION, namespace, KATIB_TRIALS, label_selector=f"{EXPERIMENT_LABEL}={experiment}"
        )
    except ApiException as e:
        raise DataError(
            f"cannot list Trials of Katib Experiment {namespace}/{experiment}: HTTP {e.status} {e.reason}"
        ) from None
    except Exception as e:  # config errors, connection refused, DNS, TLS
        raise DataError(
            f"cannot list Trials of Katib Experiment {namespace}/{experiment}: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    items = resp.get("items") or []
    if not items:
        raise DataError(
            f"Katib Experiment {namespace}/{experiment}: no Trials (label {EXPERIMENT_LABEL}={experiment}); "
            f"check the name with `kubectl -n {namespace} get experiments`"
        )
    return sorted((trial_from_katib(o) for o in items), key=lambda t: t.name)


def _parse_curve(value: Any, where: str) -> list[float] | None:
    if value is None or value == "":
        return None
    items = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise DataError(f"{where}: curve must be a list of numbers or ';'-separated numbers, got {value!r}")
    out = []
    for i, v in enumerate(items):
        x = _number(v.strip() if isinstance(v, str) else v)
        if x is None:
            raise DataError(f"{where}: curve value {i + 1} ({v!r}) is not a number")
        out.append(x)
    return out or None


def _trial_from_record(rec: Any, where: str) -> Trial:
    if not isinstance(rec, dict) or "name" not in rec:
        raise DataError(f"{where}: expected a Katib Trial object or a record with name, parameters, metric, status")
    metric = rec.get("metric")
    if metric is not None and _number(metric) is None:
        raise DataError(f"{where}: metric {metric!r} is not a number")
    params = rec.get("parameters") or {}
    if not isinstance(params, dict):
        raise DataError(f"{where}: parameters must be a mapping, got {type(params).__name__}")
    metrics = {str(k): float(v) for k, v in (rec.get("metrics") or {}).items() if _number(v) is not None}
    return Trial(
        name=str(rec["name"]),
        parameters={str(k): parameter_value(v) for k, v in params.items()},
        metric=_number(metric),
        status=normalize_status(rec.get("status", "Succeeded"), where=where),
        metrics=metrics,
        curve=_parse_curve(rec.get("curve"), where),
    )


def _load_json(path: Path) -> list[Trial]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        items = data["items"]
    elif isinstance(data, dict) and data.get("kind") == "Trial":
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise DataError(f'{path}: expected a list of trials or {{"items": [...]}} (kubectl get trials -o json)')
    trials = []
    for i, item in enumerate(items):
        where = f"{path}: item {i}"
        if isinstance(item, dict) and ("spec" in item or item.get("kind") == "Trial"):
            trials.append(trial_from_katib(item))
        else:
            trials.append(_trial_from_record(item, where))
    return trials


def _load_csv(path: Path) -> list[Trial]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in ("name", "status", "metric") if c not in cols]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}; expected name, status, metric, "
                f"one column per parameter, optional curve"
            )
        param_cols = [c for c in cols if c not in ("name", "status", "metric", "curve")]
        trials = []
        for row in reader:
            where = f"{path}: row {reader.line_num}"
            if None in row:
                raise DataError(f"{where}: more values than columns")
            name = (row["name"] or "").strip()
            if not name:
                raise DataError(f"{where}: empty name")
            text = (row["metric"] or "").strip()
            metric = _number(text) if text else None
            if text and metric is None:
                raise DataError(f"{where} ({name}): metric {text!r} is not a number")
            params = {}
            for c in param_cols:
                v = (row[c] or "").strip()
                if v == "":
                    raise DataError(f"{where} ({name}): empty value for parameter {c}")
                params[c] = parameter_value(v)
            trials.append(
                Trial(
                    name=name,
                    parameters=params,
                    metric=metric,
                    status=normalize_status(row["status"] or "", where=f"{where} ({name})"),
                    curve=_parse_curve((row.get("curve") or "").strip(), f"{where} ({name})"),
                )
            )
    if not trials:
        raise DataError(f"{path}: no trials (header only)")
    return trials


def load_trials(path: str | Path) -> list[Trial]:
    """Trials from an exported file: .json (Katib Trial objects, {"items": [...]}, or flat records
    {name, parameters, metric, status, curve?}) or .csv (name, status, metric, one column per
    parameter, optional curve of ';'-separated values)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    if path.suffix.lower() == ".json":
        return _load_json(path)
    raise DataError(f"{path}: unknown format {path.suffix!r}; expected .json or .csv")


def best_trial(trials: list[Trial], *, maximize: bool = True, objective: str = "val/hmean") -> Trial:
    """The best trial by absolute metric. Early-stopped trials count (the seed's best run was
    early-stopped); Failed, Killed, MetricsUnavailable and trials without a metric do not. Ties go
    to the earlier name. Raises DataError when no trial qualifies."""
    valid = [t for t in trials if t.status in RANKABLE and t.metric is not None]
    if not valid:
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        no_metric = sum(1 for t in trials if t.metric is None)
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
        raise DataError(
            f"no trial has a usable {objective} value among {len(trials)} trial(s) ({detail}; "
            f"{no_metric} without a metric); failed, killed and metrics-unavailable trials are not ranked"
        )
    sign = -1.0 if maximize else 1.0
    return min(valid, key=lambda t: (sign * t.metric, natural_key(t.name)))


def rank_trials(trials: list[Trial], *, maximize: bool = True) -> list[Trial]:
    """Rankable trials (see best_trial), best first; ties by name in natural order (run2 < run10),
    the same tie rule as best_trial, so rank_trials(...)[0] is best_trial(...)."""
    valid = [t for t in trials if t.status in RANKABLE and t.metric is not None]
    sign = -1.0 if maximize else 1.0
    return sorted(valid, key=lambda t: (sign * t.metric, natural_key(t.name)))


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically: run2 < run10."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name) if p)

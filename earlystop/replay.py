"""Replay a sweep's learning curves under an early-stopping policy: what would have been stopped, lost, saved.

Model (deterministic, time in epochs): trials are created in creation order into `parallel` slots
(Katib's parallelTrialCount); a trial created at time t reports its k-th value at t + k. It gets
its rule when it is created (Katib asks for rules with each new suggestion) from what the sweep
knows at that moment; the rule is checked once, at the start_step-th report, against the best so
far, and a stopped trial frees its slot at t + start_step, otherwise at t + len(values). Trials that
end at time t free their slots before the trials of time t are created. What the services can see:
Katib's StdOut/File collector writes a trial's observation log to the DB only when the trial ends,
stopped or not (cmd/metricscollector/v1beta1/file-metricscollector/main.go:297-299,428-431), so by
default ours counts only ended trials; `running_visible=True` models a collector that reports while
the trial runs (Katib's push collector), where running trials past start_step count too. Katib's objective `goal`
(stop the experiment once reached) is not modelled: every trial runs.

Policies: "none"; "medianstop" (Katib's, earlystop/katib_medianstop.py: mean of the early averages
of Succeeded trials); "medianstop-floor" (ours, earlystop/rule.py: true median of the best so far
at start_step over every trial that reached it -- finished, stopped or running -- capped by floor).

A trial's final value is its best over the whole curve (the objective's metricStrategy `max`,
pipelines/sweep.py METRIC_STRATEGIES). A false negative is a stopped trial whose final value is at
or above the floor (below, for minimize) or is the best of the sweep.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from earlystop import katib_medianstop
from earlystop.rule import best_so_far, should_stop, stop_value

POLICIES = ("medianstop", "medianstop-floor", "none")


@dataclass(frozen=True)
class Curve:
    name: str
    values: tuple[float, ...]
    created: int = 0  # creation order; ties keep file order


@dataclass(frozen=True)
class CurveSet:
    name: str
    trials: tuple[Curve, ...]
    goal: str = "maximize"
    defaults: dict = field(default_factory=dict)  # replay settings the fixture suggests (parallel, start_step, ...)


@dataclass(frozen=True)
class Outcome:
    name: str
    created: int
    start: int
    end: int
    rule: float | None
    stopped: bool
    final: float

    @property
    def epochs(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Result:
    policy: str
    outcomes: tuple[Outcome, ...]
    stopped: tuple[str, ...]
    false_negatives: tuple[str, ...]
    best_stopped: bool  # the sweep's best trial was stopped
    epochs_run: int
    epochs_saved: int  # vs no early stopping
    makespan: int  # epochs from the first creation to the last end
    best_found: float  # best final value among trials not stopped


def load_curves(path: str | Path) -> CurveSet:
    """A curves JSON: {"objective": "maximize", "trials": [{"name", "values" | flat form, "created"?}], "replay": {...}}.
    Flat form (only one value per trial is known): {"recorded_value": v, "epochs": n} -> n copies of v."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"curves file {p} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"curves file {p} is not JSON ({e}); see tests/fixtures/curves/ for the format") from None
    trials = []
    for i, t in enumerate(doc.get("trials") or []):
        if "values" in t:
            values = tuple(float(v) for v in t["values"])
        elif "recorded_value" in t and "epochs" in t:
            values = (float(t["recorded_value"]),) * int(t["epochs"])
        else:
            raise ValueError(f"{p}: trial {i} ({t.get('name', '?')}) needs 'values' or 'recorded_value' and 'epochs'")
        if not values:
            raise ValueError(f"{p}: trial {t.get('name', i)} has no values")
        trials.append(Curve(str(t.get("name", f"trial{i}")), values, int(t.get("created", i))))
    if not trials:
        raise ValueError(f"{p}: no trials (expected a 'trials' list)")
    goal = doc.get("objective", "maximize")
    if goal not in ("maximize", "minimize"):
        raise ValueError(f"{p}: objective must be 'maximize' or 'minimize', got {goal!r}")
    return CurveSet(p.stem, tuple(trials), goal, dict(doc.get("replay") or {}))


def _final(values: Sequence[float], goal: str) -> float:
    return max(values) if goal == "maximize" else min(values)


def _at_least(a: float, b: float, goal: str) -> bool:
    return a >= b if goal == "maximize" else a <= b


def replay(
    curves: CurveSet,
    policy: str,
    *,
    parallel: int = 2,
    start_step: int = 4,
    min_trials_required: int = 3,
    floor: float | None = None,
    running_visible: bool = False,
) -> Result:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    for name, v in (("parallel", parallel), ("start_step", start_step), ("min_trials_required", min_trials_required)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    goal = curves.goal
    order = sorted(enumerate(curves.trials), key=lambda it: (it[1].created, it[0]))
    pending = [c for _, c in order]
    done: list[Outcome] = []
    running: list[Outcome] = []
    t = 0
    while pending or running:
        running_now = []
        for o in running:  # trials ending now free their slots first
            (done if o.end <= t else running_now).append(o)
        running = running_now
        while pending and len(running) < parallel:
            c = pending.pop(0)
            rule = _rule(
                policy,
                goal,
                done + running if running_visible else done,
                t,
                curves,
                start_step,
                min_trials_required,
                floor,
            )
            stopped = (
                rule is not None
                and len(c.values) >= start_step
                and should_stop(best_so_far(c.values, goal, start_step), rule, goal)
            )
            end = t + (start_step if stopped else len(c.values))
            running.append(Outcome(c.name, c.created, t, end, rule, stopped, _final(c.values, goal)))
        if running:
            t = min(o.end for o in running)
    outcomes = tuple(sorted(done, key=lambda o: (o.start, o.created)))
    best = _final([o.final for o in outcomes], goal)
    stopped = tuple(o.name for o in outcomes if o.stopped)
    fn = tuple(
        o.name
        for o in outcomes
        if o.stopped and (o.final == best or (floor is not None and _at_least(o.final, floor, goal)))
    )
    total = sum(len(c.values) for c in curves.trials)
    run = sum(o.epochs for o in outcomes)
    kept = [o.final for o in outcomes if not o.stopped]
    return Result(
        policy,
        outcomes,
        stopped,
        fn,
        any(o.stopped and o.final == best for o in outcomes),
        run,
        total - run,
        max(o.end for o in outcomes),
        _final(kept, goal),
    )


def _rule(
    policy: str,
    goal: str,
    known: list[Outcome],
    t: int,
    curves: CurveSet,
    start_step: int,
    min_trials: int,
    floor: float | None,
) -> float | None:
    values = {c.name: c.values for c in curves.trials}
    if policy == "medianstop":  # Succeeded = ended by now and not stopped
        succeeded = [values[o.name] for o in known if o.end <= t and not o.stopped]
        return katib_medianstop.rule_value(succeeded, start_step=start_step, min_trials_required=min_trials)
    if policy == "medianstop-floor":  # every visible trial that has reported start_step values by now
        comparable = [
            best_so_far(values[o.name], goal, start_step)
            for o in known
            if len(values[o.name]) >= start_step and o.start + start_step <= t
        ]
        return stop_value(comparable, goal, floor, min_trials)
    return None


def replay_all(curves: CurveSet, **settings) -> list[Result]:
    return [replay(curves, p, **settings) for p in POLICIES]


def markdown_table(results: Sequence[Result], *, floor: float | None) -> str:
    none = next(r for r in results if r.policy == "none")
    bar = f"≥ floor {floor:g} or best" if floor is not None else "the best"
    lines = [
        f"| policy | trials stopped | false negatives ({bar}) | trial-epochs run | saved vs none | sweep length (epochs) | best kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fn = f"{len(r.false_negatives)}" + (f" ({', '.join(r.false_negatives)})" if r.false_negatives else "")
        pct = 100.0 * r.epochs_saved / (r.epochs_run + r.epochs_saved)
        lines.append(
            f"| {r.policy} | {len(r.stopped)} | {fn} | {r.epochs_run} | {r.epochs_saved} ({pct:.0f} %) | "
            f"{r.makespan} (none: {none.makespan}) | {r.best_found:.4f} |"
        )
    return "\n".join(lines)


def start_step_table(curves: CurveSet, start_steps: Sequence[int], **settings) -> str:
    """Per start_step, for Katib's medianstop and medianstop-floor: the best trial the sweep keeps (and
    whether it is the sweep's best), trials stopped, false negatives and trial-epochs saved; the
    question a user asks of early stopping: "do I keep the winner, and what do I save?"."""
    best = max if curves.goal == "maximize" else min
    overall = best(_final(t.values, curves.goal) for t in curves.trials)
    lines = [
        "| start_step | policy | best trial kept | trials stopped | false negatives | trial-epochs saved |",
        "|---|---|---|---|---|---|",
    ]
    for step in start_steps:
        for r in replay_all(curves, **{**settings, "start_step": step}):
            if r.policy == "none":
                continue
            total = r.epochs_run + r.epochs_saved
            kept = f"{r.best_found:.4f}" + ("" if r.best_found == overall else f" (**lost {overall:.4f}**)")
            fn = f"{len(r.false_negatives)}" + (f" ({', '.join(r.false_negatives)})" if r.false_negatives else "")
            lines.append(
                f"| {step} | {r.policy} | {kept} | {len(r.stopped)} | {fn} | "
                f"{r.epochs_saved} of {total} ({100.0 * r.epochs_saved / total:.0f} %) |"
            )
    return "\n".join(lines)


def as_json(results: Sequence[Result]) -> list[dict]:
    out = []
    for r in results:
        d = asdict(r)
        d["outcomes"] = [{**asdict(o), "epochs": o.epochs} for o in r.outcomes]
        out.append(d)
    return out

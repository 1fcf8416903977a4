"""`receiptflow sweep render|report`: the Katib Experiments and the sweep report.

receiptflow sweep render [--early-stopping medianstop|medianstop-floor] [--floor F]   # -> manifests/katib/[KIND/]*.yaml
receiptflow sweep report --experiment NAME [--namespace NS] [--out DIR]
receiptflow sweep report --from trials.json|trials.csv [--out DIR]
receiptflow sweep replay CURVES [--parallel N] [--floor X] [--start-step S] [--min-trials M] [--json]
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="render the Katib Experiments; report on a finished sweep",
        description="The seed's W&B sweep as Katib Experiments (Bayesian optimization, median stop) "
        "and its analysis as a report.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    r = verbs.add_parser(
        "render",
        help="write manifests/katib/*.yaml and its pytorchjob/, trainjob/ folders from pipelines/sweep.py (checked in)",
        description="Render the Katib Experiments. Image: RECEIPTFLOW_IMAGE, else the pinned default. "
        "No namespace is written: `kubectl apply -n NS -f FILE` or an overlay's `namespace:` sets it.",
    )
    r.add_argument("--out-dir", default=None, help="folder to write to (default manifests/katib/)")
    # defaults are pipelines/sweep.py's (the checked-in files); other values belong in --out-dir
    r.add_argument(
        "--early-stopping",
        choices=("medianstop", "medianstop-floor"),
        default=None,
        help="medianstop-floor (ours, default; registered in katib-config: docs/earlystop.md) or Katib's medianstop",
    )
    r.add_argument(
        "--floor",
        type=float,
        default=None,
        help="medianstop-floor: val/hmean at or above which a trial is never stopped (default 0.9653, the seed's baseline)",
    )
    r.add_argument("--start-step", type=int, default=None, help="report at which the rule is checked (default 10)")
    r.add_argument(
        "--min-trials-required",
        type=int,
        default=None,
        help="trials needed before any trial can be stopped (default 3)",
    )
    r.set_defaults(func=_render)

    rep = verbs.add_parser(
        "report",
        help="rank a sweep's trials and analyse them (Markdown + HTML with plots)",
        description="Trials from the cluster (Katib Trial resources, through your kubeconfig or the "
        "pod's service account) or from an export: `kubectl get trials -o json`, a JSON list, or a CSV "
        "with name, status, metric and one column per parameter. Ranks by the absolute metric, "
        "early-stopped trials included.",
    )
    src = rep.add_mutually_exclusive_group(required=True)
    src.add_argument("--experiment", help="Katib Experiment name")
    src.add_argument("--from", dest="from_file", help="exported trials (.json or .csv)")
    rep.add_argument(
        "--namespace",
        default=None,
        help="namespace of the Experiment (default: RECEIPTFLOW_NAMESPACE or the default of pipelines/sweep.py)",
    )
    rep.add_argument(
        "--out",
        default="build/sweep-report",
        help="folder for report.md, report.html, plots/ (default build/sweep-report)",
    )
    rep.add_argument("--title", default=None, help="report title")
    rep.add_argument(
        "--seed-claims",
        action="store_true",
        help="compare the statistics with the ones the seed report states (for the seed's 12 runs)",
    )
    rep.set_defaults(func=_report)

    rp = verbs.add_parser(
        "replay",
        help="replay learning curves under medianstop, medianstop-floor and no early stopping",
        description="Replay a sweep's trials in creation order with N parallel slots (time = epochs) "
        "under Katib's medianstop, our medianstop-floor and no early stopping; print trials stopped, "
        "false negatives (stopped trials whose final value is >= the floor or the sweep's best) and "
        "trial-epochs saved, as a Markdown table. Settings default to the curves file's 'replay' "
        "block, else parallel 2 and Katib's defaults (start_step 4, min_trials_required 3, no floor).",
    )
    rp.add_argument("curves", metavar="CURVES", help="curves JSON (tests/fixtures/curves/*.json)")
    rp.add_argument("--parallel", type=int, default=None, help="parallelTrialCount (slots)")
    rp.add_argument("--floor", type=float, default=None, help="objective value never stopped by medianstop-floor")
    rp.add_argument("--start-step", type=int, default=None, help="the report at which a rule is checked")
    rp.add_argument("--min-trials", type=int, default=None, help="min_trials_required")
    rp.add_argument(
        "--running-visible",
        action="store_true",
        help="medianstop-floor also sees running trials (a collector that reports while training, Katib's push "
        "collector); default: only ended ones, as with the StdOut collector the checked-in sweep uses",
    )
    rp.add_argument(
        "--start-steps",
        metavar="N,N,...",
        default=None,
        type=_start_steps,
        help="instead: one table over these start_steps (best trial kept, stopped, false negatives, epochs saved)",
    )
    rp.add_argument("--json", action="store_true", help="print the full result (every trial's outcome) as JSON")
    rp.set_defaults(func=_replay)


def _start_steps(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected start_steps like 2,4,6") from None


def _render(args) -> int:
    from pipelines.sweep import EARLY_STOPPING, early_stopping, render

    given = {
        k: v
        for k, v in (
            ("floor", args.floor),
            ("start_step", args.start_step),
            ("min_trials_required", args.min_trials_required),
        )
        if v is not None
    }
    if args.floor is not None and args.early_stopping == "medianstop":
        raise ValueError("--floor is a medianstop-floor setting; Katib's medianstop has none: drop --floor")
    early_stop = early_stopping(args.early_stopping or EARLY_STOPPING, **given)
    for path in render(args.out_dir, early_stop) if args.out_dir else render(early_stop=early_stop):
        print(f"wrote {path}")
    return 0


def _report(args) -> int:
    from components.katib.trials import list_trials, load_trials
    from pipelines.sweep import NAMESPACE
    from pipelines.sweep_report import SEED_CLAIMS, write_report

    if args.experiment:
        namespace = args.namespace or NAMESPACE
        trials = list_trials(args.experiment, namespace)
        title = args.title or f"Sweep {namespace}/{args.experiment}"
    else:
        trials = load_trials(args.from_file)
        title = args.title or f"Sweep {args.from_file}"
    written = write_report(trials, args.out, title=title, claimed=SEED_CLAIMS if args.seed_claims else None)
    print(f"{len(trials)} trials -> {written['markdown']} and {written['html']}")
    return 0


def _replay(args) -> int:
    import json
    import sys

    from earlystop.replay import as_json, load_curves, markdown_table, replay_all, start_step_table

    try:
        curves = load_curves(args.curves)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    d = curves.defaults
    pick = lambda given, key, default: given if given is not None else d.get(key, default)  # noqa: E731
    settings = {
        "parallel": pick(args.parallel, "parallel", 2),
        "start_step": pick(args.start_step, "start_step", 4),
        "min_trials_required": pick(args.min_trials, "min_trials_required", 3),
        "floor": pick(args.floor, "floor", None),
        "running_visible": bool(args.running_visible or d.get("running_visible", False)),
    }
    try:
        if args.start_steps:
            print(
                start_step_table(curves, args.start_steps, **{k: v for k, v in settings.items() if k != "start_step"})
            )
            return 0
        results = replay_all(curves, **settings)
    except ValueError as e:
        print(f"error: {e} (--parallel, --start-step and --min-trials must be >= 1)", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {"curves": args.curves, "goal": curves.goal, "settings": settings, "results": as_json(results)},
                indent=1,
            )
        )
        return 0
    s = settings
    print(
        f"{curves.name}: {len(curves.trials)} trials, {curves.goal}, parallel {s['parallel']}, start_step {s['start_step']}, "
        f"min_trials_required {s['min_trials_required']}, floor {s['floor']}, "
        f"running trials {'visible' if s['running_visible'] else 'not visible (StdOut collector)'}\n"
    )
    print(markdown_table(results, floor=s["floor"]))
    return 0

"""The sweep report: Katib trials (from the cluster or an export) → the seed's analysis.

`analyze(trials)` computes everything (ranking by absolute metric with early-stopped trials
included, statistics with and without outliers, per-parameter buckets, early-stopped trials that
beat every completed one, the recommended replication config and its fallback);
`write_report(trials, out_dir, title=...)` writes it as `report.md`, a standalone `report.html`
(plots embedded as base64 PNG) and `plots/*.png`.

Modules: pipelines/sweep_analysis.py computes, pipelines/sweep_plots.py draws, this module writes.

Outlier rule (stated in the report): a metric is an outlier when it lies more than
3 × 1.4826 × MAD from the median (MAD = median absolute deviation; 1.4826 × MAD estimates σ for
normal data). On the seed's 12 runs it flags Run 1 (0.8606) and nothing else.

Statistics use the sample standard deviation (ddof=1); z of the best = (best − mean) / sd.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from components.katib.trials import Trial
from model.report import table

# the statistics and the plots live in pipelines/sweep_analysis.py and pipelines/sweep_plots.py;
# their public names stay importable from here
from pipelines.sweep_analysis import (  # noqa: F401
    OUTLIER_RULE,
    SEED_CLAIMS,
    Analysis,
    Bucket,
    Stats,
    analyze,
    bucketize,
    compare_claims,
    compute_stats,
    find_outliers,
    fmt_num,
    fmt_short,
)
from pipelines.sweep_plots import draw_plots, slug

# Katib/seed parameter name (last dotted part, lower case) → training override key / pipeline parameter.
_OVERRIDE = {
    "lr": "models.optimizer.lr",
    "weight_decay": "models.optimizer.weight_decay",
    "t_max": "models.scheduler.T_max",
    "eta_min": "models.scheduler.eta_min",
}
_PIPELINE = {"lr": "lr", "weight_decay": "weight_decay", "t_max": "t_max", "eta_min": "eta_min"}

# ---------------------------------------------------------------- document model


def _stats_rows(s: Stats, label: str) -> list[str]:
    return [
        label,
        str(s.n),
        f"{s.mean:.6f}",
        f"{s.median:.6f}",
        "—" if s.std is None else f"{s.std:.6f}",
        f"{s.min:.4f}",
        f"{s.max:.4f}",
        "—" if s.z_best is None else f"{s.z_best:.3f}",
    ]


def _commands(t: Trial, fallback: Trial | None) -> list[str]:
    def key(p):
        return p.split(".")[-1].lower()

    train = [f"receiptflow train preset=efficientnet_b4_lr_optimized exp_name={slug(t.name)}_replication"]
    for p, v in t.parameters.items():
        train.append(f"{_OVERRIDE.get(key(p), p)}={fmt_num(v)}")
    train.append("trainer.max_epochs=22")
    pipe = ['receiptflow pipeline submit --host "$KFP_HOST"']
    for prefix, trial in (("run8", t), ("run3", fallback)):
        if trial is None:
            continue
        for p, v in trial.parameters.items():
            if key(p) in _PIPELINE:
                pipe.append(f"--param {prefix}_{_PIPELINE[key(p)]}={fmt_num(v)}")
    return [" \\\n  ".join(train), " \\\n  ".join(pipe)]


def _document(
    analysis: Analysis, plots: list[tuple[str, Path]], *, title: str, source_note: str, claims: list[dict] | None
) -> list[tuple]:
    """Blocks: ("h1"|"h2"|"p", text) | ("table", header, rows) | ("code", text) | ("img", caption, path) | ("ul", items)."""
    a = analysis
    params = list(a.buckets)
    direction = "maximize" if a.maximize else "minimize"
    doc: list[tuple] = [("h1", title)]
    if source_note:
        doc.append(("p", source_note))
    counts: dict[str, int] = {}
    for t in a.ranking + a.excluded:
        counts[t.status] = counts.get(t.status, 0) + 1
    doc.append(
        (
            "p",
            f"{len(a.ranking) + len(a.excluded)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
            f"objective `{a.objective}` ({direction}). Best by absolute metric: **{a.recommended.name}** "
            f"({a.recommended.status}, {a.recommended.metric:.4f}). Early-stopped trials are ranked with the rest.",
        )
    )

    doc.append(("h2", "Ranking (absolute metric, early-stopped trials included)"))
    rows = [
        [str(i + 1), t.name] + [fmt_short(t.parameters.get(p, "")) for p in params] + [f"{t.metric:.4f}", t.status]
        for i, t in enumerate(a.ranking)
    ]
    doc.append(("table", ["rank", "trial"] + params + [a.objective, "status"], rows))
    if a.excluded:
        doc.append(
            (
                "p",
                "Not ranked (failed, killed, metrics unavailable or no metric): "
                + ", ".join(f"{t.name} ({t.status})" for t in a.excluded),
            )
        )

    doc.append(("h2", "Early-stopped trials that beat every completed trial"))
    if a.early_beat_completed:
        best_done = next(t for t in a.ranking if t.status == "Succeeded")
        doc.append(
            (
                "ul",
                [
                    f"**{t.name}**: {t.metric:.4f} > best completed {best_done.name} {best_done.metric:.4f}"
                    for t in a.early_beat_completed
                ],
            )
        )
        doc.append(
            (
                "p",
                "A rule relative to other trials stopped these, not an absolute bar. Katib's median stop "
                "(katib v0.19.0 medianstop/service.py) compares a trial's best value so far, once, at its "
                "start_step-th report, with the mean (not the median) of the Succeeded trials' averages "
                "over their first start_step reports; the seed's Hyperband cut runs at fixed rungs. "
                "Judge trials by absolute metric.",
            )
        )
    else:
        doc.append(("p", "None."))

    doc.append(("h2", "Statistics"))
    doc.append(
        (
            "p",
            f"Outlier rule: {OUTLIER_RULE}. Outliers: "
            + (", ".join(f"{t.name} ({t.metric:.4f})" for t in a.outliers) or "none")
            + ". sd is the sample standard deviation (ddof=1); z of best = (best − mean) / sd.",
        )
    )
    doc.append(
        (
            "table",
            ["set", "n", "mean", "median", "sd", "min", "max", "z of best"],
            [_stats_rows(a.stats, "all"), _stats_rows(a.stats_without_outliers, "without outliers")],
        )
    )

    if claims is not None:
        doc.append(("h2", "Where the seed's arithmetic differs"))
        diff = [c for c in claims if c["differs"]]
        doc.append(
            (
                "p",
                "Claimed figures (percent; z in σ) against the figures computed from the same trials. "
                "A claim differs when it is off by more than rounding to its own precision.",
            )
        )
        doc.append(
            (
                "table",
                ["figure", "claimed", "computed", "verdict"],
                [
                    [
                        c["key"],
                        f"{c['claimed']:.2f}",
                        "—" if c["computed"] is None else f"{c['computed']:.4f}",
                        "**differs**" if c["differs"] else "agrees",
                    ]
                    for c in claims
                ],
            )
        )
        if diff:
            doc.append(
                (
                    "ul",
                    [
                        f"{c['key']}: claimed {c['claimed']:.2f}, computed {c['computed']:.2f}"
                        for c in diff
                        if c["computed"] is not None
                    ],
                )
            )

    doc.append(("h2", "Per-parameter buckets"))
    for p in params:
        kind = a.bucket_kind[p]
        doc.append(
            (
                "p",
                f"**{p}** ({'log-spaced buckets' if kind == 'log' else 'by value' if kind == 'category' else 'linear buckets'})",
            )
        )
        doc.append(
            (
                "table",
                ["bucket", "count", "mean", "max", "trials"],
                [
                    [
                        b.label,
                        str(b.count),
                        "—" if b.mean is None else f"{b.mean:.4f}",
                        "—" if b.max is None else f"{b.max:.4f}",
                        ", ".join(b.trials),
                    ]
                    for b in a.buckets[p]
                ],
            )
        )

    doc.append(("h2", "Recommended replication config"))
    r = a.recommended
    doc.append(("p", f"Best by absolute metric: **{r.name}** ({r.status}, {r.metric:.4f}). Full-precision parameters:"))
    doc.append(("table", ["parameter", "value"], [[p, fmt_num(v)] for p, v in r.parameters.items()]))
    if a.fallback is not None:
        doc.append(("p", f"Fallback (best completed trial): **{a.fallback.name}** ({a.fallback.metric:.4f}):"))
        doc.append(("table", ["parameter", "value"], [[p, fmt_num(v)] for p, v in a.fallback.parameters.items()]))
    else:
        doc.append(("p", "Fallback: no other completed (Succeeded) trial."))
    cmd_train, cmd_pipe = _commands(r, a.fallback)
    doc.append(("code", cmd_train))
    doc.append(("code", cmd_pipe))

    if plots:
        doc.append(("h2", "Plots"))
        for caption, path in plots:
            doc.append(("img", caption, path))
    return doc


def _to_markdown(doc: list[tuple], out_dir: Path) -> str:
    lines: list[str] = []
    for block in doc:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "code":
            lines += ["```bash", block[1], "```", ""]
        elif kind == "table":
            lines += [table(block[1], block[2]), ""]
        elif kind == "img":
            lines += [f"![{block[1]}]({block[2].relative_to(out_dir).as_posix()})", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape, then **bold** and `code` (the only inline markup the report uses)."""
    import re

    out = html.escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _to_html(doc: list[tuple], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "pre{background:#f4f4f4;padding:0.6em;overflow-x:auto}img{max-width:100%}</style>",
        "</head><body>",
    ]
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "code":
            parts.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
        elif kind == "table":
            parts.append(
                "<table><tr>"
                + "".join(f"<th>{_inline(h)}</th>" for h in block[1])
                + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block[2])
                + "</table>"
            )
        elif kind == "img":
            data = base64.b64encode(block[2].read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(block[1])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(block[1])}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    trials: list[Trial],
    out_dir: str | Path,
    *,
    title: str,
    objective: str = "val/hmean",
    maximize: bool = True,
    source_note: str = "",
    claimed: dict[str, float] | None = None,
) -> dict:
    """Write `report.md`, `report.html` (standalone, PNGs embedded as base64) and `plots/*.png`
    under out_dir. `claimed` (e.g. SEED_CLAIMS; percent, z in σ) adds "Where the seed's
    arithmetic differs". Returns {"markdown": Path, "html": Path, "plots": [Path, ...],
    "analysis": Analysis}. Raises DataError when no trial has a usable metric."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyze(trials, objective=objective, maximize=maximize)
    claims = compare_claims(analysis, claimed) if claimed is not None else None
    plots = draw_plots(analysis, out_dir / "plots")
    doc = _document(analysis, plots, title=title, source_note=source_note, claims=claims)
    md = out_dir / "report.md"
    md.write_text(_to_markdown(doc, out_dir), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(_to_html(doc, title), encoding="utf-8")
    return {"markdown": md, "html": page, "plots": [p for _, p in plots], "analysis": analysis}

"""The sweep report: Katib trials (from the cluster or an export) → the seed's analysis.

`analyze(trials)` computes everything (ranking by absolute metric with early-stopped trials
included, statistics with and without outliers, per-parameter buckets, early-stopped trials that
beat every completed one, the recommended replication config and its fallback);
`write_report(trials, out_dir, title=...)` writes it as `report.md`, a standalone `report.html`
(plots embedded as base64 PNG) and `plots/*.png`.

Outlier rule (stated in the report): a metric is an outlier when it lies more than
3 × 1.4826 × MAD from the median (MAD = median absolute deviation; 1.4826 × MAD estimates σ for
normal data). On the seed's 12 runs it flags Run 1 (0.8606) and nothing else.

Statistics use the sample standard deviation (ddof=1); z of the best = (best − mean) / sd.
"""
from __future__ import annotations

import base64
import html
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from components.katib.trials import Trial, best_trial, natural_key, rank_trials
from model.report import table

# The seed report's §6.1 figures (percent of val/hmean; z in σ), as printed there.
SEED_CLAIMS: dict[str, float] = {
    "mean": 95.74, "median": 96.21, "std": 2.83, "max": 96.60, "min": 86.06,
    "mean_without_outliers": 96.22, "median_without_outliers": 96.23, "std_without_outliers": 0.26,
    "z_best_without_outliers": 1.46,
}

OUTLIER_RULE = "|metric − median| > 3 × 1.4826 × MAD (MAD = median absolute deviation from the median)"
_MAD_SCALE = 1.4826
_MAD_K = 3.0

# Katib/seed parameter name (last dotted part, lower case) → training override key / pipeline parameter.
_OVERRIDE = {"lr": "models.optimizer.lr", "weight_decay": "models.optimizer.weight_decay",
             "t_max": "models.scheduler.T_max", "eta_min": "models.scheduler.eta_min"}
_PIPELINE = {"lr": "lr", "weight_decay": "weight_decay", "t_max": "t_max", "eta_min": "eta_min"}


@dataclass
class Stats:
    n: int
    mean: float
    median: float
    std: float | None          # sample sd (ddof=1); None for n < 2
    min: float
    max: float
    z_best: float | None       # (best − mean) / std, best = max when maximizing


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
    ranking: list[Trial]                   # rankable trials, best first (ties: natural name order)
    excluded: list[Trial]                  # failed / killed / metrics-unavailable / no metric
    stats: Stats
    outliers: list[Trial]
    stats_without_outliers: Stats
    early_beat_completed: list[Trial]      # early-stopped trials better than every Succeeded one
    recommended: Trial
    fallback: Trial | None                 # best Succeeded trial other than `recommended`
    buckets: dict[str, list[Bucket]] = field(default_factory=dict)
    bucket_kind: dict[str, str] = field(default_factory=dict)   # "log", "linear" or "category"


def compute_stats(values: list[float], *, maximize: bool = True) -> Stats:
    """n, mean, median, sample sd (ddof=1), min, max and z of the best value."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    best = max(values) if maximize else min(values)
    z = (best - mean) / sd if sd else None
    return Stats(n=len(values), mean=mean, median=statistics.median(values), std=sd,
                 min=min(values), max=max(values), z_best=z)


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


def _fmt_num(v: float | str) -> str:
    """Full precision, shortest round-trip form; integral floats without '.0' (T_max=24)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def _short(v: float | str) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}"
    return _fmt_num(v)


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
            groups[f"{param}={_fmt_num(v)}"] = [t for w, t in pts if w == v]
    else:
        lo, hi = min(values), max(values)
        k = max(2, min(4, round(math.sqrt(len(values)))))
        if lo == hi:
            groups[f"{param}={_short(lo)}"] = [t for _, t in pts]
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
        buckets.append(Bucket(label=label, count=len(ts), mean=statistics.fmean(ms) if ms else None,
                              max=max(ms) if ms else None,
                              trials=[t.name for t in sorted(ts, key=lambda t: natural_key(t.name))]))
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
    return Analysis(objective=objective, maximize=maximize, ranking=ranking, excluded=excluded,
                    stats=compute_stats(values, maximize=maximize), outliers=outliers,
                    stats_without_outliers=compute_stats(kept or values, maximize=maximize),
                    early_beat_completed=early, recommended=recommended, fallback=fallback,
                    buckets=buckets, bucket_kind=kinds)


def compare_claims(analysis: Analysis, claimed: dict[str, float], *, decimals: int = 2) -> list[dict]:
    """Claimed vs computed for each claim key. Metric-valued claims are in percent (metric × 100),
    z in σ. A claim differs when |claimed − computed| exceeds half a unit of the claim's last
    place (0.005 for 2 decimals): more than rounding explains."""
    s, w = analysis.stats, analysis.stats_without_outliers
    computed = {"mean": s.mean * 100, "median": s.median * 100, "std": (s.std or 0) * 100,
                "max": s.max * 100, "min": s.min * 100, "z_best": s.z_best,
                "mean_without_outliers": w.mean * 100, "median_without_outliers": w.median * 100,
                "std_without_outliers": (w.std or 0) * 100, "z_best_without_outliers": w.z_best,
                "max_without_outliers": w.max * 100, "min_without_outliers": w.min * 100}
    half = 0.5 * 10 ** -decimals + 1e-9
    rows = []
    for key, claim in claimed.items():
        if key not in computed:
            raise KeyError(f"unknown claim {key!r}; known: {', '.join(computed)}")
        value = computed[key]
        rows.append({"key": key, "claimed": claim, "computed": value,
                     "differs": value is None or abs(claim - value) > half})
    return rows


# ---------------------------------------------------------------- plots

def _plots(analysis: Analysis, plot_dir: Path) -> list[tuple[str, Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    plot_dir.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    ranking = analysis.ranking
    out_ids = {id(t) for t in analysis.outliers}
    marker = {"Succeeded": "o", "EarlyStopped": "s", "Running": "^", "Pending": "v"}

    for p, kind in analysis.bucket_kind.items():
        pts = [t for t in ranking if p in t.parameters and isinstance(t.parameters[p], (int, float))]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for st, m in marker.items():
            sel = [t for t in pts if t.status == st]
            if sel:
                ax.scatter([t.parameters[p] for t in sel], [t.metric for t in sel], marker=m, label=st)
        for t in pts:
            ax.annotate(t.name, (t.parameters[p], t.metric), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if kind == "log":
            ax.set_xscale("log")
        ax.set_xlabel(p + (" (log)" if kind == "log" else ""))
        ax.set_ylabel(analysis.objective)
        ax.set_title(f"{analysis.objective} vs {p}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = plot_dir / f"metric_vs_{_slug(p)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append((f"{analysis.objective} vs {p}", path))

    numeric = [p for p, k in analysis.bucket_kind.items()
               if all(isinstance(t.parameters.get(p), (int, float)) for t in ranking)]
    if len(numeric) >= 2:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        kept = [t.metric for t in ranking if id(t) not in out_ids] or [t.metric for t in ranking]
        norm = colors.Normalize(vmin=min(kept), vmax=max(kept))
        cmap = matplotlib.colormaps["viridis"]
        scaled = {}
        for p in numeric:
            vs = [float(t.parameters[p]) for t in ranking]
            f = math.log if analysis.bucket_kind[p] == "log" else (lambda x: x)
            lo, hi = f(min(vs)), f(max(vs))
            scaled[p] = [(f(v) - lo) / (hi - lo) if hi > lo else 0.5 for v in vs]
        for i, t in enumerate(ranking):
            ax.plot(range(len(numeric)), [scaled[p][i] for p in numeric], color=cmap(norm(t.metric)),
                    linestyle="--" if id(t) in out_ids else "-", alpha=0.85)
        ax.set_xticks(range(len(numeric)))
        ax.set_xticklabels([p + (" (log)" if analysis.bucket_kind[p] == "log" else "") for p in numeric])
        ax.set_ylabel("scaled to [0, 1] (min → max)")
        ax.set_title(f"parameters, coloured by {analysis.objective} (outliers dashed)")
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=analysis.objective)
        fig.tight_layout()
        path = plot_dir / "parallel_coordinates.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(("parallel coordinates", path))

    curves = [t for t in ranking + analysis.excluded if t.curve]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for t in curves:
            ax.plot(range(1, len(t.curve) + 1), t.curve, marker=".", label=f"{t.name} ({t.status})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(analysis.objective)
        ax.set_title("learning curves")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = plot_dir / "learning_curves.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(("learning curves", path))
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_").lower() or "param"


# ---------------------------------------------------------------- document model

def _stats_rows(s: Stats, label: str) -> list[str]:
    return [label, str(s.n), f"{s.mean:.6f}", f"{s.median:.6f}", "—" if s.std is None else f"{s.std:.6f}",
            f"{s.min:.4f}", f"{s.max:.4f}", "—" if s.z_best is None else f"{s.z_best:.3f}"]


def _commands(t: Trial, fallback: Trial | None) -> list[str]:
    def key(p):
        return p.split(".")[-1].lower()

    train = [f"receiptflow train preset=efficientnet_b4_lr_optimized exp_name={_slug(t.name)}_replication"]
    for p, v in t.parameters.items():
        train.append(f"{_OVERRIDE.get(key(p), p)}={_fmt_num(v)}")
    train.append("trainer.max_epochs=22")
    pipe = ["receiptflow pipeline submit --host \"$KFP_HOST\""]
    for prefix, trial in (("run8", t), ("run3", fallback)):
        if trial is None:
            continue
        for p, v in trial.parameters.items():
            if key(p) in _PIPELINE:
                pipe.append(f"--param {prefix}_{_PIPELINE[key(p)]}={_fmt_num(v)}")
    return [" \\\n  ".join(train), " \\\n  ".join(pipe)]


def _document(analysis: Analysis, plots: list[tuple[str, Path]], *, title: str, source_note: str,
              claims: list[dict] | None) -> list[tuple]:
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
    doc.append(("p", f"{len(a.ranking) + len(a.excluded)} trials ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
                     f"objective `{a.objective}` ({direction}). Best by absolute metric: **{a.recommended.name}** "
                     f"({a.recommended.status}, {a.recommended.metric:.4f}). Early-stopped trials are ranked with the rest."))

    doc.append(("h2", "Ranking (absolute metric, early-stopped trials included)"))
    rows = [[str(i + 1), t.name] + [_short(t.parameters.get(p, "")) for p in params] + [f"{t.metric:.4f}", t.status]
            for i, t in enumerate(a.ranking)]
    doc.append(("table", ["rank", "trial"] + params + [a.objective, "status"], rows))
    if a.excluded:
        doc.append(("p", "Not ranked (failed, killed, metrics unavailable or no metric): "
                         + ", ".join(f"{t.name} ({t.status})" for t in a.excluded)))

    doc.append(("h2", "Early-stopped trials that beat every completed trial"))
    if a.early_beat_completed:
        best_done = next(t for t in a.ranking if t.status == "Succeeded")
        doc.append(("ul", [f"**{t.name}**: {t.metric:.4f} > best completed {best_done.name} {best_done.metric:.4f}"
                           for t in a.early_beat_completed]))
        doc.append(("p", "A rule relative to other trials stopped these, not an absolute bar. Katib's median stop "
                         "(katib v0.19.0 medianstop/service.py) compares a trial's best value so far, once, at its "
                         "start_step-th report, with the mean (not the median) of the Succeeded trials' averages "
                         "over their first start_step reports; the seed's Hyperband cut runs at fixed rungs. "
                         "Judge trials by absolute metric."))
    else:
        doc.append(("p", "None."))

    doc.append(("h2", "Statistics"))
    doc.append(("p", f"Outlier rule: {OUTLIER_RULE}. Outliers: "
                     + (", ".join(f"{t.name} ({t.metric:.4f})" for t in a.outliers) or "none")
                     + ". sd is the sample standard deviation (ddof=1); z of best = (best − mean) / sd."))
    doc.append(("table", ["set", "n", "mean", "median", "sd", "min", "max", "z of best"],
                [_stats_rows(a.stats, "all"), _stats_rows(a.stats_without_outliers, "without outliers")]))

    if claims is not None:
        doc.append(("h2", "Where the seed's arithmetic differs"))
        diff = [c for c in claims if c["differs"]]
        doc.append(("p", "Claimed figures (percent; z in σ) against the figures computed from the same trials. "
                         "A claim differs when it is off by more than rounding to its own precision."))
        doc.append(("table", ["figure", "claimed", "computed", "verdict"],
                    [[c["key"], f"{c['claimed']:.2f}", "—" if c["computed"] is None else f"{c['computed']:.4f}",
                      "**differs**" if c["differs"] else "agrees"] for c in claims]))
        if diff:
            doc.append(("ul", [f"{c['key']}: claimed {c['claimed']:.2f}, computed {c['computed']:.2f}"
                               for c in diff if c["computed"] is not None]))

    doc.append(("h2", "Per-parameter buckets"))
    for p in params:
        kind = a.bucket_kind[p]
        doc.append(("p", f"**{p}** ({'log-spaced buckets' if kind == 'log' else 'by value' if kind == 'category' else 'linear buckets'})"))
        doc.append(("table", ["bucket", "count", "mean", "max", "trials"],
                    [[b.label, str(b.count), "—" if b.mean is None else f"{b.mean:.4f}",
                      "—" if b.max is None else f"{b.max:.4f}", ", ".join(b.trials)] for b in a.buckets[p]]))

    doc.append(("h2", "Recommended replication config"))
    r = a.recommended
    doc.append(("p", f"Best by absolute metric: **{r.name}** ({r.status}, {r.metric:.4f}). Full-precision parameters:"))
    doc.append(("table", ["parameter", "value"], [[p, _fmt_num(v)] for p, v in r.parameters.items()]))
    if a.fallback is not None:
        doc.append(("p", f"Fallback (best completed trial): **{a.fallback.name}** ({a.fallback.metric:.4f}):"))
        doc.append(("table", ["parameter", "value"], [[p, _fmt_num(v)] for p, v in a.fallback.parameters.items()]))
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
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">", f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             "pre{background:#f4f4f4;padding:0.6em;overflow-x:auto}img{max-width:100%}</style>", "</head><body>"]
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
            parts.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in block[1]) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block[2])
                         + "</table>")
        elif kind == "img":
            data = base64.b64encode(block[2].read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{html.escape(block[1])}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{html.escape(block[1])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(trials: list[Trial], out_dir: str | Path, *, title: str, objective: str = "val/hmean",
                 maximize: bool = True, source_note: str = "", claimed: dict[str, float] | None = None,
                 ) -> dict:
    """Write `report.md`, `report.html` (standalone, PNGs embedded as base64) and `plots/*.png`
    under out_dir. `claimed` (e.g. SEED_CLAIMS; percent, z in σ) adds "Where the seed's
    arithmetic differs". Returns {"markdown": Path, "html": Path, "plots": [Path, ...],
    "analysis": Analysis}. Raises DataError when no trial has a usable metric."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyze(trials, objective=objective, maximize=maximize)
    claims = compare_claims(analysis, claimed) if claimed is not None else None
    plots = _plots(analysis, out_dir / "plots")
    doc = _document(analysis, plots, title=title, source_note=source_note, claims=claims)
    md = out_dir / "report.md"
    md.write_text(_to_markdown(doc, out_dir), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(_to_html(doc, title), encoding="utf-8")
    return {"markdown": md, "html": page, "plots": [p for _, p in plots], "analysis": analysis}

"""The sweep report's plots (matplotlib, Agg): the metric against each parameter, parallel
coordinates and learning curves where the export has them."""

from __future__ import annotations

import math
from pathlib import Path

from pipelines.sweep_analysis import Analysis


def draw_plots(analysis: Analysis, plot_dir: Path) -> list[tuple[str, Path]]:
    """Write every plot under `plot_dir`; (caption, path) of each, in the order the report shows them."""
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
        path = plot_dir / f"metric_vs_{slug(p)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append((f"{analysis.objective} vs {p}", path))

    numeric = [
        p
        for p, k in analysis.bucket_kind.items()
        if all(isinstance(t.parameters.get(p), (int, float)) for t in ranking)
    ]
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
            ax.plot(
                range(len(numeric)),
                [scaled[p][i] for p in numeric],
                color=cmap(norm(t.metric)),
                linestyle="--" if id(t) in out_ids else "-",
                alpha=0.85,
            )
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


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_").lower() or "param"

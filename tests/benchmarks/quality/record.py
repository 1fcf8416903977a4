"""The benchmark's record and the tables the docs show, written from it and only from it.

`make bench-quality ARGS="--record"` keeps the run's rows (receiptflow's folds, the peers' folds,
the `--retime` timings) in docs/bench-quality.json; `--write-docs` renders that file into every
block of README.md and docs/*.md fenced by

    <!-- bench-quality:NAME -->
    ...
    <!-- /bench-quality:NAME -->

NAME: `summary` (mean ± sd over folds), `per-fold` (H-Mean per fold) or `dev` (the recipe's
choices on sroie-dev, tests/benchmarks/quality/dev.py). tests/test_bench_quality.py
fails when a block differs from what the record renders: a number typed into the docs by hand, or a
record changed without `--write-docs`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
RECORD = REPO_ROOT / "docs" / "bench-quality.json"
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- bench-quality:([a-z-]+) -->\n)(.*?)(<!-- /bench-quality:\2 -->)", re.S)


def load(path: Path = RECORD) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"rows": [], "timing": {}, "dev": []}


def record(rows: list[dict], timing: dict, path: Path = RECORD) -> dict:
    """`rows` merged into the record's rows of the same name, fold by fold (a run of folds 3-4 adds
    to folds 0-2 recorded earlier); other rows stay, in their order. A row trained with other
    settings than the recorded one is refused: its folds would not be one recipe's."""
    kept = load(path)
    by_name = {r["name"]: r for r in kept["rows"]}
    for row in rows:
        old = by_name.get(row["name"], {"folds": []})
        if old.get("settings", row.get("settings")) != row.get("settings"):
            raise SystemExit(
                f"bench-quality: --record: {row['name']} is recorded with settings {old['settings']}, "
                f"this run has {row.get('settings')}; give it another --label"
            )
        folds = {f["fold"]: f for f in old["folds"]} | {f["fold"]: f for f in row["folds"]}
        by_name[row["name"]] = {
            **{k: row[k] for k in ("name", "version", "settings") if k in row},
            "folds": [folds[i] for i in sorted(folds)],
        }
    kept["rows"] = list(by_name.values())
    kept["timing"] = {**kept["timing"], **timing}
    path.write_text(json.dumps(kept, indent=1) + "\n")
    return kept


def record_dev(rows: list[dict], path: Path = RECORD) -> dict:
    """The dev variants' rows, each replacing the one of its tag, in dev.VARIANTS' order."""
    from tests.benchmarks.quality.dev import VARIANTS

    kept = load(path)
    by_tag = {r["tag"]: r for r in kept.get("dev", [])} | {r["tag"]: r for r in rows}
    order = [v[0] for v in VARIANTS] + ["RapidOCR"]
    kept["dev"] = sorted(by_tag.values(), key=lambda r: order.index(r["tag"]) if r["tag"] in order else len(order))
    path.write_text(json.dumps(kept, indent=1) + "\n")
    return kept


def render(kept: dict) -> dict[str, str]:
    """{block name: markdown} from the record."""
    from tests.benchmarks.quality.__main__ import table
    from tests.benchmarks.quality.dev import table as dev_table

    rows = kept["rows"]
    folds = sorted({f["fold"] for r in rows for f in r["folds"]})
    per_fold = ["| fold | " + " | ".join(r["name"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for i in folds:
        cells = [{f["fold"]: f for f in r["folds"]}.get(i) for r in rows]
        per_fold.append(f"| {i} | " + " | ".join(f"{c['hmean']:.4f}" if c else "—" for c in cells) + " |")
    return {
        "summary": table(rows, kept["timing"]) + "\n",
        "per-fold": "\n".join(per_fold) + "\n",
        "dev": dev_table(kept.get("dev", [])) + "\n",
    }


def blocks(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def write_docs(kept: dict, docs: list[Path] = DOCS) -> list[Path]:
    """Every fenced block of `docs` rewritten from the record; the files that changed."""
    rendered = render(kept)
    changed = []
    for path in docs:
        text = path.read_text()
        unknown = set(blocks(text)) - set(rendered)
        if unknown:
            raise SystemExit(
                f"bench-quality: {path}: unknown block(s) {', '.join(sorted(unknown))}; known: {', '.join(rendered)}"
            )
        new = BLOCK.sub(lambda m: m.group(1) + rendered[m.group(2)] + m.group(4), text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":  # python -m tests.benchmarks.quality.record: the docs from the record, nothing run
    for changed in write_docs(load()):
        print(f"wrote {changed.relative_to(REPO_ROOT)}")

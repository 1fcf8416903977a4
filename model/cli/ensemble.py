"""`receiptflow ensemble`: voting ensemble of K prediction files (the 5-fold plan, DESIGN.md §1).

    receiptflow ensemble --min-vote 3 -o ensemble.json fold0.json fold1.json fold2.json fold3.json fold4.json
"""
from __future__ import annotations

from model.errors import DataError


def register(sub) -> None:
    p = sub.add_parser(
        "ensemble",
        help="fuse K UFO prediction files by IoU voting (a box kept when >= MIN_VOTE models agree)",
        description="Cluster the words of K prediction files of the same images by polygon IoU (at most one "
        "word per model per cluster), keep clusters found by at least MIN_VOTE models and fuse their "
        "coordinates (weighted mean: model weight x word score). An image missing from a file counts as "
        "no words from that model.",
    )
    p.add_argument("predictions", nargs="+", help="UFO JSON prediction files, one per model")
    p.add_argument("-o", "--output", required=True, help="fused UFO JSON to write")
    p.add_argument("--min-vote", type=int, default=3, help="models that must agree on a word (default 3)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for two words to be the same word (default 0.5)")
    p.add_argument("--weights", default=None, help="comma-separated model weights, one per file (default all 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from model.data.ufo import read_ufo, write_ufo
    from model.ensemble import ensemble

    weights = None
    if args.weights is not None:
        try:
            weights = [float(v) for v in args.weights.split(",")]
        except ValueError:
            raise DataError(f"--weights {args.weights!r}: expected comma-separated numbers") from None
    preds = [read_ufo(path)[0] for path in args.predictions]
    fused = ensemble(preds, min_vote=args.min_vote, iou=args.iou, weights=weights)
    write_ufo(fused, args.output)
    print(f"images: {len(fused)}")
    for path, pred in zip(args.predictions, preds):
        print(f"  {path}: {sum(len(w) for w in pred.values())} words")
    print(f"kept: {sum(len(w) for w in fused.values())} words (min_vote {args.min_vote}, iou {args.iou}) -> {args.output}")
    return 0

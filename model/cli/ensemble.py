"""`receiptflow ensemble`: fuse K models' predictions of the same images (the 5-fold plan, docs/design.md §1).

receiptflow ensemble --min-vote 3 -o ensemble.json fold0.json fold1.json fold2.json fold3.json fold4.json
receiptflow ensemble --mode maps -o ensemble.json maps0/ maps1/ maps2/ maps3/ maps4/   # from predict --maps
"""

from __future__ import annotations

from pathlib import Path

from model.errors import DataError

BOX_ONLY = ("min_vote", "iou")
MAP_ONLY = ("thresh", "box_thresh", "unclip_ratio", "max_candidates", "min_size", "shape", "scores")


def register(sub) -> None:
    p = sub.add_parser(
        "ensemble",
        help="fuse K models' predictions: IoU voting over UFO files (--mode boxes) or averaged probability maps (--mode maps)",
        description="--mode boxes (default): cluster the words of K UFO prediction files of the same images by polygon "
        "IoU (at most one word per model per cluster), keep clusters found by at least MIN_VOTE models and fuse their "
        "coordinates (weighted mean: model weight x word score); an image missing from a file counts as no words from "
        "that model. --mode maps: INPUTS are the map folders `receiptflow predict --maps DIR` writes, one per model; "
        "per image the K maps (same canvas required) are averaged with the normalised weights and post-processed once, "
        "as predict does, with the settings the maps were predicted with unless --thresh/--box-thresh/... are given. "
        "Both write UFO JSON in original pixels.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="one per model: UFO JSON prediction files (boxes) or folders of stored maps (maps)",
    )
    p.add_argument("-o", "--output", required=True, help="fused UFO JSON to write")
    p.add_argument(
        "--mode",
        choices=("boxes", "maps"),
        default="boxes",
        help="boxes: vote on the models' words (default); maps: average the models' probability maps",
    )
    p.add_argument("--weights", default=None, help="comma-separated model weights, one per input, >= 0 (default all 1)")
    g = p.add_argument_group("boxes mode")
    g.add_argument("--min-vote", type=int, default=None, help="models that must agree on a word (default 3)")
    g.add_argument("--iou", type=float, default=None, help="IoU for two words to be the same word (default 0.5)")
    g = p.add_argument_group("maps mode (default: the settings recorded with the maps, which must agree)")
    g.add_argument("--thresh", type=float, default=None, help="binarization threshold of the fused map")
    g.add_argument("--box-thresh", type=float, default=None, help="least mean probability of a word")
    g.add_argument("--unclip-ratio", type=float, default=None, help="outward offset of the shrunk regions")
    g.add_argument("--max-candidates", type=int, default=None, help="contours considered per image")
    g.add_argument("--min-size", type=float, default=None, help="least shorter side of a box")
    g.add_argument("--shape", choices=("polygon", "box"), default=None, help="polygons or rotated boxes")
    g.add_argument("--scores", action="store_true", help="write each word's score")
    p.set_defaults(func=run)


def run(args) -> int:
    weights = None
    if args.weights is not None:
        try:
            weights = [float(v) for v in args.weights.split(",")]
        except ValueError:
            raise DataError(f"--weights {args.weights!r}: expected comma-separated numbers") from None
    wrong = [n for n in (MAP_ONLY if args.mode == "boxes" else BOX_ONLY) if getattr(args, n) not in (None, False)]
    if wrong:
        raise DataError(
            f"--mode {args.mode}: {', '.join('--' + n.replace('_', '-') for n in wrong)} belong(s) to the other mode"
        )
    return run_maps(args, weights) if args.mode == "maps" else run_boxes(args, weights)


def run_boxes(args, weights) -> int:
    from model.data.ufo import read_ufo, write_ufo
    from model.ensemble import ensemble

    for path in args.inputs:
        if Path(path).is_dir():
            raise DataError(f"{path}: a folder; map folders (predict --maps) need --mode maps")
    min_vote = 3 if args.min_vote is None else args.min_vote
    iou = 0.5 if args.iou is None else args.iou
    preds = [read_ufo(path)[0] for path in args.inputs]
    fused = ensemble(preds, min_vote=min_vote, iou=iou, weights=weights)
    write_ufo(fused, args.output)
    print(f"images: {len(fused)}")
    for path, pred in zip(args.inputs, preds):
        print(f"  {path}: {sum(len(w) for w in pred.values())} words")
    print(f"kept: {sum(len(w) for w in fused.values())} words (min_vote {min_vote}, iou {iou}) -> {args.output}")
    return 0


def run_maps(args, weights) -> int:
    from model.data.ufo import write_ufo
    from model.fusion import map_ensemble

    for path in args.inputs:
        if not Path(path).is_dir():
            raise DataError(f"{path}: --mode maps takes the map folders predict --maps writes, not files")
    fused = map_ensemble(
        args.inputs,
        weights=weights,
        scores=args.scores,
        thresh=args.thresh,
        box_thresh=args.box_thresh,
        unclip_ratio=args.unclip_ratio,
        max_candidates=args.max_candidates,
        min_size=args.min_size,
        mode=args.shape,
    )
    write_ufo(fused, args.output)
    print(f"images: {len(fused)} (maps of {len(args.inputs)} models averaged)")
    print(f"kept: {sum(len(w) for w in fused.values())} words -> {args.output}")
    return 0

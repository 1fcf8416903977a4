"""`receiptflow split ROOT --out DIR`: k-fold splits of train+val, balanced by word count."""

from __future__ import annotations

import json

from model.data.convert import DEFAULT_SEED

# model.data.folds (numpy, PIL) is imported when the folds are made; its DEFAULT_K, which
# tests/test_cli.py keeps equal to this one (the option passes only what is given)
DEFAULT_K = 5


def register(sub) -> None:
    p = sub.add_parser(
        "split",
        help="k-fold splits of a dataset root's train+val (word-count balanced)",
        description="Pool train and val of a dataset root and write DIR/fold_{i}/{train,val}.json and DIR/folds.json. "
        "Images stay in ROOT/images/{train,val}/; folds.json records which folder holds each file. "
        "--hold-out val keeps val out of the folds (a calibration set no fold model saw).",
    )
    p.add_argument("root", help="dataset root: images/{train,val}/ and jsons/{train,val}.json")
    p.add_argument("--out", required=True, help="folder for fold_{i}/ and folds.json")
    p.add_argument("--k", type=int, default=None, help=f"number of folds (default {DEFAULT_K})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"assignment seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--hold-out", metavar="SPLIT", help="keep this split (e.g. val) out of every fold (default: pool train and val)"
    )
    p.add_argument("--lenient", action="store_true", help="leave out images the dataset check rejects (default: stop)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from model.data.folds import format_manifest, make_folds

    k = {} if args.k is None else {"k": args.k}
    manifest = make_folds(args.root, args.out, seed=args.seed, strict=not args.lenient, hold_out=args.hold_out, **k)
    print(json.dumps(manifest, indent=1) if args.json else format_manifest(manifest))
    return 0

"""`receiptflow convert DATASET SRC DST`: import a public receipt dataset as a dataset root."""
from __future__ import annotations

import argparse
import json

# model.data.convert imports its heavy parts (numpy, PIL, tqdm) where it converts
from model.data.convert import DEFAULT_FRACTIONS, DEFAULT_SEED, convert, converter_names, parse_fractions
from model.errors import DataError


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="import a public dataset (SROIE, ...) as a dataset root with train/val/test splits",
        description="Import a public receipt dataset into images/{train,val,test}/ and jsons/{train,val,test}.json. "
        "The split depends only on the seed and the file names.",
    )
    p.add_argument("dataset", choices=converter_names(), help="source dataset format")
    p.add_argument("src", help="source folder (sroie: img/ and box/, or .jpg and .csv/.txt side by side)")
    p.add_argument("dst", help="dataset root to create")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--split",
        type=_fractions,
        default=DEFAULT_FRACTIONS,
        metavar="TRAIN,VAL,TEST",
        help="fractions summing to 1, any of them 0 (0,0,1: all test, e.g. a hold-out set to predict on; empty "
        "splits are written empty) (default %s)" % ",".join(f"{f:g}" for f in DEFAULT_FRACTIONS),
    )
    p.add_argument("--lenient", action="store_true", help="skip bad lines and unpaired files and list them (default: stop at the first)")
    p.add_argument("--overwrite", action="store_true", help="replace images/ and jsons/ already in DST")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = convert(
        args.dataset, args.src, args.dst, seed=args.seed, split=args.split, strict=not args.lenient, overwrite=args.overwrite
    )
    print(json.dumps(summary.to_json(), indent=1) if args.json else summary)
    return 0


def _fractions(text: str):
    try:
        return parse_fractions(text)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

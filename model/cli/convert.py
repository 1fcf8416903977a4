"""`receiptflow convert DATASET SRC DST`: import a public receipt dataset as a dataset root."""

from __future__ import annotations

import argparse
import json

# model.data.convert imports its heavy parts (numpy, PIL, tqdm) where it converts
from model.data.convert import DEFAULT_FRACTIONS, DEFAULT_SEED, convert, converter_names, parse_fractions
from model.errors import DataError

SOURCES = {
    "sroie": "img/ and box/ (NNN.jpg + NNN.csv), or .jpg and .csv/.txt side by side",
    "icdar2015": "img_N.jpg and gt_img_N.txt side by side, or one image folder and one gt folder",
    "paddleocr": "a PPOCRLabel folder with Label.txt (or folders of them), or det label .txt files (path<TAB>JSON)",
    "labelstudio": "the JSON export (one .json) and the task images anywhere under SRC",
    "cvat": 'the unpacked "CVAT for images 1.1" export: annotations.xml and images/',
    "coco": "one .json (COCO-Text v2, TextOCR or COCO polygons) and its images, in SRC or SRC/images/",
}


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="import labels (SROIE, ICDAR 2015, PaddleOCR, Label Studio, CVAT, COCO) as a dataset root with train/val/test splits",
        description="Import labelled receipts into images/{train,val,test}/ and jsons/{train,val,test}.json (UFO): "
        'transcriptions kept, don\'t-care words kept as "illegibility": true, points in the image as it displays '
        '(EXIF applied). The split depends only on the seed and the file names. docs/data.md, "Importing labels", '
        "gives each format's layout and rules.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="SRC per format:\n" + "\n".join(f"  {name:<12} {SOURCES[name]}" for name in converter_names()),
    )
    p.add_argument(
        "dataset", choices=converter_names(), metavar="FORMAT", help=f"label format: {', '.join(converter_names())}"
    )
    p.add_argument("src", help="source folder (its layout per format: below)")
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
    p.add_argument(
        "--lenient",
        action="store_true",
        help="skip bad lines and unpaired files and list them (default: stop at the first)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace images/ and jsons/ already in DST")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = convert(
        args.dataset,
        args.src,
        args.dst,
        seed=args.seed,
        split=args.split,
        strict=not args.lenient,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary.to_json(), indent=1) if args.json else summary)
    return 0


def _fractions(text: str):
    try:
        return parse_fractions(text)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

"""`receiptflow synth --out DIR --n N`: write a synthetic receipt dataset root and summarise it."""

from __future__ import annotations

import time

# model.data.synth (cv2, PIL, numpy) is imported when receipts are made. Its defaults, shown in
# --help and kept equal to model.data.synth's by tests/test_cli.py; the options pass only what is given.
DEFAULT_WIDTH = (500, 800)
DEFAULT_HEIGHT = (900, 1400)


def register(sub) -> None:
    p = sub.add_parser("synth", help="generate synthetic receipts with exact word polygons (a dataset root)")
    p.add_argument("--out", required=True, help="dataset root to create: images/<split>/ and jsons/<split>.json")
    p.add_argument(
        "--n", type=int, required=True, help="number of images in all (train/val/test = 70/15/15 %%, at least 1 each)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="image i is generated from (seed, i): same seed, same bytes (default 0)"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    p.add_argument("--force", action="store_true", help="replace images/ and jsons/ of an existing non-empty --out")
    p.add_argument(
        "--width",
        type=int,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help=f"image width range in pixels (default {DEFAULT_WIDTH[0]} {DEFAULT_WIDTH[1]})",
    )
    p.add_argument(
        "--height",
        type=int,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help=f"image height range in pixels (default {DEFAULT_HEIGHT[0]} {DEFAULT_HEIGHT[1]})",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from model.data.synth import write_synthetic_dataset
    from model.data.ufo import format_summary

    sizes = {k: tuple(v) for k, v in (("width", args.width), ("height", args.height)) if v is not None}
    start = time.perf_counter()
    summary = write_synthetic_dataset(  # that is DatasetRoot(args.out).summary() of what it wrote
        args.out, args.n, seed=args.seed, workers=args.workers, overwrite=args.force, **sizes
    )
    elapsed = time.perf_counter() - start
    print(format_summary(args.out, summary))
    print(f"generated {args.n} images in {elapsed:.1f} s ({1000 * elapsed / args.n:.0f} ms per image)")
    return 0

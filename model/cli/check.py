"""`receiptflow check ROOT`: validate a dataset root and print its summary."""

from __future__ import annotations

import json

from model.errors import DataError


def register(sub) -> None:
    p = sub.add_parser(
        "check",
        help="validate a dataset root (JSON, images, points) and summarise it",
        description="Validate every split of a dataset root: UFO JSON, file names, word points, images listed/on disk,\n"
        "truncated or unreadable images. Prints one line per problem, then a summary; exit 1 when any problem.",
    )
    p.add_argument("root", help="dataset root: images/<split>/ and jsons/<split>.json")
    p.add_argument("--strict", action="store_true", help="stop at the first problem (default: list them all)")
    p.add_argument("--no-decode", action="store_true", help="read image headers only (faster, misses truncated files)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from model.data.ufo import DatasetRoot, format_summary, split_summary

    root = DatasetRoot(args.root)
    splits = root.splits()
    if not splits:
        raise DataError(f"{root.root}: no dataset here; expected images/<split>/ and jsons/<split>.json")
    table = {}
    for split in splits:
        s = root.load(split, strict=args.strict, decode=not args.no_decode)
        for problem in s.report.problems:
            print(problem)
        table[split] = split_summary(s)
    print(json.dumps(table, indent=1) if args.json else format_summary(args.root, table))
    return 1 if any(t["problems"] for t in table.values()) else 0

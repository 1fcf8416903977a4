"""`receiptflow check ROOT`: validate a dataset root and print its summary."""
from __future__ import annotations

import json

from model.data.ufo import DatasetRoot, format_summary


def register(sub) -> None:
    p = sub.add_parser("check", help="validate a dataset root (JSON, images, points) and summarise it")
    p.add_argument("root", help="dataset root: images/<split>/ and jsons/<split>.json")
    p.add_argument("--strict", action="store_true", help="stop at the first problem (default: list them all)")
    p.add_argument("--no-decode", action="store_true", help="read image headers only (faster, misses truncated files)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    root = DatasetRoot(args.root)
    problems = 0
    summary = {}
    for split in root.splits():
        s = root.load(split, strict=args.strict, decode=not args.no_decode)
        for problem in s.report.problems:
            print(problem)
        problems += len(s.report.problems)
        summary[split] = s
    table = root.summary(decode=False) if summary else {}
    print(json.dumps(table, indent=1) if args.json else format_summary(args.root, table))
    return 1 if problems else 0

"""The `receiptflow` command line: one module per command group, each with `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from model.errors import DataError

# Every module in model/cli/ with a `register(subparsers)` is a command; these come first in
# `--help`, the rest alphabetically.
ORDER = ("synth", "convert", "check", "split", "config", "train", "eval", "predict", "score", "submit")


def command_modules() -> list[str]:
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="receiptflow",
        description="Train DBNet receipt text detectors: data, training, Kubeflow pipelines, Katib sweeps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(f"model.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (`predict CKPT DIR -o X --tta a.b=1`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except DataError as exc:
        print(f"receiptflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

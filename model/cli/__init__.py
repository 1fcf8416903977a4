"""The `receiptflow` command line: one module per command group, each with `register(subparsers)`.

Commands of model/ live in this folder; commands of the layers above it (pipelines/) register
through the ``receiptflow.commands`` entry point group, so model/ never imports them.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from importlib.metadata import entry_points

from model.errors import DataError

# Every module in model/cli/ with a `register(subparsers)` is a command; these come first in
# `--help`, the rest alphabetically.
ORDER = ("synth", "convert", "check", "split", "config", "train", "eval", "predict", "score", "submit", "pipeline", "sweep")
PLUGINS = "receiptflow.commands"


def command_modules() -> dict[str, str]:
    """command name -> module that registers it, in `--help` order."""
    found = {m.name: f"model.cli.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    found |= {ep.name: ep.value for ep in entry_points(group=PLUGINS)}
    return {n: found[n] for n in [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="receiptflow",
        description="Train DBNet receipt text detectors: data, training, Kubeflow pipelines, Katib sweeps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules().values():
        importlib.import_module(module).register(sub)
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

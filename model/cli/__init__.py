"""The `receiptflow` command line: one module per command group, each with `register(subparsers)`.

Commands of model/ live in this folder; commands of the layers above it (pipelines/) register
through the ``receiptflow.commands`` entry point group, so model/ never imports them.

The CLI answers at once: a command module imports only the standard library and light modules at
its top and in `register` (argparse needs its options, not its work); what a command runs on
(torch, albumentations, kfp, minio, ...) is imported inside the function that runs it. `main`
builds only the parser of the command it was given (all of them for `receiptflow --help` or an
unknown command). tests/test_cli.py checks that `--help` of every command stays free of the heavy
packages; tests/benchmarks/bench_cli.py measures the times.

Errors: a DataError (bad input: file, value, setting) is one line, `receiptflow CMD: error: ...`,
exit 2; so is any other ValueError, RuntimeError or OSError (a library's complaint about what the
user gave or the machine they run on), with its type and a pointer to `--debug` (or
RECEIPTFLOW_DEBUG=1), which shows the traceback. Anything else (TypeError, AttributeError, ...)
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pkgutil
import sys
import traceback

from model.errors import DataError

# Every module in model/cli/ with a `register(subparsers)` is a command; these come first in
# `--help`, the rest alphabetically.
ORDER = (
    "synth",
    "convert",
    "check",
    "split",
    "config",
    "train",
    "tune",
    "eval",
    "predict",
    "export",
    "score",
    "submit",
    "pipeline",
    "sweep",
    "cluster",
    "earlystop",
)
PLUGINS = "receiptflow.commands"
DEBUG_ENV = "RECEIPTFLOW_DEBUG"
# What a user's input or environment raises (bad values, missing files, no GPU, unreachable
# host); everything else is a programming error and keeps its traceback.
USER_ERRORS = (ValueError, RuntimeError, OSError)


@functools.cache
def command_modules() -> dict[str, str]:
    """command name -> module that registers it, in `--help` order."""
    from importlib.metadata import entry_points  # ~10 ms: only when a parser is built

    found = {m.name: f"model.cli.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    found |= {ep.name: ep.value for ep in entry_points(group=PLUGINS)}
    return {n: found[n] for n in [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone (what `main` needs to run it)."""
    parser = argparse.ArgumentParser(
        prog="receiptflow",
        description="Train DBNet receipt text detectors: data, training, Kubeflow pipelines, Katib sweeps.",
        epilog=f"Errors are one line (exit 2); --debug or {DEBUG_ENV}=1 shows the traceback.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also after COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = command_modules()
    for name, module in modules.items():
        if command is None or name == command:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args, extra = parser.parse_known_args(argv)
    debug = args.debug or "--debug" in extra or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    extra = [e for e in extra if e != "--debug"]
    # key=value overrides may come after options (`predict CKPT DIR -o X --tta a.b=1`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if debug:
            traceback.print_exc()
        print(f"receiptflow {args.command}: error: {_one_line(exc, debug)}", file=sys.stderr)
        return 2


def _command_of(argv: list[str]) -> str | None:
    """The command `argv` names when it is a known one, else None (build every parser: `--help`,
    a typo, options before the command)."""
    first = next((a for a in argv if a != "--debug"), None)
    if first is None or first.startswith("-"):
        return None
    return first if first in command_modules() else None


def _one_line(exc: BaseException, debug: bool) -> str:
    """A DataError's message is written for the user: as it is. Another error is a library's: its
    type, its first line and where the rest is."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if isinstance(exc, DataError):
        return " ".join(line.strip() for line in lines)
    text = f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__
    return text if debug else f"{text} (--debug or {DEBUG_ENV}=1 shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())

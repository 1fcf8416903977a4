"""The `receiptflow` command's entry point, under a name no other project uses.

receiptflow's code lives in four top-level packages, `model`, `components`, `pipelines` and
`earlystop` (docs/design.md §2, "Import names": the compiled pipelines, the images and every
component import them by these names). Generic names can be shadowed: a `model.py` or a
`pipelines/` on PYTHONPATH, or in the current directory under `python -m`, or another
distribution's package of the same name. The console script starts here, so it can say so in one
line instead of failing deep inside an import.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

IMPORT_ROOTS = ("model", "components", "pipelines", "earlystop")


def shadowed() -> list[str]:
    """One line per import root that would not load from the folder this package was installed with."""
    home = Path(__file__).resolve().parents[1]
    problems = []
    for name in IMPORT_ROOTS:
        module = sys.modules.get(name)
        spec = module.__spec__ if module is not None else importlib.util.find_spec(name)
        where = None
        if spec is not None:
            where = (
                spec.origin
                if spec.origin not in (None, "namespace")
                else next(iter(spec.submodule_search_locations or []), None)
            )
        ours = home / name
        if where is None or ours not in (Path(where).resolve(), Path(where).resolve().parent):
            problems.append(
                f"'{name}' would import from {where or 'nowhere'}, not from receiptflow's {ours}: a module or "
                f"folder named {name} on PYTHONPATH or in the current directory shadows it (rename it, or run "
                "from another directory)"
            )
    return problems


def main() -> int:
    problems = shadowed()
    if problems:
        for line in problems:
            print(f"receiptflow: error: {line}", file=sys.stderr)
        return 2
    from model.cli import main as cli

    return cli()

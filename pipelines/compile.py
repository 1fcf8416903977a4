"""Compile the pipelines to the IR YAML that is checked in (a test fails when it drifts)."""
from __future__ import annotations

import importlib
from pathlib import Path

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"
PIPELINES = ("run8_kfold", "sweep_then_train")  # module pipelines/<name>.py defines the function <name>
COMPILED = COMPILED_DIR / "run8_kfold.yaml"


def compile_pipelines(out_dir: str | Path | None = None) -> list[Path]:
    """Write <out_dir>/<name>.yaml for every pipeline; returns the paths."""
    from kfp import compiler

    out = Path(out_dir) if out_dir else COMPILED_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PIPELINES:
        func = getattr(importlib.import_module(f"pipelines.{name}"), name)
        compiler.Compiler().compile(func, str(out / f"{name}.yaml"))
        paths.append(out / f"{name}.yaml")
    return paths

"""Compile run8_kfold to the IR YAML that is checked in (a test fails when it drifts)."""
from __future__ import annotations

from pathlib import Path

COMPILED = Path(__file__).resolve().parent / "compiled" / "run8_kfold.yaml"


def compile_pipeline(output: str | Path | None = None) -> Path:
    from kfp import compiler

    from pipelines.run8_kfold import run8_kfold

    path = Path(output) if output else COMPILED
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(run8_kfold, str(path))
    return path

"""Pipeline parameters from the command line (`--param key=value`) and from YAML files, typed
and checked against run8_kfold's signature before anything runs."""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from model.errors import DataError

PARAMS_DIR = Path(__file__).resolve().parent / "params"


def signature() -> dict[str, tuple[str, Any]]:
    """parameter name -> (KFP type name, default) of the run8_kfold pipeline."""
    from pipelines.run8_kfold import run8_kfold

    return {name: (str(spec.type), spec.default) for name, spec in run8_kfold.component_spec.inputs.items()}


def parse_params(items: list[str]) -> dict[str, Any]:
    """["epochs=10", "overrides=[\\"a=1\\"]"] -> {"epochs": 10, "overrides": ["a=1"]}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--param {item!r}: expected KEY=VALUE, e.g. --param epochs=10")
        out[key.strip()] = _from_text(key.strip(), value)
    return check_params(out)


def load_params_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of parameters; a bare name (`demo`) is pipelines/params/<name>.yaml."""
    p = Path(path)
    if not p.suffix and not p.exists() and (PARAMS_DIR / f"{p}.yaml").is_file():
        p = PARAMS_DIR / f"{p}.yaml"
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{p}: cannot read the parameters file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{p}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{p}: expected a mapping of pipeline parameters (name: value)")
    return check_params(raw, source=str(p))


def check_params(params: dict[str, Any], source: str = "--param") -> dict[str, Any]:
    """Unknown names and values of the wrong type are errors naming the closest valid name."""
    sig = signature()
    for name, value in params.items():
        if name not in sig:
            close = difflib.get_close_matches(name, list(sig), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; known: {', '.join(sig)}"
            raise DataError(f"{source}: unknown pipeline parameter {name!r}{hint}")
        params[name] = _coerce(name, value, sig[name][0], source)
    return params


def _from_text(name: str, text: str) -> Any:
    kind = signature().get(name, ("String", None))[0]
    if kind == "String":
        return text
    try:
        return yaml.safe_load(text)  # numbers, true/false, JSON/YAML lists and mappings
    except yaml.YAMLError:
        raise DataError(f"--param {name}={text!r}: not a valid {kind.lower()} value") from None


def _coerce(name: str, value: Any, kind: str, source: str) -> Any:
    ok = {
        "String": lambda v: isinstance(v, str),
        "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "Boolean": lambda v: isinstance(v, bool),
        "Dict": lambda v: isinstance(v, dict),
    }.get(kind, lambda v: isinstance(v, list))
    if isinstance(value, str) and kind in ("Integer", "Float"):
        # YAML 1.1 reads 5e-4 (no dot) as a string
        try:
            value = int(value) if kind == "Integer" else float(value)
        except ValueError:
            pass
    if not ok(value):
        raise DataError(f"{source}: {name}={json.dumps(value)}: expected {_KIND_NAMES.get(kind, 'a list')}")
    return float(value) if kind == "Float" else value


_KIND_NAMES = {"String": "a string", "Integer": "an integer", "Float": "a number", "Boolean": "true or false",
               "Dict": "a mapping, e.g. {\"gpu\": \"a100\"}"}


def check_run(params: dict[str, Any], *, check_dataset: bool = True) -> None:
    """What would otherwise fail hours in, checked before a run starts (the pipeline's first task,
    `validate_run`, checks the same on the cluster): see `components.common.check_run_parameters`."""
    from components.common import check_run_parameters

    check_run_parameters({name: default for name, (_, default) in signature().items()} | params, check_dataset=check_dataset)

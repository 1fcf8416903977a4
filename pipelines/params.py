"""Pipeline parameters from the command line (`--param key=value`) and from YAML files, typed
and checked against the signature of the pipeline being run (run8_kfold unless told: the kfp-2.5
build, the job-backed build) before anything runs."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from model.errors import DataError

PARAMS_DIR = Path(__file__).resolve().parent / "params"


# why a pipeline lacks a parameter that another build has (one line naming the option to use), or None
Absent = Callable[[str], "str | None"]


def signature(pipeline=None) -> dict[str, tuple[str, Any]]:
    """parameter name -> (KFP type name, default) of `pipeline` (a @dsl.pipeline function; default run8_kfold)."""
    if pipeline is None:
        from pipelines.run8_kfold import run8_kfold as pipeline

    return {name: (str(spec.type), spec.default) for name, spec in pipeline.component_spec.inputs.items()}


def complete(params: dict[str, Any], pipeline=None) -> dict[str, Any]:
    """`params` with every default of `pipeline` filled in; a build that fixes `folds` at compile time
    (kfp-2.5) gets run8_kfold's default, the K it was compiled for."""
    fill = (signature() | signature(pipeline)) if pipeline is not None else signature()
    return {name: default for name, (_, default) in fill.items()} | params


def parse_params(items: list[str], pipeline=None, absent: Absent | None = None) -> dict[str, Any]:
    """["epochs=10", "overrides=[\\"a=1\\"]"] -> {"epochs": 10, "overrides": ["a=1"]}, typed by `pipeline`'s signature."""
    sig = signature(pipeline)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--param {item!r}: expected KEY=VALUE, e.g. --param epochs=10")
        _known(key.strip(), sig, "--param", absent)
        out[key.strip()] = _from_text(key.strip(), value, sig)
    return check_params(out, pipeline=pipeline, absent=absent)


def load_params_file(path: str | Path, pipeline=None, absent: Absent | None = None) -> dict[str, Any]:
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
    return check_params(raw, source=str(p), pipeline=pipeline, absent=absent)


def check_params(
    params: dict[str, Any], source: str = "--param", pipeline=None, absent: Absent | None = None
) -> dict[str, Any]:
    """Names `pipeline` lacks and values of the wrong type are errors: `absent(name)` says why when
    another build has the name (e.g. a job parameter given to the one-pod pipeline), else the
    closest valid names are suggested."""
    sig = signature(pipeline)
    for name, value in params.items():
        _known(name, sig, source, absent)
        params[name] = _coerce(name, value, sig[name][0], source)
    return params


def _known(name: str, sig: dict, source: str, absent: Absent | None) -> None:
    if name in sig:
        return
    why = absent(name) if absent else None
    if why:
        raise DataError(f"{source}: {why}")
    close = difflib.get_close_matches(name, list(sig), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; known: {', '.join(sig)}"
    raise DataError(f"{source}: unknown pipeline parameter {name!r}{hint}")


def _from_text(name: str, text: str, sig: dict) -> Any:
    kind = sig.get(name, ("String", None))[0]
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


_KIND_NAMES = {
    "String": "a string",
    "Integer": "an integer",
    "Float": "a number",
    "Boolean": "true or false",
    "Dict": 'a mapping, e.g. {"gpu": "a100"}',
}


def check_run(params: dict[str, Any], *, check_dataset: bool = True, pipeline=None) -> None:
    """What would otherwise fail hours in, checked before a run starts (the pipeline's first task,
    `validate_run`, checks the same on the cluster): see `components.common.check_run_parameters`;
    for a job-backed `pipeline` also its job parameters (`check_job_parameters`)."""
    from components.common import check_run_parameters

    full = complete(params, pipeline)
    check_run_parameters(full, check_dataset=check_dataset)
    if "training_backend" in signature(pipeline):
        check_job_parameters(full)


# a Kubernetes namespace is an RFC 1123 label (apimachinery validation.IsDNS1123Label)
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def check_job_parameters(p: dict[str, Any]) -> None:
    """The job-backed build's parameters, refused here rather than when the first launcher task
    starts (validate_run does not see them), with the launcher's own check
    (components/training_job.py check_job), plus the namespace's format."""
    from components import training_job as tj

    try:
        tj.check_job(
            p["training_backend"], p["num_nodes"], p["gpus_per_node"], p["job_timeout_minutes"], p["training_runtime"]
        )
    except ValueError as exc:
        raise DataError(str(exc)) from None
    namespace = p["namespace"].strip()
    if namespace and (len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace)):
        raise DataError(
            f"namespace={p['namespace']!r}: expected a Kubernetes namespace (lowercase letters, digits "
            "and '-', at most 63), or empty for the run's own"
        )

"""`receiptflow pipeline compile|submit|run`: the run8-kfold pipeline from the command line.

    receiptflow pipeline compile                    # -> pipelines/compiled/{run8_kfold,sweep_then_train}.yaml
    receiptflow pipeline submit --host URL [--experiment NAME] [--param k=v ...]
    receiptflow pipeline run --local [--data DIR] [--output DIR] [--param k=v ...]
"""
from __future__ import annotations

import argparse

from model.errors import DataError

from pipelines import LOCAL_ROOT


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="compile, submit or locally run the run8-kfold Kubeflow pipeline",
                       description="The seed's plan as a Kubeflow pipeline: Run 8 replication, Run 3 fallback gate, "
                       "K-fold training, voting ensemble, submission CSV, publish to MinIO.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    c = verbs.add_parser("compile", help="write the pipelines' IR YAML (checked in at pipelines/compiled/)",
                         description="Compile run8_kfold and sweep_then_train to KFP IR YAML. The component image is "
                         "RECEIPTFLOW_IMAGE when set, else the pinned default of components/__init__.py.")
    c.add_argument("--out-dir", default=None, help="folder to write <pipeline>.yaml to (default pipelines/compiled/)")
    c.set_defaults(func=_compile)

    s = verbs.add_parser("submit", help="start a run on a Kubeflow Pipelines endpoint and print its URL",
                         description="Submit run8_kfold through kfp.Client. Authentication: KFP_TOKEN (a bearer "
                         "token, e.g. `kubectl create token`), else whatever kfp.Client finds in the cluster.")
    s.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")
    s.add_argument("--experiment", default="receiptflow", help="KFP experiment (default receiptflow)")
    s.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
    s.add_argument("--run-name", default=None, help="display name of the run (default: pipeline name and time)")
    _param_options(s)
    s.set_defaults(func=_submit)

    r = verbs.add_parser("run", help="run the whole pipeline on this machine (kfp.local, no cluster)",
                         description="Run run8_kfold with kfp.local.SubprocessRunner(use_venv=False): every task in "
                         "this Python environment, folds two at a time. Kubernetes settings, retries and caching "
                         "are ignored locally.")
    r.add_argument("--local", action="store_true", required=True, help="run locally (required: a cluster run is `submit`)")
    r.add_argument("--data", default=None, help="dataset root (folder or s3://); sets dataset_uri")
    r.add_argument("--output", default=None, help=f"where results are published; sets output_uri (default {LOCAL_ROOT})")
    r.add_argument("--pipeline-root", default=None, help=f"kfp.local artifact folder (default {LOCAL_ROOT}/kfp)")
    r.add_argument("--verbose", action="store_true", help="also show kfp's executor input/output dumps")
    _param_options(r)
    r.set_defaults(func=_run_local)


def _param_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a pipeline parameter (repeatable), e.g. --param epochs=10 --param 'overrides=[\"trainer.precision=32\"]'")
    p.add_argument("--params-file", default=None, help="YAML mapping of pipeline parameters (--param wins)")


def _params(args) -> dict:
    from pipelines.params import load_params_file, parse_params

    params = load_params_file(args.params_file) if args.params_file else {}
    params.update(parse_params(args.param))
    return params


def _compile(args) -> int:
    from pipelines.compile import compile_pipelines

    for path in compile_pipelines(args.out_dir):
        print(f"wrote {path}")
    return 0


def _submit(args) -> int:
    from pipelines.submit import submit

    url = submit(args.host, _params(args), experiment=args.experiment, namespace=args.namespace, run_name=args.run_name)
    print(url)
    return 0


def _run_local(args) -> int:
    from pipelines.local import run_local

    params = _params(args)
    if args.data:
        params["dataset_uri"] = args.data
    if args.output:
        params["output_uri"] = args.output
    if "dataset_uri" not in params:
        raise DataError("no dataset: pass --data DIR (a dataset root, e.g. from `receiptflow synth`) or --param dataset_uri=...")
    run_local(params, pipeline_root=args.pipeline_root, verbose=args.verbose)
    return 0

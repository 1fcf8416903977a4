"""`receiptflow pipeline compile|submit|run`: the run8-kfold pipeline from the command line.

receiptflow pipeline compile [--target kfp-2.14|kfp-2.5] [--format ir|k8s]   # -> pipelines/compiled/
receiptflow pipeline submit [--host URL] [--target kfp-2.14|kfp-2.5] [--trainings task|job] [--param k=v ...] [--resume RUN_ID]
receiptflow pipeline run --local [--data DIR] [--output DIR] [--param k=v ...] [--resume RUN_ID]   # --trainings task only
"""

from __future__ import annotations

import argparse

from model.errors import DataError
from pipelines import LOCAL_ROOT
from pipelines.submit import TRAININGS  # a light import: kfp is imported where a pipeline is built


def register(sub) -> None:
    p = sub.add_parser(
        "pipeline",
        help="compile, submit or locally run the run8-kfold Kubeflow pipeline",
        description="The seed's plan as a Kubeflow pipeline: Run 8 replication, Run 3 fallback gate, "
        "K-fold training, ensemble chosen on held-out labels, submission CSV, publish to MinIO.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    c = verbs.add_parser(
        "compile",
        help="write the pipelines' YAML for each KFP backend (checked in at pipelines/compiled/)",
        description="Compile the pipelines for every target and format (no option: all of them, what "
        "is checked in). kfp-2.14 (KFP backend >= 2.14, Kubeflow 1.11+): run8_kfold.yaml and "
        "sweep_then_train.yaml. kfp-2.5 (KFP backend >= 2.5.0, Kubeflow 1.10.1+): "
        "run8_kfold-kfp2.5.yaml, the 5 folds unrolled, no `folds` parameter, the MinIO Secret and "
        "the GPU tasks' placement written in at compile time. The component image is "
        "RECEIPTFLOW_IMAGE when set, else the pinned default of components/__init__.py.",
    )
    c.add_argument("--out-dir", default=None, help="folder to write the files to (default pipelines/compiled/)")
    c.add_argument(
        "--target",
        choices=("all", "kfp-2.14", "kfp-2.5"),
        default="all",
        help="KFP backend the files are for (default all)",
    )
    c.add_argument(
        "--format",
        choices=("all", "ir", "k8s"),
        default="all",
        help="ir: pipeline spec to upload; k8s: k8s/<pipeline>.yaml Pipeline + PipelineVersion objects and "
        "a kustomization for `kubectl apply -k` (kfp-2.14 only: KFP with the Kubernetes pipeline store)",
    )
    _fixed_options(c)
    c.set_defaults(func=_compile)

    s = verbs.add_parser(
        "submit",
        help="start a run on a Kubeflow Pipelines endpoint and print its URL",
        description="Submit run8_kfold through kfp.Client: the build of --target, each training one "
        "pod with one GPU (--trainings task) or one multi-node TrainJob / PyTorchJob (--trainings "
        "job). --param and --params-file are checked and typed against that build's parameters "
        "before anything is sent. Authentication, the first found: KFP_COOKIE (the dashboard login's "
        "session cookie, oauth2_proxy_kubeflow=...: a default Kubeflow install from a laptop), "
        "KFP_TOKEN (a bearer token: ingresses that accept Kubernetes tokens, or the API server "
        "through a port-forward with a token of audience pipelines.kubeflow.org), the "
        "KF_PIPELINES_SA_TOKEN_PATH file (a notebook in the profile; docs/cluster.md, step 5). "
        "Prints the run's URL and the id "
        "that --resume takes if the run fails.",
    )
    s.add_argument(
        "--host",
        default=None,
        help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline "
        "(default inside a pod: http://ml-pipeline.kubeflow.svc.cluster.local:8888)",
    )
    s.add_argument("--experiment", default="receiptflow", help="KFP experiment (default receiptflow)")
    s.add_argument(
        "--namespace",
        default=None,
        help="Kubeflow profile namespace the run goes to (multi-user installs); the job build's "
        "--param namespace is where its training jobs are created (default: the run's)",
    )
    s.add_argument("--run-name", default=None, help="display name of the run (default: pipeline name and time)")
    s.add_argument(
        "--no-check",
        action="store_true",
        help="skip `receiptflow cluster check` of the namespace, which runs first where this machine has "
        "Kubernetes credentials (kubeconfig or in-cluster)",
    )
    s.add_argument(
        "--target",
        choices=("kfp-2.14", "kfp-2.5"),
        default="kfp-2.14",
        help="the build to run: kfp-2.14 (KFP backend >= 2.14, Kubeflow 1.11+; default) or kfp-2.5 (KFP "
        "2.5.0, Kubeflow 1.10.1+: 5 folds, no folds/minio_secret/node_selector/tolerations parameters; "
        "set those with the options below)",
    )
    s.add_argument(
        "--trainings",
        choices=TRAININGS,
        default="task",
        help="how each training (replication and folds) runs. task (default): one KFP task, one pod with "
        "one GPU (run8_kfold.yaml, -kfp2.5). job: one Kubeflow Trainer v2 TrainJob or Training Operator "
        "v1 PyTorchJob of num_nodes x gpus_per_node GPUs, launched by a CPU task (run8_kfold_trainjob.yaml, "
        "-kfp2.5); adds the parameters training_backend (trainjob|pytorchjob; kfp-2.14 default trainjob, "
        "kfp-2.5 pytorchjob), num_nodes, gpus_per_node, training_runtime, namespace, job_timeout_minutes "
        "(docs/distributed.md)",
    )
    _fixed_options(s)
    _param_options(s)
    s.set_defaults(func=_submit)

    r = verbs.add_parser(
        "run",
        help="run the whole pipeline on this machine (kfp.local, no cluster)",
        description="Run run8_kfold with kfp.local.SubprocessRunner(use_venv=False): every task in "
        "this Python environment, folds two at a time. Kubernetes settings and caching are ignored "
        "locally; the trainings' retry policy is honoured (kfp 2.17.3, task_executor.py:124-175; tests/test_pipeline.py). A stopped run resumes with "
        "the same command plus --resume RUN_ID (the id it printed first).",
    )
    r.add_argument(
        "--local", action="store_true", required=True, help="run locally (required: a cluster run is `submit`)"
    )
    r.add_argument("--data", default=None, help="dataset root (folder or s3://); sets dataset_uri")
    r.add_argument(
        "--output", default=None, help=f"where results are published; sets output_uri (default {LOCAL_ROOT})"
    )
    r.add_argument("--pipeline-root", default=None, help=f"kfp.local artifact folder (default {LOCAL_ROOT}/kfp)")
    r.add_argument("--verbose", action="store_true", help="also show kfp's executor input/output dumps")
    r.add_argument(
        "--trainings",
        choices=TRAININGS,
        default="task",
        help="task only (the default): kfp.local cannot create the TrainJobs / PyTorchJobs of "
        "--trainings job, which is `pipeline submit --trainings job`",
    )
    _param_options(r)
    r.set_defaults(func=_run_local)


def _fixed_options(p: argparse.ArgumentParser) -> None:
    """What the kfp-2.5 build fixes at compile time (run8_kfold.Fixed)."""
    p.add_argument(
        "--minio-secret",
        default=None,
        metavar="NAME",
        help="kfp-2.5: the MinIO Secret's name written into the YAML (default receiptflow-minio)",
    )
    p.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="LABEL=VALUE",
        help="kfp-2.5: a node selector label of the GPU tasks (repeatable)",
    )
    p.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE]:EFFECT",
        help="kfp-2.5: a toleration of the GPU tasks (repeatable); without =VALUE the operator is Exists, "
        "e.g. nvidia.com/gpu:NoSchedule",
    )


def _fixed(args, targets) -> object:
    """run8_kfold.Fixed of the options, refused for a kfp-2.14 build (it takes them as run parameters)."""
    from pipelines.compile import fixed_settings

    fixed = fixed_settings(args.minio_secret, args.node_selector, args.toleration)
    if fixed is not None and "kfp-2.5" not in targets:
        raise DataError(
            "--minio-secret, --node-selector and --toleration set the kfp-2.5 build; the kfp-2.14 one "
            "takes them as run parameters (minio_secret, node_selector, tolerations)"
        )
    return fixed


def _param_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline parameter (repeatable), e.g. --param epochs=10 --param 'overrides=[\"trainer.precision=32\"]'",
    )
    p.add_argument("--params-file", default=None, help="YAML mapping of pipeline parameters (--param wins)")
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_ID",
        help="rerun the failed run RUN_ID (its run_id, else its KFP run id): sets run_id=RUN_ID so every "
        "training resumes from <output_uri>/runs/RUN_ID/checkpoints/; refused when no checkpoint is there",
    )


def _build(args):
    """(pipeline function, its `absent` explainer) of what the command runs: the build of --target and
    --trainings for `submit`, run8_kfold for `run --local`, which refuses --trainings job."""
    from pipelines.compile import DEFAULT_TARGET
    from pipelines.submit import absent, build

    local = args.verb == "run"
    if local and args.trainings == "job":
        raise DataError(
            "--trainings job: kfp.local runs every task as a process on this machine and cannot create "
            "the cluster's TrainJobs / PyTorchJobs; run that build with `receiptflow pipeline submit "
            "--trainings job`, or locally without --trainings job"
        )
    target = getattr(args, "target", DEFAULT_TARGET)
    fixed = _fixed(args, (target,)) if not local else None
    return build(target, args.trainings, fixed), absent(target, args.trainings, local=local)


def params_of(args) -> dict:
    """--params-file, then --param, typed and checked against the parameters of the build that runs."""
    from pipelines.params import load_params_file, parse_params

    pipeline, absent = _build(args)
    params = load_params_file(args.params_file, pipeline, absent) if args.params_file else {}
    params.update(parse_params(args.param, pipeline, absent))
    if args.resume is not None:
        from pipelines.resume import with_run_id

        params = with_run_id(params, args.resume)
    return params


def _compile(args) -> int:
    from pipelines.compile import FORMATS, TARGETS, compile_pipelines

    targets = TARGETS if args.target == "all" else (args.target,)
    fixed = _fixed(args, targets)
    for path in compile_pipelines(args.out_dir, targets, FORMATS if args.format == "all" else (args.format,), fixed):
        print(f"wrote {path}")
    return 0


def _submit(args) -> int:
    from pipelines.submit import submit

    url, run_id = submit(
        args.host,
        params_of(args),
        experiment=args.experiment,
        namespace=args.namespace,
        run_name=args.run_name,
        resume=args.resume is not None,
        target=args.target,
        fixed=_fixed(args, (args.target,)),
        trainings=args.trainings,
        preflight=not args.no_check,
    )
    print(url)
    print(
        f"run id {run_id}: if the run fails, submit it again with --resume {run_id} (its trainings continue from "
        "their checkpoints)",
        flush=True,
    )
    return 0


def _run_local(args) -> int:
    from pipelines.local import run_local

    params = params_of(args)
    if args.data:
        params["dataset_uri"] = args.data
    if args.output:
        params["output_uri"] = args.output
    if "dataset_uri" not in params:
        raise DataError(
            "no dataset: pass --data DIR (a dataset root, e.g. from `receiptflow synth`) or --param dataset_uri=..."
        )
    run_local(params, pipeline_root=args.pipeline_root, verbose=args.verbose, resume=args.resume is not None)
    return 0

"""`receiptflow cluster check`: the preflight a profile owner runs before the first submit
(pipelines/cluster_check.py; `pipeline submit` runs it first unless --no-check).

    receiptflow cluster check [--namespace NS] [--release auto|1.10|1.11] [--trainings task|job] [--sweep]
        [--minio-secret NAME] [--output-uri S3] [--host KFP_URL] [--target kfp-2.14|kfp-2.5]
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "cluster",
        help="check a Kubeflow namespace before the first run",
        description="What a run needs of the cluster, checked as you through the Kubernetes API.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    c = verbs.add_parser(
        "check",
        help="preflight: CRDs, TrainingRuntime, RBAC, storage Secret, Katib, KFP version, storage prefix",
        description="Check a namespace for a run: the CRDs the trainings and the sweep need, the TrainingRuntime, "
        "each verb the run needs (SelfSubjectAccessReview), the storage Secret and its keys, Katib's metrics-collector "
        "label and its verdict on the sweep's Experiment (a server-side dry run), the KFP API's version against the "
        "compiled file, and a listing under --output-uri with the Secret's key where the store is reachable from here. "
        "One line per problem with its fix; exit 2 when there is one. Kubernetes credentials: in-cluster, else the "
        "kubeconfig (KUBECONFIG).",
    )
    c.add_argument(
        "--namespace", default=None, help="the profile namespace (default: the kubeconfig context's, in a pod its own)"
    )
    c.add_argument(
        "--release",
        default="auto",
        help="Kubeflow release whose training jobs to expect: auto (what the "
        "cluster serves, TrainJob first), 1.10 (PyTorchJob) or 1.11 (TrainJob)",
    )
    c.add_argument(
        "--trainings",
        choices=("task", "job"),
        default="task",
        help="as for `pipeline submit`: job checks the training-job CRD, runtime and verbs",
    )
    c.add_argument(
        "--training-backend",
        choices=("trainjob", "pytorchjob"),
        default=None,
        help="with --trainings job: the kind to check (default: --release's)",
    )
    c.add_argument(
        "--training-runtime",
        default="TrainingRuntime/receiptflow-torch",
        help="with trainjob: the runtime the TrainJobs name (default TrainingRuntime/receiptflow-torch)",
    )
    c.add_argument(
        "--sweep", action="store_true", help="also what a Katib sweep needs (sweep_then_train, manifests/katib)"
    )
    c.add_argument("--minio-secret", default="receiptflow-minio", help="the storage Secret (default receiptflow-minio)")
    c.add_argument("--output-uri", default=None, help="where the run writes (s3://...): listed with the Secret's key")
    c.add_argument("--host", default=None, help="the KFP API (as for `pipeline submit`): its version is checked")
    c.add_argument("--target", choices=("kfp-2.14", "kfp-2.5"), default="kfp-2.14", help="the build you will submit")
    c.set_defaults(func=_check)


def _check(args) -> int:
    from pipelines.cluster_check import check, connect

    kube, namespace = connect(args.namespace)
    print(f"checking namespace {namespace}", flush=True)
    report = check(
        kube,
        namespace,
        trainings=args.trainings,
        training_backend=args.training_backend,
        release=args.release,
        training_runtime=args.training_runtime,
        sweep=args.sweep,
        minio_secret=args.minio_secret,
        output_uri=args.output_uri,
        host=args.host,
        target=args.target,
    )
    for line in report.lines():
        print(line, flush=True)
    return 2 if report.problems else 0

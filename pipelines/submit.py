"""Start run8_kfold on a Kubeflow Pipelines endpoint through `kfp.Client`: the build of a target
(pipelines/compile.py TARGETS) with each training one pod (`trainings="task"`) or one TrainJob /
PyTorchJob (`trainings="job"`, docs/distributed.md)."""
from __future__ import annotations

import os
import sys
import warnings

from model.errors import DataError

from pipelines.compile import DEFAULT_TARGET

TOKEN_ENV = "KFP_TOKEN"
TRAININGS = ("task", "job")  # --trainings: one KFP task (pod, GPU) per training, or a multi-node job per training
# the compiled file of each build, named in messages (pipelines/compile.py writes them)
BUILD_FILES = {("kfp-2.14", "task"): "run8_kfold.yaml", ("kfp-2.14", "job"): "run8_kfold_trainjob.yaml",
               ("kfp-2.5", "task"): "run8_kfold-kfp2.5.yaml", ("kfp-2.5", "job"): "run8_kfold_trainjob-kfp2.5.yaml"}


def build(target: str = DEFAULT_TARGET, trainings: str = "task", fixed=None):
    """The pipeline function of `target` and `trainings`; `fixed` (run8_kfold.Fixed) sets a kfp-2.5
    build's Secret and placement."""
    from pipelines import run8_kfold as r

    if (target, trainings) not in BUILD_FILES:
        raise DataError(f"--target {target!r} --trainings {trainings!r}: expected a target of "
                        f"{DEFAULT_TARGET}, kfp-2.5 and trainings of {', '.join(TRAININGS)}")
    if target == DEFAULT_TARGET:
        return r.run8_kfold_trainjob if trainings == "job" else r.run8_kfold
    return (r.run8_kfold_trainjob_kfp25 if trainings == "job" else r.run8_kfold_kfp25)(fixed or r.Fixed())


def absent(target: str = DEFAULT_TARGET, trainings: str = "task", *, local: bool = False):
    """name -> why the build of `target`/`trainings` has no parameter `name` although another build has
    it (one line naming the option to use), or None for a name no build has (params.py then suggests
    the closest ones)."""
    from pipelines.params import signature
    from pipelines.run8_kfold import DEFAULT_FOLDS, JOB_DEFAULTS

    def why(name: str) -> str | None:
        if name in JOB_DEFAULTS and trainings == "task":
            where = ("which runs on a cluster only (kfp.local cannot create cluster jobs): "
                     "`receiptflow pipeline submit --trainings job`" if local else "add --trainings job")
            profile = ("; the Kubeflow profile the run goes to is `pipeline submit --namespace`"
                       if name == "namespace" else "")
            return (f"{name} is a parameter of the job-backed build (each training a TrainJob or PyTorchJob, "
                    f"docs/distributed.md), {where}{profile}")
        if target == "kfp-2.5" and name in signature():
            return (f"--target kfp-2.5 has no parameter {name}: that build runs {DEFAULT_FOLDS} folds and takes the "
                    "MinIO Secret and the GPU tasks' placement at compile time (--minio-secret, --node-selector, "
                    "--toleration)")
        return None

    return why


def resume_jobs_note(params: dict) -> str:
    """What a resumed job-backed run does with the jobs of the run it resumes (components/training_job.py
    run_job): nothing for the user to delete."""
    kind = params["training_backend"]
    return (f"note: each training reuses run {params['run_id'].strip()}'s {kind} that succeeded or still runs; after "
            f"a failed one it creates the next attempt (<job>-r2, -r3...), which resumes from the checkpoints, and "
            "leaves the failed job for its logs")


def submit(host: str, params: dict, *, experiment: str = "receiptflow", namespace: str | None = None,
           run_name: str | None = None, resume: bool = False, target: str = DEFAULT_TARGET,
           fixed=None, trainings: str = "task") -> tuple[str, str]:
    """Create the run; returns its URL in the Kubeflow UI and its run id (the `run_id` parameter, else
    the KFP run's id: what `--resume` takes). `resume`: params["run_id"] names a failed run whose
    checkpoints must exist where this machine can see the store (pipelines/resume.py). `target` and
    `trainings`: the build (`build`); `fixed` (run8_kfold.Fixed) sets the kfp-2.5 build's Secret and
    placement. Every parameter is checked against that build's signature before any request."""
    import kfp

    from pipelines.params import check_params, check_run, complete

    pipeline = build(target, trainings, fixed)
    params = check_params(dict(params), source="parameters", pipeline=pipeline, absent=absent(target, trainings))
    check_run(params, check_dataset=False, pipeline=pipeline)  # the store may be reachable from the cluster only: validate_run checks it there
    if resume:
        from pipelines.resume import check_resumable

        full = complete(params, pipeline)
        check_resumable(full, warn=lambda msg: print(msg, file=sys.stderr, flush=True))
        if trainings == "job":
            print(resume_jobs_note(full), file=sys.stderr, flush=True)
    if not host.startswith(("http://", "https://")):
        raise DataError(f"--host {host!r}: expected the KFP API URL, e.g. https://kubeflow.example.com/pipeline")
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": so does this pipeline
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get(TOKEN_ENV) or None)
        result = client.create_run_from_pipeline_func(pipeline, arguments=params, experiment_name=experiment,
                                                      run_name=run_name, namespace=namespace)
    except ApiException as exc:
        raise DataError(f"{host}: the KFP API answered {exc.status} {exc.reason}"
                        + (f" (set {TOKEN_ENV} to a valid token)" if exc.status in (401, 403) else "")) from None
    except (HTTPError, OSError) as exc:
        raise DataError(f"{host}: cannot reach the KFP API ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    return f"{host.rstrip('/')}/#/runs/details/{result.run_id}", params.get("run_id") or result.run_id

"""Start run8_kfold on a Kubeflow Pipelines endpoint through `kfp.Client`."""
from __future__ import annotations

import os
import warnings

from model.errors import DataError

from pipelines.compile import DEFAULT_TARGET

TOKEN_ENV = "KFP_TOKEN"


def _pipeline(target: str, fixed, params: dict):
    """The pipeline function of `target`; a kfp-2.5 run refuses the parameters that build fixes."""
    from pipelines.run8_kfold import DEFAULT_FOLDS, Fixed, run8_kfold, run8_kfold_kfp25

    if target == DEFAULT_TARGET:
        return run8_kfold
    if target != "kfp-2.5":
        raise DataError(f"--target {target!r}: expected {DEFAULT_TARGET} or kfp-2.5")
    pipeline = run8_kfold_kfp25(fixed or Fixed())
    fixed_names = sorted(set(params) - set(pipeline.component_spec.inputs))
    if fixed_names:
        raise DataError(f"--target kfp-2.5 has no parameter {', '.join(fixed_names)}: that build runs "
                        f"{DEFAULT_FOLDS} folds and takes the MinIO Secret and the GPU tasks' placement at compile "
                        "time (--minio-secret, --node-selector, --toleration)")
    return pipeline


def submit(host: str, params: dict, *, experiment: str = "receiptflow", namespace: str | None = None,
           run_name: str | None = None, resume: bool = False, target: str = DEFAULT_TARGET,
           fixed=None) -> tuple[str, str]:
    """Create the run; returns its URL in the Kubeflow UI and its run id (the `run_id` parameter, else
    the KFP run's id: what `--resume` takes). `resume`: params["run_id"] names a failed run whose
    checkpoints must exist where this machine can see the store (pipelines/resume.py). `target`:
    the build (pipelines/compile.py TARGETS); `fixed` (run8_kfold.Fixed) sets the kfp-2.5 build's
    Secret and placement."""
    import sys

    import kfp

    from pipelines.params import check_run, signature

    pipeline = _pipeline(target, fixed, params)
    check_run(params, check_dataset=False)  # the store may be reachable from the cluster only: validate_run checks it there
    if resume:
        from pipelines.resume import check_resumable

        full = {name: default for name, (_, default) in signature().items()} | params
        check_resumable(full, warn=lambda msg: print(msg, file=sys.stderr, flush=True))
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

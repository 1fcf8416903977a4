"""Start run8_kfold on a Kubeflow Pipelines endpoint through `kfp.Client`."""
from __future__ import annotations

import os

from model.errors import DataError

TOKEN_ENV = "KFP_TOKEN"


def submit(host: str, params: dict, *, experiment: str = "receiptflow", namespace: str | None = None,
           run_name: str | None = None) -> str:
    """Create the run; returns its URL in the Kubeflow UI."""
    import kfp

    from pipelines.params import check_run
    from pipelines.run8_kfold import run8_kfold

    check_run(params)
    if not host.startswith(("http://", "https://")):
        raise DataError(f"--host {host!r}: expected the KFP API URL, e.g. https://kubeflow.example.com/pipeline")
    client = kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get(TOKEN_ENV) or None)
    result = client.create_run_from_pipeline_func(run8_kfold, arguments=params, experiment_name=experiment,
                                                  run_name=run_name, namespace=namespace)
    return f"{host.rstrip('/')}/#/runs/details/{result.run_id}"

"""Kubeflow Pipelines v2 components: thin, typed wrappers around `model/`, one file each.

Every component is a lightweight Python component whose body imports the installed
`receiptflow` package, so its container image must hold that package (images/). The image is
set here and only here: ``RECEIPTFLOW_IMAGE`` at compile time, else `DEFAULT_IMAGE`, a pinned
tag. kfp is not pip-installed at run time (``install_kfp_package=False``): the image has it, and
pods need no network. Locally, ``kfp.local.SubprocessRunner(use_venv=False)`` runs the same
bodies in this Python environment.
"""

import os

from kfp import dsl

DEFAULT_IMAGE = "ghcr.io/receiptflow/receiptflow:0.1.0"
IMAGE = os.environ.get("RECEIPTFLOW_IMAGE", "").strip() or DEFAULT_IMAGE


def component(func):
    """`dsl.component` with our image and no run-time kfp install. Inside a running task kfp
    imports its runtime-only `kfp.dsl` (`_KFP_RUNTIME=true`, no `dsl.component`): there the plain
    function comes back, so a component's body may call another's (pipelines/unrolled.py)."""
    if not hasattr(dsl, "component"):
        return func
    return dsl.component(func, base_image=IMAGE, install_kfp_package=False)

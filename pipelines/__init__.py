"""Orchestration on Kubeflow: the run8-kfold pipeline, its compile/submit/local-run entry points."""

LOCAL_ROOT = "build/pipeline"  # local runs: artifacts under <root>/kfp, results under <root>/runs/<run id>

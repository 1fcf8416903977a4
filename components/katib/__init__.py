"""Katib helpers, not components: what the Katib components and the sweep tools share.

- `experiments`: create-or-attach a Katib Experiment and wait for it (run_katib_experiment; the
  client, the namespace default and the API-error handling, shared with the job launcher and the
  early-stopping service: components/kube.py);
- `trials`: the normalized Trial record, its loaders (cluster, JSON, CSV) and the best-trial rule
  (select_best_trial, `receiptflow sweep report`, pipelines/sweep_report.py).

Here, not in pipelines/ (where pipelines/sweep.py renders the Experiments): component bodies import
these at run time, inside a task, where kfp's runtime-only `kfp.dsl` cannot import the pipeline
modules (components/pods.py). They import neither kfp nor pipelines/*, and the kubernetes client
only where they call it.
"""

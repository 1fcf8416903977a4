"""run_katib_experiment: create a Katib Experiment (a custom object, through the kubernetes
client) and wait for it, reporting the trials' progress, with a timeout."""

from kfp.dsl import Markdown, Output

from components import component


@component
def run_katib_experiment(experiment: dict, namespace: str, dataset_uri: str, output_uri: str, name_suffix: str,
                         timeout_minutes: int, poll_seconds: int, progress: Output[Markdown]) -> str:
    """Create `experiment` (a kubeflow.org/v1beta1 Experiment manifest whose trial template says
    @DATASET_URI@ and @OUTPUT_URI@ where this run's URIs go) as `<metadata.name>-<name_suffix>` in
    `namespace`, then poll until it succeeds or fails; fails after `timeout_minutes` (the
    Experiment keeps running). Returns its name. Needs RBAC to create and read Experiments and
    Trials in the namespace."""
    import json
    import time

    from components.trials import katib_api, summarize

    text = json.dumps(experiment).replace("@DATASET_URI@", dataset_uri.rstrip("/")).replace("@OUTPUT_URI@", output_uri.rstrip("/"))
    body = json.loads(text)
    body["metadata"]["namespace"] = namespace
    suffix = "".join(c for c in name_suffix.lower() if c.isalnum())[:8]
    name = f"{body['metadata']['name']}-{suffix}" if suffix else body["metadata"]["name"]
    body["metadata"]["name"] = name
    api = katib_api()
    api.create_namespaced_custom_object("kubeflow.org", "v1beta1", namespace, "experiments", body)
    print(f"created Experiment {namespace}/{name}", flush=True)
    deadline = time.monotonic() + timeout_minutes * 60
    while True:
        obj = api.get_namespaced_custom_object("kubeflow.org", "v1beta1", namespace, "experiments", name)
        status = obj.get("status", {})
        done = {c["type"] for c in status.get("conditions", []) if c.get("status") == "True"} & {"Succeeded", "Failed"}
        line = summarize(status)
        print(f"{name}: {line}", flush=True)
        if done:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"Experiment {namespace}/{name} not finished after {timeout_minutes} min ({line}); "
                               f"it keeps running: `kubectl -n {namespace} get experiment {name}`")
        time.sleep(poll_seconds)
    with open(progress.path, "w", encoding="utf-8") as f:
        f.write(f"# Katib Experiment `{namespace}/{name}`\n\n{line}\n")
    if "Failed" in done:
        raise RuntimeError(f"Experiment {namespace}/{name} failed: {line}")
    return name

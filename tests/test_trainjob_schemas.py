"""Every TrainJob, PyTorchJob and TrainingRuntime we render validates against the upstream CRD schemas
(tests/fixtures/kubeflow-crds, with their provenance), closed against unknown fields (the API server
would prune a misspelled one silently); and what our command relies on matches Kubeflow's own
`torch-distributed` runtime: the container name, the trainer ancestor label, the torch ML policy
that sets torchrun's PET_* variables (issue 14, item 4)."""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from components import training_job as tj
from pipelines import sweep

CRDS = Path(__file__).parent / "fixtures" / "kubeflow-crds"
REPO = Path(__file__).resolve().parents[1]
TRAINJOB_CRDS = ("trainer-v2.1.0_trainjobs.yaml", "trainer-v2.2.0_trainjobs.yaml")  # Kubeflow 1.11.0 and master
RUNTIME_CRDS = ("trainer-v2.1.0_trainingruntimes.yaml", "trainer-v2.2.0_trainingruntimes.yaml")
PYTORCHJOB_CRD = "training-operator-v1.9.2_pytorchjobs.yaml"


def _closed(schema):
    """The schema with every object that lists properties closed to others (unless it preserves unknown fields)."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        return schema
    return [_closed(v) for v in schema] if isinstance(schema, list) else schema


@functools.cache
def schema(crd: str) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 0.5-0.9 MB each
    (version,) = [v for v in yaml.load((CRDS / crd).read_text(), Loader=loader)["spec"]["versions"] if v.get("storage")]
    return _closed(version["schema"]["openAPIV3Schema"])


def problems(obj: dict, crd: str) -> list[str]:
    validator = jsonschema.Draft7Validator(schema(crd))
    return [f"{crd}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def launcher_bodies() -> dict[str, dict]:
    """What components/run_training_job.py creates, for both backends (multi-node)."""
    from components import pods

    env = pods.env("receiptflow-minio")
    command = tj.node_command([("s3://b/runs/r/inputs/dataset", f"{tj.DATA_DIR}/dataset")], ["preset=run8"])
    name = tj.job_name("0f3c9a1e-77aa", "fold_3")
    return {
        "trainjob": tj.trainjob(
            name,
            namespace="team-a",
            image="img:1",
            command=command,
            env=env,
            num_nodes=2,
            gpus_per_node=4,
            runtime="TrainingRuntime/receiptflow-torch",
            cpu="32",
            memory="128Gi",
            labels={"app.kubernetes.io/part-of": "receiptflow"},
        ),
        "trainjob-cluster-runtime": tj.trainjob(
            name,
            namespace="team-a",
            image="img:1",
            command=command,
            env=env,
            num_nodes=3,
            gpus_per_node=1,
            runtime="torch-distributed",
            cpu="8",
            memory="32Gi",
        ),
        "pytorchjob": tj.pytorchjob(
            name,
            namespace="team-a",
            num_nodes=2,
            gpus_per_node=4,
            pod=lambda: pods.pod_template(
                container_name=tj.PYTORCH_CONTAINER,
                image="img:1",
                command=command,
                env_vars=env,
                gpus=4,
                cpu="32",
                memory="128Gi",
            ),
        ),
    }


def katib_trial(stem: str) -> dict:
    """The trialSpec as Katib creates it for one trial (${trialParameters.*} filled in), with a name."""
    spec = sweep.experiments()[stem]["spec"]["trialTemplate"]["trialSpec"]
    text = re.sub(r"\$\{trialParameters\.[^}]+\}", "1", json.dumps(spec))
    return json.loads(text) | {"metadata": {"name": "trial-1", "namespace": "team-a"}}


@pytest.mark.parametrize("crd", TRAINJOB_CRDS)
@pytest.mark.parametrize("which", ["trainjob", "trainjob-cluster-runtime"])
def test_launcher_trainjobs_validate_on_trainer_2_1_and_2_2(which, crd):
    assert problems(launcher_bodies()[which], crd) == []


@pytest.mark.parametrize("crd", TRAINJOB_CRDS)
def test_katib_trainjob_trial_validates_on_trainer_2_1_and_2_2(crd):
    assert problems(katib_trial(sweep.TRAINJOB_NAME), crd) == []


def test_pytorchjobs_validate_launcher_and_katib_trial():
    assert problems(launcher_bodies()["pytorchjob"], PYTORCHJOB_CRD) == []
    assert problems(katib_trial(sweep.PYTORCHJOB_NAME), PYTORCHJOB_CRD) == []


@pytest.mark.parametrize("crd", RUNTIME_CRDS)
def test_our_training_runtime_validates(crd):
    runtime = yaml.safe_load((REPO / "manifests" / "trainer" / "receiptflow-torch.yaml").read_text())
    assert problems(runtime, crd) == []


def test_kubeflows_own_runtime_validates_against_its_crd():
    """The checker itself, on upstream's file: the ClusterTrainingRuntime every install has."""
    upstream = yaml.safe_load((CRDS / "torch_distributed-runtime.yaml").read_text())
    assert problems(upstream, "trainer-v2.2.0_clustertrainingruntimes.yaml") == []


@pytest.mark.parametrize(
    "where, planted",
    [
        ("trainjob", lambda b: b["spec"]["trainer"].update(numNode=2)),  # numNodes misspelled
        ("trainjob", lambda b: b["spec"]["trainer"]["resourcesPerNode"].update(limit={})),  # limits misspelled
        ("trainjob", lambda b: b["spec"].update(podSpecOverrides=[])),  # a field neither version has
        ("pytorchjob", lambda b: b["spec"]["pytorchReplicaSpecs"]["Master"].update(replica=1)),
        (
            "pytorchjob",
            lambda b: b["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0].update(
                volumeMount=[]
            ),
        ),
    ],
)
def test_a_planted_misspelled_field_fails(where, planted):
    body = copy.deepcopy(launcher_bodies()[where])
    planted(body)
    crds = TRAINJOB_CRDS if where == "trainjob" else (PYTORCHJOB_CRD,)
    assert all(problems(body, crd) for crd in crds)


def test_pod_template_overrides_of_trainer_2_1_are_refused_by_2_2():
    """Why our TrainJobs carry no pod fields: v2.1.0's podTemplateOverrides is gone in v2.2.0."""
    body = copy.deepcopy(launcher_bodies()["trainjob"])
    body["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}], "spec": {"nodeSelector": {"a": "b"}}}]
    assert problems(body, TRAINJOB_CRDS[0]) == []
    assert problems(body, TRAINJOB_CRDS[1]) != []


# ---- what the command relies on matches the upstream runtime --------------------------------------------------


def _node_job(runtime: dict) -> dict:
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    return job


def test_our_runtime_has_the_upstream_runtimes_shape():
    upstream = yaml.safe_load((CRDS / "torch_distributed-runtime.yaml").read_text())
    ours = yaml.safe_load((REPO / "manifests" / "trainer" / "receiptflow-torch.yaml").read_text())
    assert upstream["metadata"]["name"] == "torch-distributed"  # the plain-name default of training_runtime
    assert tj.runtime_ref("torch-distributed") == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert tj.runtime_ref(sweep.RUNTIME) == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "TrainingRuntime",
        "name": ours["metadata"]["name"],
    }
    for runtime in (upstream, ours):
        # the torch plugin sets PET_NNODES/PET_NPROC_PER_NODE/PET_NODE_RANK/PET_MASTER_ADDR/PET_MASTER_PORT on the
        # container named "node" of the job labelled the trainer ancestor (Trainer v2.1.0 torch.go:100-158)
        assert "torch" in runtime["spec"]["mlPolicy"]
        job = _node_job(runtime)
        assert (
            job["name"] == tj.TRAINER_CONTAINER == tj.RANK0_LABELS["trainjob"]["jobset.sigs.k8s.io/replicatedjob-name"]
        )
        assert job["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
        assert [c["name"] for c in job["template"]["spec"]["template"]["spec"]["containers"]] == [tj.TRAINER_CONTAINER]
    # a failed node pod is not started again by its Job (the default backoffLimit is 6; nothing upstream sets one)
    assert _node_job(ours)["template"]["spec"]["backoffLimit"] == 0
    assert "backoffLimit" not in _node_job(upstream)["template"]["spec"]
    pod = _node_job(ours)["template"]["spec"]["template"]["spec"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    assert pod["securityContext"]["runAsUser"] == sweep.USER_ID and pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("which", ["trainjob", "pytorchjob"])
def test_the_node_command_leaves_rendezvous_to_the_engines_pet_variables(which):
    """torchrun reads --nnodes/--nproc-per-node/--node-rank/--master-addr/--master-port from PET_* (torch's
    torch/distributed/argparse_util.py env action); naming any of them would override the engine's values."""
    from torch.distributed.run import get_args_parser

    body = launcher_bodies()[which]
    if which == "trainjob":
        command = body["spec"]["trainer"]["command"]
        assert not any(e["name"].startswith("PET_") for e in body["spec"]["trainer"]["env"])  # reserved by the webhook
    else:
        command = body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
        assert body["spec"]["nprocPerNode"] == "4"
    assert command[:2] == ["sh", "-c"]
    torchrun = shlex.split(command[2].split(" && ")[-1])
    assert torchrun[:4] == ["exec", "python", "-m", "torch.distributed.run"]
    env = {
        "PET_NNODES": "2",
        "PET_NPROC_PER_NODE": "4",
        "PET_NODE_RANK": "1",
        "PET_MASTER_ADDR": "job-node-0-0.job",
        "PET_MASTER_PORT": "29400",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        args = get_args_parser().parse_args(torchrun[4:])
    assert (args.nnodes, args.nproc_per_node, args.node_rank, args.master_addr, args.master_port) == (
        "2",
        "4",
        1,
        "job-node-0-0.job",
        29400,
    )
    assert args.module and args.training_script == "model.cli" and args.training_script_args[0] == "train"


def test_katib_trainjob_trial_conditions_and_primary_pod_are_trainers():
    """Complete/Failed are TrainJob's terminal conditions (Trainer v2.1.0 trainjob_types.go:58-65); the primary
    pod is rank 0's (Katib v0.19.0 constants.go:38-50 defaults the same)."""
    template = sweep.experiments()[sweep.TRAINJOB_NAME]["spec"]["trialTemplate"]
    assert template["successCondition"] == 'status.conditions.#(type=="Complete")#|#(status=="True")#'
    assert template["failureCondition"] == 'status.conditions.#(type=="Failed")#|#(status=="True")#'
    assert template["primaryContainerName"] == "node"
    assert template["primaryPodLabels"] == {
        "jobset.sigs.k8s.io/replicatedjob-name": "node",
        "batch.kubernetes.io/job-completion-index": "0",
    }
    script = template["trialSpec"]["spec"]["trainer"]["command"][2]
    assert "exec " not in script  # Katib appends `&& echo completed > $$.pid` to the script


def test_job_names_are_stable_per_run_and_task_and_valid_labels():
    a, b = tj.job_name("0f3c9a1e-77aa-4b1c", "fold_3"), tj.job_name("0f3c9a1e-77aa-4b1c", "fold_3")
    assert a == b and a != tj.job_name("0f3c9a1e-77aa-4b1d", "fold_3") != tj.job_name("0f3c9a1e-77aa-4b1c", "fold_4")
    for run in ("0f3c9a1e-77aa-4b1c-9d2e-123456789abc", "My_Run.2026/11", "x" * 200):
        name = tj.job_name(run, "replication")
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 40, name

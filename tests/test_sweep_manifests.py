"""The Katib Experiments of manifests/katib/: rendered from pipelines/sweep.py, valid, the seed's sweep,
and their StdOut filter reads real training output the way Katib's Go collector does."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import sweep
from pipelines.run8_kfold import MINIO_SECRET_KEYS, RUN8

REPO = Path(__file__).resolve().parents[1]
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
TRIAL_PARAMETER = re.compile(r"\$\{trialParameters\.([^}]+)\}")


def checked_in() -> dict[str, dict]:
    return {
        p.stem: yaml.safe_load(p.read_text())
        for p in sorted(sweep.MANIFEST_DIR.rglob("*.yaml"))
        if p.name not in ("kustomization.yaml", "images.yaml")
    }  # kustomize's files, not Experiments


MANIFESTS = checked_in()


def trainjob_pod(trainjob: dict) -> dict:
    """The pod template Trainer builds for a TrainJob node: the runtime's (manifests/trainer/) with the
    trainer's image, command, env and resources on its "node" container (Trainer v2.1.0 torch.go:122-126
    and the trainer plugin; PET_* added there are not ours)."""
    from components.training_job import TRAINER_CONTAINER, runtime_ref

    ref = runtime_ref(sweep.RUNTIME)
    assert trainjob["spec"]["runtimeRef"] == ref
    runtime = yaml.safe_load((REPO / "manifests" / "trainer" / f"{ref['name']}.yaml").read_text())
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    pod = copy.deepcopy(job["template"]["spec"]["template"])
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == TRAINER_CONTAINER]
    trainer = trainjob["spec"]["trainer"]
    container.update(
        image=trainer["image"], command=trainer["command"], env=trainer["env"], resources=trainer["resourcesPerNode"]
    )
    return pod


def pods(manifest: dict) -> list[dict]:
    """The pod templates of a trialSpec (Job, every replica of a PyTorchJob, a TrainJob's node)."""
    spec = manifest["spec"]["trialTemplate"]["trialSpec"]
    if spec["kind"] == "Job":
        return [spec["spec"]["template"]]
    if spec["kind"] == "TrainJob":
        return [trainjob_pod(spec)]
    assert spec["kind"] == "PyTorchJob"
    return [r["template"] for r in spec["spec"]["pytorchReplicaSpecs"].values()]


def primary(manifest: dict) -> dict:
    name = manifest["spec"]["trialTemplate"]["primaryContainerName"]
    (container,) = [c for c in pods(manifest)[0]["spec"]["containers"] if c["name"] == name]
    return container


def substituted(manifest: dict, values: dict[str, str]) -> dict:
    """The trialSpec as Katib would create it for one trial: ${trialParameters.x} replaced."""
    text = json.dumps(manifest["spec"]["trialTemplate"]["trialSpec"])
    return json.loads(TRIAL_PARAMETER.sub(lambda m: values[m.group(1)], text))


# ---- the checked-in files are exactly what the code renders ---------------------------------------


def test_checked_in_manifests_match_the_code():
    assert (
        set(MANIFESTS)
        == set(sweep.experiments())
        == {"receiptflow-run8-sweep", "receiptflow-run8-sweep-ddp", "receiptflow-run8-sweep-trainjob"}
    )
    for stem, manifest in sweep.experiments().items():
        assert MANIFESTS[stem] == manifest, f"{sweep.manifest_path(stem)} drifted: run `receiptflow sweep render`"


def test_render_writes_every_experiment_with_the_generated_header(tmp_path):
    paths = sweep.render(tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{stem}.yaml" for stem in sweep.experiments())
    for path in paths:
        text = path.read_text()
        assert text.startswith("# ") and "receiptflow sweep render" in text.splitlines()[0]
        assert "pipelines/sweep.py" in text.splitlines()[0] and "not edit" in text.splitlines()[0].lower()
        assert "&id" not in text and "*id" not in text  # no YAML aliases: kubectl-friendly, readable
        assert yaml.safe_load(text) == sweep.experiments()[path.stem]
        assert path == sweep.manifest_path(path.stem, tmp_path)
        assert path.read_text() == sweep.manifest_path(path.stem).read_text()


def test_parameters_flow_into_the_manifest():
    m = sweep.experiment(
        "x",
        namespace="team",
        image="reg/img:1",
        dataset_uri="s3://b/d",
        output_uri="s3://b/out/",
        goal=0.97,
        parallel_trials=3,
        max_trials=5,
        max_failed_trials=1,
        gpus=2,
        minio_secret="sec",
    )
    spec = m["spec"]
    assert m["metadata"] == {
        "name": "x",
        "namespace": "team",
        "labels": {
            "app.kubernetes.io/part-of": "receiptflow",
            "app.kubernetes.io/component": "sweep",
            "app.kubernetes.io/instance": "x",
        },
    }
    counts = (spec["parallelTrialCount"], spec["maxTrialCount"], spec["maxFailedTrialCount"])
    assert spec["objective"]["goal"] == 0.97 and counts == (3, 5, 1)
    c = primary(m)
    assert c["image"] == "reg/img:1" and c["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "checkpoint_mirror=s3://b/out/sweeps/x/${trialParameters.trialName}" in c["command"]
    init = pods(m)[0]["spec"]["initContainers"][0]
    assert init["image"] == "reg/img:1" and "s3://b/d" in init["command"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e} == {"sec"}
    ddp = sweep.pytorchjob_experiment("y", gpus=8)
    assert ddp["metadata"]["name"] == "y" and primary(ddp)["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert primary(ddp)["command"][:7] == [
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "8",
        "-m",
    ]


def test_rendered_experiments_name_no_namespace_and_each_has_its_own_label():
    """`kubectl apply -n NS -f` fails when NS differs from a rendered namespace, and an overlay's
    `namespace:` or run_katib_experiment set it anyway; the instance label selects one sweep alone."""
    instances = []
    for stem, manifest in MANIFESTS.items():
        assert "namespace" not in manifest["metadata"], stem
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "sweep" and labels["app.kubernetes.io/instance"] == stem
        instances.append(labels["app.kubernetes.io/instance"])
    assert len(set(instances)) == len(MANIFESTS)


def test_image_comes_from_components():
    from components import IMAGE

    for manifest in MANIFESTS.values():
        for pod in pods(manifest):
            assert {c["image"] for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])} == {IMAGE}


# ---- valid against the Katib models and the Kubernetes 1.33 schemas ------------------------------


@pytest.mark.parametrize("stem", sorted(MANIFESTS))
def test_katib_model_round_trip_loses_nothing(stem):
    from kubeflow_katib_api.models import V1beta1Experiment

    d = MANIFESTS[stem]
    assert V1beta1Experiment.from_dict(d).to_dict() == d


def test_round_trip_would_catch_an_unknown_field():
    from kubeflow_katib_api.models import V1beta1Experiment

    d = copy.deepcopy(MANIFESTS["receiptflow-run8-sweep"])
    d["spec"]["objective"]["objectiveMetric"] = d["spec"]["objective"].pop("objectiveMetricName")  # a typo
    assert V1beta1Experiment.from_dict(d).to_dict() != d


@pytest.mark.parametrize("stem", sorted(MANIFESTS))
def test_trial_pods_validate_against_kubernetes_1_33(stem):
    import kubernetes_validate

    manifest = MANIFESTS[stem]
    values = {p["name"]: "1" for p in manifest["spec"]["trialTemplate"]["trialParameters"]}
    trial = substituted(manifest, values)
    if trial["kind"] == "Job":
        job = {**trial, "metadata": {"name": "trial", "namespace": sweep.NAMESPACE}}
        kubernetes_validate.validate(job, "1.33", strict=True)
    # PyTorchJob and TrainJob are CRDs kubernetes-validate has no schema for (tests/test_trainjob_schemas.py
    # checks them against theirs): validate each replica's / node's pod template as a Job's
    templates = [r["template"] for r in trial["spec"].get("pytorchReplicaSpecs", {}).values()]
    if trial["kind"] == "TrainJob":
        templates.append(trainjob_pod(trial))
    for template in templates:
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "trial"},
            "spec": {"backoffLimit": 0, "template": template},
        }
        kubernetes_validate.validate(job, "1.33", strict=True)


def test_kubernetes_validation_catches_a_broken_pod():
    import kubernetes_validate

    job = copy.deepcopy(MANIFESTS["receiptflow-run8-sweep"]["spec"]["trialTemplate"]["trialSpec"])
    job["metadata"] = {"name": "trial"}
    job["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.33", strict=True)


# ---- the seed's sweep -------------------------------------------------------------------------


@pytest.mark.parametrize("stem", sorted(MANIFESTS))
def test_search_space_objective_algorithm_and_early_stopping_are_the_seeds(stem):
    spec = MANIFESTS[stem]["spec"]
    assert MANIFESTS[stem]["apiVersion"] == "kubeflow.org/v1beta1" and MANIFESTS[stem]["kind"] == "Experiment"
    assert spec["parameters"] == [
        {
            "name": "lr",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.00025", "max": "0.0006", "distribution": "logUniform"},
        },
        {
            "name": "weight_decay",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.00005", "max": "0.0005", "distribution": "logUniform"},
        },
        {"name": "T_max", "parameterType": "categorical", "feasibleSpace": {"list": ["20", "22", "24"]}},
        {
            "name": "eta_min",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.000005", "max": "0.00005", "distribution": "logUniform"},
        },
    ]
    # Run 8 (the seed's best) lies inside the space
    space = {p["name"]: p["feasibleSpace"] for p in spec["parameters"]}
    for name in ("lr", "weight_decay", "eta_min"):
        assert float(space[name]["min"]) <= RUN8[name] <= float(space[name]["max"]), name
    assert str(RUN8["t_max"]) in space["T_max"]["list"]

    # explicit strategies: Katib would default precision/recall to `max` too (experiment_defaults.go:79-93)
    assert spec["objective"] == {
        "type": "maximize",
        "goal": 0.966,
        "objectiveMetricName": "val/hmean",
        "additionalMetricNames": ["val/precision", "val/recall"],
        "metricStrategies": [
            {"name": "val/hmean", "value": "max"},
            {"name": "val/precision", "value": "latest"},
            {"name": "val/recall", "value": "latest"},
        ],
    }
    assert spec["algorithm"]["algorithmName"] == "bayesianoptimization"
    settings = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
    # the names and values Katib's skopt service accepts
    assert set(settings) <= {"base_estimator", "n_initial_points", "acq_func", "acq_optimizer", "random_state"}
    assert settings["base_estimator"] in {"GP", "RF", "ET", "GBRT"}
    assert settings["acq_func"] in {"gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"}
    assert 0 < int(settings["n_initial_points"]) < spec["maxTrialCount"]
    # ours, with the seed's baseline as the floor (registered in katib-config: tests/test_kustomize.py)
    assert spec["earlyStopping"] == {
        "algorithmName": "medianstop-floor",
        "algorithmSettings": [
            {"name": "min_trials_required", "value": "3"},
            {"name": "start_step", "value": "10"},
            {"name": "floor", "value": "0.9653"},
        ],
    }
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (12, 2, 3)
    from model.metric_lines import KATIB_METRICS_FILTER

    assert spec["metricsCollectorSpec"] == {
        "collector": {"kind": "StdOut"},
        "source": {"filter": {"metricsFormat": [KATIB_METRICS_FILTER]}},
    }


@pytest.mark.parametrize("stem", sorted(MANIFESTS))
def test_trial_parameters_reference_every_parameter_and_nothing_else(stem):
    template = MANIFESTS[stem]["spec"]["trialTemplate"]
    params = {p["name"] for p in MANIFESTS[stem]["spec"]["parameters"]}
    declared = {tp["name"]: tp["reference"] for tp in template["trialParameters"]}
    assert all(tp.get("description") for tp in template["trialParameters"])
    assert {ref for ref in declared.values() if not ref.startswith("${trialSpec.")} == params
    assert declared["trialName"] == "${trialSpec.Name}"
    used = set(TRIAL_PARAMETER.findall(json.dumps(template["trialSpec"])))
    assert used == set(declared)
    assert template["retain"] is True


@pytest.mark.parametrize("stem", sorted(MANIFESTS))
def test_trial_command_is_a_valid_training_config_with_the_seeds_fixed_values(stem, tmp_path):
    from model.config import load_config

    manifest = MANIFESTS[stem]
    values = {
        "lr": str(RUN8["lr"]),
        "weight_decay": str(RUN8["weight_decay"]),
        "t_max": str(RUN8["t_max"]),
        "eta_min": str(RUN8["eta_min"]),
        "trialName": f"{stem}-abc123",
    }
    trial = substituted(manifest, values)
    if trial["kind"] == "TrainJob":
        template = trainjob_pod(trial)
    else:
        template = (
            trial["spec"]["template"]
            if trial["kind"] == "Job"
            else trial["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        )
    name = manifest["spec"]["trialTemplate"]["primaryContainerName"]
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == name]
    command = container["command"]
    pull = None
    if trial["kind"] == "TrainJob":  # sh -c 'receiptflow data pull URI DIR ... && python -m torch.distributed.run ...'
        import shlex

        assert command[:2] == ["sh", "-c"]
        first, last = command[2].split(" && ")
        pull, command = shlex.split(first), shlex.split(last)
        assert command[:6] == ["python", "-m", "torch.distributed.run", "-m", "model.cli", "train"]  # PET_* do the rest
    elif trial["kind"] == "Job":
        assert command[:2] == ["receiptflow", "train"]
    else:
        gpus = str(container["resources"]["limits"]["nvidia.com/gpu"])
        assert command[:9] == [
            "python",
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            gpus,
            "-m",
            "model.cli",
            "train",
        ]
    overrides = command[command.index("train") + 1 :]
    cfg = load_config(overrides)  # unknown keys are an error
    assert cfg.preset == "efficientnet_b4_lr_optimized"
    assert cfg.models.optimizer.lr == RUN8["lr"] and cfg.models.optimizer.weight_decay == RUN8["weight_decay"]
    assert cfg.models.scheduler.T_max == RUN8["t_max"] and cfg.models.scheduler.eta_min == RUN8["eta_min"]
    pp = cfg.models.head.postprocess
    assert (pp.thresh, pp.box_thresh, pp.max_candidates, cfg.trainer.max_epochs) == (0.29, 0.25, 600, 22)
    assert cfg.exp_name == f"{stem}-abc123" and cfg.output_dir == "/tmp/run"
    assert cfg.checkpoint_mirror == f"s3://receiptflow/sweeps/{stem}/{stem}-abc123"
    if pull:  # each node pulls the dataset itself, into the folder training reads, on the runtime's /tmp
        assert pull[:4] == ["receiptflow", "data", "pull", "s3://receiptflow/datasets/receipts"]
        assert pull[4] == cfg.dataset.root
        assert {"name": "scratch", "mountPath": "/tmp"} in container["volumeMounts"]
        return
    # the dataset is pulled by the init container into the folder training reads
    init = template["spec"]["initContainers"][0]
    assert init["command"][:3] == ["receiptflow", "data", "pull"] and init["command"][4] == cfg.dataset.root
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}.items() <= mounts.items()
    assert any(cfg.dataset.root.startswith(path + "/") for path in mounts)


@pytest.mark.parametrize("stem", sorted(MANIFESTS))
def test_pods_get_gpus_shm_secret_env_and_run_as_non_root(stem):
    manifest = MANIFESTS[stem]
    trial = manifest["spec"]["trialTemplate"]["trialSpec"]
    gpus = 1 if trial["kind"] == "Job" else 4
    cpu, memory = ("32", "128Gi") if trial["kind"] == "TrainJob" else ("8", "32Gi")  # a TrainJob's are per node
    if trial["kind"] == "Job":
        assert trial["spec"]["backoffLimit"] == 0
    elif trial["kind"] == "TrainJob":
        assert trial["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
        assert (trial["spec"]["trainer"]["numNodes"], trial["spec"]["trainer"]["numProcPerNode"]) == (1, gpus)
        assert manifest["spec"]["trialTemplate"]["primaryPodLabels"] == {
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "batch.kubernetes.io/job-completion-index": "0",
        }
    else:
        assert trial["apiVersion"] == "kubeflow.org/v1"
        assert set(trial["spec"]["pytorchReplicaSpecs"]) == {"Master"}
        assert trial["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
        assert manifest["spec"]["trialTemplate"]["primaryPodLabels"] == {"training.kubeflow.org/job-role": "master"}
    for pod in pods(manifest):
        assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Never"
        # pod level, so Katib's injected collector shares the uid (tests/test_katib_wrapper.py)
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            env = {e["name"]: e for e in c["env"]}
            for key, var in MINIO_SECRET_KEYS.items():
                assert env[var] == {
                    "name": var,
                    "valueFrom": {"secretKeyRef": {"name": "receiptflow-minio", "key": key}},
                }
            assert not any(e["name"].startswith("MINIO") and "value" in e for e in c["env"]), (
                "credentials in the manifest"
            )
        c = primary(manifest)
        assert (
            c["resources"]["limits"]["nvidia.com/gpu"] == gpus and c["resources"]["requests"]["nvidia.com/gpu"] == gpus
        )
        assert c["resources"]["requests"]["cpu"] == cpu and c["resources"]["requests"]["memory"] == memory
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]


# ---- the filter on real training output, parsed like Katib's Go collector ------------------------


def go_find_all_string_submatch(pattern: str, line: str) -> list[list[str]]:
    """Go's regexp.FindAllStringSubmatch(line, -1) for these patterns: RE2 \\w, \\s and \\d are ASCII-only;
    unmatched groups are ""."""
    return [[m.group(0), *(g or "" for g in m.groups())] for m in re.compile(pattern, re.ASCII).finditer(line)]


def katib_stdout_values(pattern: str, stdout: str, metric: str) -> list[float]:
    """What Katib's file/StdOut metrics collector reports for `metric`, in order: per line, every submatch
    whose trimmed group 1 is the metric name gives the float of trimmed group 2."""
    values = []
    for line in stdout.splitlines():
        for match in go_find_all_string_submatch(pattern, line):
            if len(match) < 3:
                continue
            if match[1].strip() == metric:
                values.append(float(match[2].strip()))
    return values


GO_RFC3339NANO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def katib_timestamp(line: str) -> str:
    """The observation time Katib's collector gives a metric line: its first space-separated token when
    time.Parse(time.RFC3339Nano) accepts it, else the zero time (katib v0.19.0
    pkg/metricscollector/v1beta1/file-metricscollector/file-metricscollector.go:89-99)."""
    first, sep, _ = line.partition(" ")
    return first if sep and GO_RFC3339NANO.fullmatch(first) else "0001-01-01T00:00:00Z"


@pytest.mark.slow
def test_rendered_filter_reads_exactly_the_per_epoch_hmean_of_a_real_training_run(tmp_path):
    from model.data.synth import write_synthetic_dataset

    data = tmp_path / "synth"
    write_synthetic_dataset(
        data, 8, seed=5, splits=(0.5, 0.25, 0.25), workers=1, width=(300, 340), height=(420, 480), progress=False
    )
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.cli",
            "train",
            "preset=cpu_tiny",
            f"dataset.root={data}",
            f"output_dir={out}",
            "dataset.image_size=128",
            "dataset.batch_size=2",
            "dataset.num_workers=0",
            "trainer.max_epochs=2",
            "models.scheduler.T_max=2",
            "trainer.log_every_n_steps=1",
            "seed=3",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    stdout = proc.stdout + proc.stderr  # Katib's wrapper captures both streams

    manifest = yaml.safe_load(sweep.manifest_path(sweep.NAME).read_text())
    (pattern,) = manifest["spec"]["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]
    objective = manifest["spec"]["objective"]
    assert katib_stdout_values(pattern, stdout, objective["objectiveMetricName"]) == [h["val/hmean"] for h in history]
    for name in objective["additionalMetricNames"]:
        assert katib_stdout_values(pattern, stdout, name) == [h[name] for h in history], name
    # each observation carries its epoch's time (metrics.jsonl's), so "first N" and "latest" follow the epochs
    stamps = [katib_timestamp(line) for line in stdout.splitlines() if "val/hmean" in line]
    assert stamps == [h["time"] for h in history] and stamps == sorted(set(stamps))
    # Katib's default filter would never see the objective: trials would end without a metric
    assert katib_stdout_values(KATIB_DEFAULT_FILTER, stdout, "val/hmean") == []
    assert not any(
        m[1].strip() == "val/hmean"
        for line in stdout.splitlines()
        for m in go_find_all_string_submatch(KATIB_DEFAULT_FILTER, line)
    )


# ---- early stopping: what ValidateEarlyStoppingSettings gets -------------------------------------------


def test_rendered_early_stopping_settings_pass_our_services_validation():
    """Katib's webhook checks only that the name is in katib-config (validator.go:223-238 at v0.19.0; the
    registration: tests/test_kustomize.py). The suggestion controller then sends this block, and only it, to
    the service's ValidateEarlyStoppingSettings (suggestion_controller.go:270-288, suggestionclient.go:266-268):
    here the same call to the real service on loopback, for each checked-in Experiment, and one refusal."""
    import grpc

    from earlystop.api import pb2, services
    from earlystop.service import MedianStopFloor, build_server

    def request(es: dict):
        return pb2.ValidateEarlyStoppingSettingsRequest(
            early_stopping=pb2.EarlyStoppingSpec(
                algorithm_name=es["algorithmName"],
                algorithm_settings=[
                    pb2.EarlyStoppingSetting(name=s["name"], value=s["value"]) for s in es["algorithmSettings"]
                ],
            )
        )

    server, port = build_server("127.0.0.1:0", MedianStopFloor())
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = services.EarlyStoppingStub(channel)
            for stem, manifest in MANIFESTS.items():
                es = manifest["spec"]["earlyStopping"]
                assert es["algorithmName"] == "medianstop-floor", stem
                stub.ValidateEarlyStoppingSettings(request(es), timeout=10)  # raises if refused
            bad = sweep.early_stopping(floor=0.9653)
            bad["algorithmSettings"][-1]["value"] = "96.53 %"
            with pytest.raises(grpc.RpcError) as refused:
                stub.ValidateEarlyStoppingSettings(request(bad), timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "floor" in refused.value.details()
    finally:
        server.stop(None).wait()


def test_render_options_choose_the_algorithm_and_its_settings(tmp_path):
    from model.cli import main

    assert (
        main(
            [
                "sweep",
                "render",
                "--out-dir",
                str(tmp_path / "a"),
                "--floor",
                "0.97",
                "--start-step",
                "8",
                "--min-trials-required",
                "4",
            ]
        )
        == 0
    )
    es = yaml.safe_load((tmp_path / "a" / "receiptflow-run8-sweep.yaml").read_text())["spec"]["earlyStopping"]
    assert es == {
        "algorithmName": "medianstop-floor",
        "algorithmSettings": [
            {"name": "min_trials_required", "value": "4"},
            {"name": "start_step", "value": "8"},
            {"name": "floor", "value": "0.97"},
        ],
    }
    assert main(["sweep", "render", "--out-dir", str(tmp_path / "b"), "--early-stopping", "medianstop"]) == 0
    for path in (tmp_path / "b").glob("*.yaml"):  # Katib's own: its two settings, no floor
        assert yaml.safe_load(path.read_text())["spec"]["earlyStopping"] == {
            "algorithmName": "medianstop",
            "algorithmSettings": [{"name": "min_trials_required", "value": "3"}, {"name": "start_step", "value": "10"}],
        }
    assert (
        main(["sweep", "render", "--out-dir", str(tmp_path / "c"), "--early-stopping", "medianstop", "--floor", "0.9"])
        == 2
    )
    assert main(["sweep", "render", "--out-dir", str(tmp_path / "c"), "--floor", "nan"]) == 2
    assert main(["sweep", "render", "--out-dir", str(tmp_path / "c"), "--start-step", "0"]) == 2
    assert not (tmp_path / "c").exists()  # refused before writing anything

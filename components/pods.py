"""Pod pieces that the Katib trial templates (pipelines/sweep.py) and the job launcher
(components/run_training_job.py, at run time inside a KFP task) both build: security contexts, the
MinIO Secret's environment, a GPU container with /dev/shm in memory, a self-contained pod template.

Here, not in pipelines/: inside a running KFP task kfp's runtime-only `kfp.dsl` cannot import the
pipeline modules (no `dsl.pipeline`, no `PipelineTask`), and the launcher builds its PyTorchJob there."""

from __future__ import annotations

USER_ID = 1000
GPU = "nvidia.com/gpu"
SHM = "16Gi"  # memory-backed /dev/shm for the DataLoader workers of one training pod
SCRATCH = "/tmp"
MINIO_SECRET_KEYS = {  # Secret data key -> environment variable that model.storage reads
    "MINIO_ENDPOINT": "MINIO_ENDPOINT",
    "MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY": "MINIO_SECRET_KEY",
    "MINIO_SECURE": "MINIO_SECURE",
}


def pod_security() -> dict:
    """Pod level, so a sidecar Katib injects shares training's uid/gid (pipelines/sweep.py, _pod_security)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "fsGroup": USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def security() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def env(minio_secret: str) -> list[dict]:
    """The MinIO Secret's keys as model.storage's variables (never values), HOME on scratch, unbuffered output."""
    secret = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": minio_secret, "key": key}}}
        for key, var in MINIO_SECRET_KEYS.items()
    ]
    return [*secret, {"name": "HOME", "value": SCRATCH}, {"name": "PYTHONUNBUFFERED", "value": "1"}]


def container(
    name: str,
    image: str,
    command: list[str],
    env_vars: list[dict],
    gpus: int,
    mounts: list[dict],
    cpu: str,
    memory: str,
) -> dict:
    return {
        "name": name,
        "image": image,
        "command": command,
        "env": env_vars,
        "resources": {
            "requests": {"cpu": cpu, "memory": memory, GPU: gpus},
            "limits": {"cpu": cpu, "memory": memory, GPU: gpus},
        },
        "securityContext": security(),
        "volumeMounts": [*mounts, {"name": "dshm", "mountPath": "/dev/shm"}],
    }


def pod_template(
    *, container_name: str, image: str, command: list[str], env_vars: list[dict], gpus: int, cpu: str, memory: str
) -> dict:
    """A pod template whose one container runs `command` (which pulls its own inputs under /tmp):
    non-root, /dev/shm in memory, scratch at /tmp, no Istio sidecar (a job's pods talk to each other
    directly); components/run_training_job.py's PyTorchJob replicas."""
    pod = {
        "restartPolicy": "Never",
        "securityContext": pod_security(),
        "containers": [
            container(
                container_name, image, command, env_vars, gpus, [{"name": "scratch", "mountPath": SCRATCH}], cpu, memory
            )
        ],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM}},
            {"name": "scratch", "emptyDir": {}},
        ],
    }
    return {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": pod}

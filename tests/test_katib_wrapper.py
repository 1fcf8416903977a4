"""Katib's early stop, played for real on the rendered trial pods.

Katib's pod webhook wraps the primary container's command in `sh -c` (katib v0.19.0
pkg/webhook/v1beta1/pod/utils.go:155-221); the kubelet then expands `$(VAR)` and `$$` in it
(kubernetes third_party/forked/golang/expansion/expand.go). To stop a trial, the injected metrics
collector writes `early-stopped` into /var/log/katib/<pid of sh>.pid and SIGTERMs sh's only child
(cmd/metricscollector/v1beta1/file-metricscollector/main.go:264-296); the wrapper must then write
`completed` into that file, or the collector waits forever (pkg/metricscollector/v1beta1/common/
pns.go:136-154, no timeout by default: common/const.go:30). Here a real tiny training runs inside that
exact command as the uid the pod spec gives the training container, and this test plays the collector
as the uid the pod spec gives the injected sidecar (no securityContext of its own:
pkg/webhook/v1beta1/pod/inject_webhook.go:236-250; its image has no USER, so root unless the pod says
otherwise). Switching users needs root and util-linux's setpriv (CI runs as root); elsewhere those
tests skip. The training side keeps one capability, CAP_DAC_READ_SEARCH, only so that uid 1000 can
read a root-only Python install (e.g. /root/.pyenv); it grants reading and directory search, never
writing (capabilities(7)), so whether `echo completed > <mark file>` may write is decided by uids
and file modes exactly as in the pod.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from model.metric_lines import KATIB_METRICS_FILTER
from pipelines import sweep

REPO = Path(__file__).resolve().parents[1]
METRICS_FILE = "/var/log/katib/metrics.log"  # common.DefaultFilePath: the StdOut collector's file (utils.go:128-130)
IMAGE_UID = {"receiptflow": (1000, 1000), "collector": (0, 0)}  # images/Dockerfile `USER 1000:1000`; Katib's: none
EARLY_STOPPED, COMPLETED = "early-stopped", "completed"  # pkg/metricscollector/v1beta1/common/const.go:33-37


# ---- what Katib and the kubelet make of the container's command -----------------------------------


def katib_wrap(
    command: list[str], metrics_file: str = METRICS_FILE, early_stopping: bool = True
) -> tuple[list[str], list[str]]:
    """(command, args) that wrapWorkerContainer sets on the primary container, StdOut collector
    (utils.go:155-199, getEarlyStoppingCommand 201-215, getMarkCompletedCommand 217-221). `metrics_file`
    is a parameter of wrapWorkerContainer too; tests point it at a temporary folder."""
    shell, args = ["sh", "-c"], list(command)
    if args[0] in ("sh", "bash") and args[1] == "-c":
        shell, args = args[:2], args[2:]
    args.append(f"1>{metrics_file} 2>&1")
    folder = os.path.dirname(metrics_file)
    if early_stopping:
        args += [
            "||",
            f"if test -f {os.path.join(folder, '$$$$.pid')} && [ $(head -n 1 {os.path.join(folder, '$$.pid')}) "
            f"= {EARLY_STOPPED} ]; then echo Training Container was Early Stopped; "
            "else echo Training Container was Failed; exit 1; fi",
        ]
    args += ["&&", f"echo {COMPLETED} > {os.path.join(folder, '$$$$.pid')}"]
    return shell, [" ".join(args)]


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command and args: `$$` -> `$`; `$(NAME)` -> the variable, or left
    as it is when there is none (so `$(head -n 1 .../$$.pid)` reaches sh unchanged); any other `$x` stays."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def test_the_wrapped_command_is_katibs_format():
    shell, (script,) = katib_wrap(["receiptflow", "train", "preset=x"])
    assert shell == ["sh", "-c"]
    assert kubelet_expand(script, {"HOME": "/tmp"}) == (
        "receiptflow train preset=x 1>/var/log/katib/metrics.log 2>&1 || "
        "if test -f /var/log/katib/$$.pid && [ $(head -n 1 /var/log/katib/$$.pid) = early-stopped ]; "
        "then echo Training Container was Early Stopped; else echo Training Container was Failed; exit 1; fi "
        "&& echo completed > /var/log/katib/$$.pid"
    )
    assert kubelet_expand("$(HOME)/x $$(HOME) $x", {"HOME": "/tmp"}) == "/tmp/x $(HOME) $x"


# ---- who runs as whom in a rendered trial pod --------------------------------------------------------


def trial_pod(manifest: dict) -> dict:
    spec = manifest["spec"]["trialTemplate"]["trialSpec"]
    if (
        spec["kind"] == "TrainJob"
    ):  # the pod comes from the runtime (manifests/trainer/), the container from the trainer
        from tests.test_sweep_manifests import trainjob_pod

        return trainjob_pod(spec)["spec"]
    template = (
        spec["spec"]["template"] if spec["kind"] == "Job" else spec["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    )
    return template["spec"]


def run_as(pod: dict, container: dict, image: str) -> tuple[int, int]:
    """The uid/gid a container runs as: its securityContext, else the pod's, else the image's USER."""
    uid, gid = IMAGE_UID[image]
    for sc in (pod.get("securityContext") or {}, container.get("securityContext") or {}):
        uid, gid = sc.get("runAsUser", uid), sc.get("runAsGroup", gid)
    return uid, gid


def identities(manifest: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """(training, collector): the primary container's ids and those of the sidecar Katib injects
    (a container with no securityContext)."""
    pod = trial_pod(manifest)
    name = manifest["spec"]["trialTemplate"]["primaryContainerName"]
    (primary,) = [c for c in pod["containers"] if c["name"] == name]
    return run_as(pod, primary, "receiptflow"), run_as(pod, {"name": "metrics-logger-and-collector"}, "collector")


def container_level_only(manifest: dict) -> dict:
    """The trial pods as they were before this fix: uid/gid on the containers, none on the pod."""
    old = copy.deepcopy(manifest)
    trial_pod(old).pop("securityContext", None)
    return old


def test_the_sidecar_runs_as_the_training_uid_only_with_a_pod_level_security_context():
    for manifest in yaml.safe_load_all(
        "\n---\n".join(p.read_text() for p in sorted(sweep.MANIFEST_DIR.rglob("receiptflow-*.yaml")))
    ):
        training, collector = identities(manifest)
        assert training == collector == (1000, 1000), manifest["metadata"]["name"]
        pod = trial_pod(manifest)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 1000
        if manifest["spec"]["trialTemplate"]["trialSpec"]["kind"] != "TrainJob":  # its pod is the runtime's file
            assert identities(container_level_only(manifest)) == ((1000, 1000), (0, 0))


# ---- the early stop, played --------------------------------------------------------------------------


def _demote(uid: int, gid: int):
    def become():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        os.umask(0o022)

    return become


def _as_collector(uid: int, gid: int, mark: Path, child: int) -> int:
    """What main.go:268-296 does, as `uid`: os.Create the mark file (0666 &^ umask), write
    `early-stopped`, SIGTERM the one child. 0 when it could."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked collector
        code = 1
        try:
            _demote(uid, gid)()
            fd = os.open(mark, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
            os.write(fd, EARLY_STOPPED.encode())
            os.close(fd)
            os.kill(child, signal.SIGTERM)
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def collector_verdict(mark: Path) -> str:
    """pns.go:136-154 once the main process is gone: "completed" ends the sidecar; "early-stopped" makes
    it `continue` polling forever; anything else is an error."""
    text = mark.read_text().strip() if mark.exists() else ""
    return {COMPLETED: "ends", EARLY_STOPPED: "waits forever"}.get(text, f"error ({text!r})")


@pytest.fixture(scope="module")
def world() -> Path:
    """A folder every uid may read (pytest's tmp_path is root-only), with a tiny synthetic dataset."""
    from model.data.synth import write_synthetic_dataset

    base = Path(tempfile.mkdtemp(prefix="katib-wrapper-", dir="/tmp"))
    base.chmod(0o755)
    write_synthetic_dataset(
        base / "data",
        8,
        seed=5,
        splits=(0.5, 0.25, 0.25),
        workers=1,
        width=(300, 340),
        height=(420, 480),
        progress=False,
    )
    yield base
    shutil.rmtree(base, ignore_errors=True)


def early_stop(manifest: dict, world: Path, tag: str) -> dict:
    """Run the trial's wrapped command on a tiny training as the pod's training uid, stop it after its
    first metric line as the pod's collector uid (start_step 1), and report what happened."""
    (t_uid, t_gid), (c_uid, c_gid) = identities(manifest)
    scratch = world / tag
    katib, out, home = scratch / "katib", scratch / "run", scratch / "home"
    for d in (scratch, katib, out, home):
        d.mkdir()
    scratch.chmod(0o755)
    katib.chmod(0o777)  # an emptyDir: kubelet creates it 0777
    for d in (out, home):
        os.chown(d, t_uid, t_gid)
    tiny = [
        "preset=cpu_tiny",
        f"dataset.root={world / 'data'}",
        f"output_dir={out}",
        "dataset.image_size=128",
        "dataset.batch_size=2",
        "dataset.num_workers=0",
        "trainer.max_epochs=40",
        "models.scheduler.T_max=40",
        "trainer.log_every_n_steps=1",
        "seed=3",
    ]
    name = manifest["spec"]["trialTemplate"]["primaryContainerName"]
    (primary,) = [c for c in trial_pod(manifest)["containers"] if c["name"] == name]
    launcher = primary["command"][: primary["command"].index("train") + 1]  # the manifest's, with a tiny config
    if "--nproc_per_node" in launcher:  # one CPU process in place of one per GPU
        launcher[launcher.index("--nproc_per_node") + 1] = "1"
    shell, (script,) = katib_wrap(launcher + tiny, str(katib / "metrics.log"))
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "NUMBA_CACHE_DIR": str(home / "numba"),
    }
    become = (
        []
        if t_uid == 0
        else [
            SETPRIV,
            f"--reuid={t_uid}",
            f"--regid={t_gid}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
        ]
    )
    proc = subprocess.Popen(
        [*become, *shell, kubelet_expand(script, env)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=0o022,
    )  # not preexec_fn: unsafe beside threads (xdist's)
    try:
        deadline = time.monotonic() + 60
        log = katib / "metrics.log"
        while not (
            log.exists() and any(m.group(1) == "val/hmean" for m in re.finditer(KATIB_METRICS_FILTER, log.read_text()))
        ):
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.poll(),
                log.read_text() if log.exists() else "",
                proc.stderr.read()[-3000:] if proc.poll() is not None else "",
            )
            time.sleep(0.1)
        kids = _children(proc.pid)
        assert len(kids) == 1, kids  # main.go:287-290: the collector supports exactly one child
        killed = _as_collector(c_uid, c_gid, katib / f"{proc.pid}.pid", kids[0])
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {
        "killed": killed,
        "exit": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "log": (katib / "metrics.log").read_text(),
        "verdict": collector_verdict(katib / f"{proc.pid}.pid"),
    }


SETPRIV = shutil.which("setpriv")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not SETPRIV, reason="playing two uids needs root and setpriv (CI runs as root)"
)


@pytest.mark.slow
@needs_root
@pytest.mark.parametrize("stem", ["receiptflow-run8-sweep", "receiptflow-run8-sweep-ddp"])
def test_an_early_stopped_trial_ends_as_early_stopped(stem, world):
    manifest = yaml.safe_load(sweep.manifest_path(stem).read_text())
    r = early_stop(manifest, world, stem)
    assert r["killed"] == 0
    assert "SIGTERM: saved" in r["log"]  # training saved its checkpoint and exited non-zero
    assert r["stdout"].strip() == "Training Container was Early Stopped", r
    assert r["exit"] == 0 and r["verdict"] == "ends", r


@pytest.mark.slow
@needs_root
def test_with_the_uid_on_the_containers_only_the_pod_never_ends(world):
    manifest = container_level_only(yaml.safe_load(sweep.manifest_path(sweep.NAME).read_text()))
    r = early_stop(manifest, world, "container-level")
    assert r["killed"] == 0 and "Training Container was Early Stopped" in r["stdout"]
    assert "Permission denied" in r["stderr"] and r["exit"] != 0  # `echo completed > <root's file>` fails
    assert r["verdict"] == "waits forever", r

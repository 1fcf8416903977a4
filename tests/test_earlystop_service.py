"""The medianstop-floor gRPC service (earlystop/service.py) on loopback, as Katib v0.19.0 calls it.

Its DB manager is a real gRPC stand-in (tests/katib_dbmanager_standin.py) holding observation logs
made the way Katib's StdOut collector makes them: training's metric lines (model.metric_lines.metric_lines,
or a real cpu_tiny run's output) parsed with our filter. The Kubernetes API of SetTrialStatus is a
real HTTP stand-in (tests/kube_standin.py) reached by the real kubernetes client.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest

from earlystop.api import pb2, services
from earlystop.rule import best_so_far
from earlystop.service import MedianStopFloor, build_server
from model.metric_lines import KATIB_METRICS_FILTER, metric_lines, utc_timestamp
from tests import kube_standin
from tests.katib_dbmanager_standin import collect_observation_log, collector_stops, dbmanager

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
HMEAN, LOSS = "val/hmean", "train/loss"
METRICS = [HMEAN, LOSS]  # what our Experiments collect, objective first
T0 = datetime(2026, 11, 29, 4, 0, tzinfo=timezone.utc)
SUCCEEDED, RUNNING, EARLY = (
    pb2.TrialStatus.TrialConditionType.SUCCEEDED,
    pb2.TrialStatus.TrialConditionType.RUNNING,
    pb2.TrialStatus.TrialConditionType.EARLYSTOPPED,
)


def training_output(hmeans: list[float], losses: list[float] | None = None, minutes: int = 0) -> str:
    """What model/train.py prints for these epochs (its own metric_lines), one epoch a minute."""
    losses = losses or [1.0 / (i + 1) for i in range(len(hmeans))]
    out = []
    for i, (h, loss) in enumerate(zip(hmeans, losses)):
        t = utc_timestamp(T0 + timedelta(minutes=minutes + i))
        out.append(f"epoch {i + 1} step 4/4 loss={loss:.4f}")  # progress lines carry the names too
        out += metric_lines(
            {"time": t, "epoch": i + 1, LOSS: loss, "val/precision": h, "val/recall": h, HMEAN: h, "lr": 1e-3}
        )
    return "\n".join(out) + "\n"


def report(db, trial: str, output: str) -> None:
    """The collector's report when the trial ends: its observation log, parsed as Katib parses it."""
    db.report(trial, collect_observation_log(output, METRICS, [KATIB_METRICS_FILTER]))


def experiment(settings: dict, goal=pb2.MAXIMIZE, metric=HMEAN, algorithm="medianstop-floor") -> pb2.Experiment:
    return pb2.Experiment(
        name="receiptflow-run8-sweep",
        spec=pb2.ExperimentSpec(
            objective=pb2.ObjectiveSpec(type=goal, objective_metric_name=metric, additional_metric_names=METRICS[1:]),
            early_stopping=pb2.EarlyStoppingSpec(
                algorithm_name=algorithm,
                algorithm_settings=[pb2.EarlyStoppingSetting(name=k, value=v) for k, v in settings.items()],
            ),
        ),
    )


def rules_request(address: str, trials: dict[str, int], settings: dict, **kw) -> pb2.GetEarlyStoppingRulesRequest:
    return pb2.GetEarlyStoppingRulesRequest(
        experiment=experiment(settings, **kw),
        db_manager_address=address,
        trials=[pb2.Trial(name=n, status=pb2.TrialStatus(condition=c)) for n, c in trials.items()],
    )


@pytest.fixture
def stub():
    server, port = build_server("127.0.0.1:0", MedianStopFloor(db_timeout_s=5))
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield services.EarlyStoppingStub(channel)
    server.stop(None).wait()


@pytest.fixture
def db():
    with dbmanager() as (standin, address):
        standin.address = address
        yield standin


def test_the_proto_is_katibs_v0_19_0_api_unchanged():
    """PROVENANCE.md's sha256 is `git show v0.19.0:pkg/apis/manager/v1beta1/api.proto | sha256sum`."""
    proto = (REPO / "earlystop" / "proto" / "katib_api.proto").read_bytes()
    recorded = re.search(
        r"sha256 `([0-9a-f]{64})`", (REPO / "earlystop" / "proto" / "PROVENANCE.md").read_text()
    ).group(1)
    assert hashlib.sha256(proto).hexdigest() == recorded
    shared = REPO.parent / "shared" / "kubeflow" / "katib-api-v0.19.0.proto"
    if shared.exists():
        assert shared.read_bytes() == proto


# ------------------------------------------------------------------------------------ settings


def test_good_settings_are_accepted(stub):
    spec = experiment({"min_trials_required": "3", "start_step": "10", "floor": "0.9653"}).spec.early_stopping
    assert stub.ValidateEarlyStoppingSettings(pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=spec)) is not None


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"min_trials_required": "0"}, "min_trials_required must be an integer >= 1"),
        ({"min_trials_required": "three"}, "min_trials_required must be an integer >= 1"),
        ({"start_step": "0"}, "start_step must be an integer >= 1"),
        ({"start_step": "2.5"}, "start_step must be an integer >= 1"),
        ({"floor": "96%"}, "floor must be a number"),
        ({"floor": "NaN"}, "floor must be a finite number"),
        ({"flor": "0.96"}, "unknown setting 'flor' for algorithm medianstop-floor"),
    ],
)
def test_each_bad_setting_is_refused_by_name(stub, settings, named):
    spec = experiment(settings).spec.early_stopping
    with pytest.raises(grpc.RpcError) as e:
        stub.ValidateEarlyStoppingSettings(pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=spec))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in e.value.details()


def test_another_algorithm_is_refused(stub):
    spec = experiment({}, algorithm="medianstop").spec.early_stopping
    with pytest.raises(grpc.RpcError) as e:
        stub.ValidateEarlyStoppingSettings(pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=spec))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'medianstop'" in e.value.details()


def test_bad_settings_and_db_address_are_refused_when_rules_are_asked_too(stub, db):
    with pytest.raises(grpc.RpcError) as e:
        stub.GetEarlyStoppingRules(rules_request(db.address, {}, {"start_step": "-1"}))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "start_step" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.GetEarlyStoppingRules(rules_request("katib-db-manager.kubeflow", {}, {}))
    assert (
        e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "db_manager_address must be HOST:PORT" in e.value.details()
    )


# --------------------------------------------------------------------------------------- rules

# best of the first 3 val/hmean reports: a 0.90, b 0.95 (its 0.99 comes at epoch 4), c 0.80, d 0.97
CURVES = {
    "a": [0.5, 0.9, 0.85, 0.91],
    "b": [0.6, 0.95, 0.94, 0.99],
    "c": [0.7, 0.8, 0.75],
    "d": [0.97, 0.96, 0.97, 0.98],
    "e": [0.99, 0.99],
}  # e reached only 2 reports: not comparable at start_step 3


def fill(db, curves=CURVES):
    for i, (name, curve) in enumerate(curves.items()):
        report(db, name, training_output(curve, minutes=10 * i))


def test_maximize_rule_is_the_true_median_of_the_best_at_start_step(stub, db):
    fill(db)
    # d is still running: its log is in the DB (a push collector), so it counts; e has too few reports
    trials = {"a": SUCCEEDED, "b": SUCCEEDED, "c": EARLY, "d": RUNNING, "e": RUNNING, "new": RUNNING}
    reply = stub.GetEarlyStoppingRules(
        rules_request(db.address, trials, {"min_trials_required": "3", "start_step": "3"})
    )
    [r] = reply.early_stopping_rules
    # median of 0.80, 0.90, 0.95, 0.97 = 0.925; the mean would be 0.905, Katib's succeeded-only mean (a, b) 0.925 too
    assert (r.name, r.comparison, r.start_step) == (HMEAN, pb2.LESS, 3)
    assert float(r.value) == pytest.approx(0.925)
    assert sorted(db.requests) == sorted((t, HMEAN) for t in trials)  # every trial read, the objective's log only


def test_the_floor_caps_the_bar_and_a_trial_at_or_above_it_is_never_stopped(stub, db):
    fill(db)
    trials = dict.fromkeys("abcd", SUCCEEDED)
    [r] = stub.GetEarlyStoppingRules(
        rules_request(db.address, trials, {"start_step": "3", "floor": "0.91"})
    ).early_stopping_rules
    assert float(r.value) == 0.91 and r.comparison == pb2.LESS  # min(median 0.925, floor 0.91)
    # the rule as Katib's collector applies it to new trials' metric lines
    assert (
        collector_stops(training_output([0.5, 0.91, 0.6, 0.2]), [r], HMEAN, "maximize", [KATIB_METRICS_FILTER]) is None
    )
    assert collector_stops(training_output([0.5, 0.92, 0.6]), [r], HMEAN, "maximize", [KATIB_METRICS_FILTER]) is None
    assert (
        collector_stops(training_output([0.5, 0.909, 0.6, 0.99]), [r], HMEAN, "maximize", [KATIB_METRICS_FILTER]) == 3
    )
    # the best at step 3 counts, not the latest: 0.95 at step 3 after 0.909
    assert collector_stops(training_output([0.5, 0.95, 0.6]), [r], HMEAN, "maximize", [KATIB_METRICS_FILTER]) is None
    # without the floor, the 0.92 trial (below the median 0.925) is stopped
    [plain] = stub.GetEarlyStoppingRules(rules_request(db.address, trials, {"start_step": "3"})).early_stopping_rules
    assert collector_stops(training_output([0.5, 0.92, 0.6]), [plain], HMEAN, "maximize", [KATIB_METRICS_FILTER]) == 3


def test_minimize_rule_mirrors(stub, db):
    # train/loss: best (lowest) of the first 2 reports a 0.4, b 0.3, c 0.6
    for i, (name, losses) in enumerate({"a": [0.5, 0.4, 0.1], "b": [0.3, 0.35], "c": [0.9, 0.6, 0.2]}.items()):
        report(db, name, training_output([0.5] * len(losses), losses, minutes=10 * i))
    trials = dict.fromkeys("abc", SUCCEEDED)
    [r] = stub.GetEarlyStoppingRules(
        rules_request(db.address, trials, {"start_step": "2"}, goal=pb2.MINIMIZE, metric=LOSS)
    ).early_stopping_rules
    assert (r.name, r.comparison, float(r.value)) == (LOSS, pb2.GREATER, 0.4)
    [r] = stub.GetEarlyStoppingRules(
        rules_request(db.address, trials, {"start_step": "2", "floor": "0.45"}, goal=pb2.MINIMIZE, metric=LOSS)
    ).early_stopping_rules
    assert float(r.value) == 0.45  # max(median, floor): a loss at or below 0.45 is never stopped
    assert (
        collector_stops(training_output([0.5] * 3, [0.7, 0.45, 0.1]), [r], LOSS, "minimize", [KATIB_METRICS_FILTER])
        is None
    )
    assert (
        collector_stops(training_output([0.5] * 3, [0.7, 0.46, 0.1]), [r], LOSS, "minimize", [KATIB_METRICS_FILTER])
        == 2
    )


def test_too_few_comparable_trials_give_no_rule(stub, db):
    fill(db)
    trials = {"a": SUCCEEDED, "c": SUCCEEDED, "e": SUCCEEDED, "nolog": RUNNING}  # e: 2 reports, nolog: none
    reply = stub.GetEarlyStoppingRules(
        rules_request(db.address, trials, {"min_trials_required": "3", "start_step": "3"})
    )
    assert list(reply.early_stopping_rules) == []
    report(db, "u", "no metric line at all\n")
    assert db.logs["u"] == [("0001-01-01T00:00:00Z", HMEAN, "unavailable")]  # Katib's record of a silent trial
    reply = stub.GetEarlyStoppingRules(
        rules_request(db.address, {**trials, "u": SUCCEEDED}, {"min_trials_required": "3", "start_step": "1"})
    )
    assert float(reply.early_stopping_rules[0].value) == pytest.approx(0.7)  # a, c, e at step 1; u is not a number


def test_a_restarted_service_gives_identical_rules_and_each_call_reads_the_db_afresh(db):
    fill(db)
    request = rules_request(db.address, dict.fromkeys("abcde", SUCCEEDED), {"start_step": "3", "floor": "0.93"})
    replies = []
    for _ in range(2):  # two service processes' worth: a new server and servicer each time
        server, port = build_server("127.0.0.1:0")
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            replies.append(services.EarlyStoppingStub(channel).GetEarlyStoppingRules(request))
        server.stop(None).wait()
    assert replies[0].SerializeToString() == replies[1].SerializeToString()
    assert float(replies[0].early_stopping_rules[0].value) == pytest.approx(0.925)
    # stateless: a trial reported since changes the next answer (Katib's medianstop caches its first read)
    report(db, "f", training_output([0.1, 0.1, 0.1], minutes=100))
    server, port = build_server("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = services.EarlyStoppingStub(channel)
        again = stub.GetEarlyStoppingRules(
            rules_request(db.address, dict.fromkeys("abcdef", SUCCEEDED), {"start_step": "3"})
        )
    server.stop(None).wait()
    assert float(again.early_stopping_rules[0].value) == pytest.approx(0.90)  # median of 0.1, 0.8, 0.9, 0.95, 0.97


def test_an_unreachable_db_manager_is_an_error_naming_it(stub, db):
    fill(db)
    db.down = True
    with pytest.raises(grpc.RpcError) as e:
        stub.GetEarlyStoppingRules(rules_request(db.address, {"a": SUCCEEDED}, {}))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"GetObservationLog of trial a from the DB manager at {db.address}" in e.value.details()


# ------------------------------------------------------------------------------ SetTrialStatus


class TrialApi(kube_standin.ThreadingHTTPServer):
    """GET .../namespaces/NS/trials/NAME and PATCH .../trials/NAME/status, as the API server answers
    them for Katib's Trial (status subresource). `patches` records (path, content type, body)."""

    daemon_threads = True

    def __init__(self, trials: list[dict]):
        super().__init__(("127.0.0.1", 0), _TrialHandler)
        self.trials = {(t["metadata"]["namespace"], t["metadata"]["name"]): t for t in trials}
        self.patches: list[tuple[str, str, dict]] = []


class _TrialHandler(kube_standin.Handler):
    server: TrialApi

    def _trial(self):
        parts = self.path.split("?")[0].split(
            "/"
        )  # '', apis, kubeflow.org, v1beta1, namespaces, NS, trials, NAME[, status]
        assert parts[1:5] == ["apis", "kubeflow.org", "v1beta1", "namespaces"] and parts[6] == "trials", self.path
        key = (parts[5], parts[7])
        if key not in self.server.trials:
            self._status(404, "NotFound", f'trials.kubeflow.org "{parts[7]}" not found')
            return None, parts
        return key, parts

    def do_GET(self):
        key, _ = self._trial()
        if key:
            self._send(200, self.server.trials[key])

    def do_PATCH(self):
        key, parts = self._trial()
        if not key:
            return
        assert parts[8:] == ["status"], self.path
        body = self._body()
        self.server.patches.append((self.path, self.headers["Content-Type"], body))
        self.server.trials[key] = {**self.server.trials[key], "status": body["status"]}  # merge patch of .status
        self._send(200, self.server.trials[key])


def test_set_trial_status_marks_the_trial_early_stopped_as_katib_does(stub, tmp_path, monkeypatch):
    trials = json.loads((FIXTURES / "katib_trials_failed_running.json").read_text())
    running = next(t for t in trials if t["metadata"]["name"].endswith("d4running"))
    namespace, name = running["metadata"]["namespace"], running["metadata"]["name"]
    before = [c["type"] for c in running["status"]["conditions"]]
    with kube_standin.serving(TrialApi(trials), tmp_path, monkeypatch, namespace=namespace) as api:
        stub.SetTrialStatus(pb2.SetTrialStatusRequest(trial_name=name))
        [(path, content_type, body)] = api.patches
        assert path == f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/trials/{name}/status"
        assert content_type == "application/merge-patch+json"
        conditions = body["status"]["conditions"]
        assert [c["type"] for c in conditions] == before + ["EarlyStopped"]  # appended, the others kept
        stopped = conditions[-1]
        assert {k: stopped[k] for k in ("status", "reason", "message")} == {
            "status": "True",
            "reason": "TrialEarlyStopped",
            "message": "Trial is early stopped",
        }
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stopped["lastTransitionTime"])
        assert stopped["lastUpdateTime"] == stopped["lastTransitionTime"]
        assert body["spec"] == running["spec"]  # the whole object goes back, as Katib's service sends it

        with pytest.raises(grpc.RpcError) as e:  # a trial the API server does not know
            stub.SetTrialStatus(pb2.SetTrialStatusRequest(trial_name="gone"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert f"marking Trial {namespace}/gone EarlyStopped: Kubernetes API answered 404" in e.value.details()


# ---------------------------------------------------------------------------------------- CLI


def test_cli_serves_logs_one_line_per_call_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "model.cli", "earlystop", "serve", "--port", "0", "--host", "127.0.0.1"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stderr.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", first).group(1))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = services.EarlyStoppingStub(channel)
            spec = experiment({"floor": "0.9653"}).spec.early_stopping
            stub.ValidateEarlyStoppingSettings(pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=spec))
            with pytest.raises(grpc.RpcError):
                stub.ValidateEarlyStoppingSettings(
                    pb2.ValidateEarlyStoppingSettingsRequest(
                        early_stopping=experiment({"floor": "x"}).spec.early_stopping
                    )
                )
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert proc.returncode == 0
    calls = [line for line in rest.splitlines() if "ValidateEarlyStoppingSettings" in line]
    assert len(calls) == 2 and "ok" in calls[0] and "refused: floor must be a number" in calls[1]
    assert "SIGTERM: stopping" in rest and rest.rstrip().endswith("stopped")


# ------------------------------------------------------------------- on real training output


@pytest.mark.slow
def test_the_rule_as_katibs_collector_applies_it_to_a_real_cpu_tiny_training(stub, db, tmp_path):
    """A real cpu_tiny run (4 epochs): its printed lines become its observation log and are what a
    collector watches. Objective train/loss (minimize): on 8 synthetic receipts val/hmean stays 0."""
    from model.data.synth import write_synthetic_dataset

    data = tmp_path / "synth"
    write_synthetic_dataset(
        data, 8, seed=5, splits=(0.5, 0.25, 0.25), workers=1, width=(300, 340), height=(420, 480), progress=False
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.cli",
            "train",
            "preset=cpu_tiny",
            f"dataset.root={data}",
            f"output_dir={tmp_path / 'run'}",
            "dataset.image_size=128",
            "dataset.batch_size=2",
            "dataset.num_workers=0",
            "trainer.max_epochs=4",
            "models.scheduler.T_max=4",
            "seed=3",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr  # Katib's wrapper captures both
    losses = [json.loads(line)[LOSS] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4
    best = best_so_far(losses, "minimize", 4)

    report(db, "real", output)
    assert [
        float(v) for _, n, v in sorted(db.logs["real"]) if n == LOSS
    ] == losses  # the collector reads the exact values

    def rule_for(others: list[float], floor: str | None = None):
        for i, v in enumerate(others):
            report(db, f"o{i}", training_output([0.0] * 4, [v + 1, v + 0.5, v, v + 0.2], minutes=60))
        settings = {"min_trials_required": "3", "start_step": "4", **({"floor": floor} if floor else {})}
        trials = {"real": SUCCEEDED, **{f"o{i}": SUCCEEDED for i in range(len(others))}}
        [r] = stub.GetEarlyStoppingRules(
            rules_request(db.address, trials, settings, goal=pb2.MINIMIZE, metric=LOSS)
        ).early_stopping_rules
        db.logs = {"real": db.logs["real"]}
        return r

    stops = lambda r: collector_stops(output, [r], LOSS, "minimize", [KATIB_METRICS_FILTER])  # noqa: E731
    # the others did worse at step 4: the median is their better one (the run is the best), not stopped
    r = rule_for([best + 1, best + 2])
    assert float(r.value) == best + 1 and stops(r) is None
    # the others are better: the median is below the run's best, it is stopped at its 4th report, not before
    r = rule_for([best - 0.2, best - 0.1])
    assert float(r.value) == pytest.approx(best - 0.1) and stops(r) == 4
    # the same, with a floor the run reaches: never stopped
    r = rule_for([best - 0.2, best - 0.1], floor=repr(best))
    assert float(r.value) == best and stops(r) is None
    # the collector compares the best so far, not the latest report (when the last epoch was worse)
    if losses[3] > min(losses[:3]):
        between = pb2.EarlyStoppingRule(
            name=LOSS, value=repr((best + losses[3]) / 2), comparison=pb2.GREATER, start_step=4
        )
        assert stops(between) is None


def test_a_port_in_use_is_refused_not_shared():
    """gRPC's default SO_REUSEPORT would let a second service start on the same port and take calls."""
    server, port = build_server("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port} .port in use"):
            build_server(f"127.0.0.1:{port}")
    finally:
        server.stop(None).wait()

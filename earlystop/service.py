"""Katib's EarlyStopping gRPC service for `medianstop-floor` (the rule: earlystop/rule.py).

How Katib v0.19.0 calls it:
- ValidateEarlyStoppingSettings: the suggestion controller, once, with the Experiment's
  spec.earlyStopping (pkg/controller.v1beta1/suggestion/suggestionclient/suggestionclient.go:249-293);
  an INVALID_ARGUMENT answer fails the Suggestion with our message.
- GetEarlyStoppingRules: the suggestion controller, after every GetSuggestions, with the
  Experiment, *every* Trial of the Experiment (its latest condition only; trials with metrics
  unavailable, and early-stopped ones without an observation, are left out: ConvertTrials,
  suggestionclient.go:339-381) and db_manager_address "katib-db-manager.<katib namespace>:6789"
  (pkg/common/v1beta1/katib_manager_util.go:35-45). The rules it returns are copied into the
  trials created by that request (suggestionclient.go:131-185).
- SetTrialStatus: the trial's metrics collector, when a rule fired, with the trial's name
  (cmd/metricscollector/v1beta1/file-metricscollector/main.go:313-330).

Stateless, unlike Katib's medianstop (which caches settings and per-trial averages in memory on
its first call): every GetEarlyStoppingRules reads its settings from the request and every trial's
observation log from the DB manager, so a restarted service answers the same. Note that Katib's
file/StdOut collector reports a trial's observation log to the DB only when the trial ends
(main.go:297-299,427-431), so a running trial counts here only if something reports its metrics
while it runs (Katib's push collector). Early-stopped trials count; failed ones report nothing: the
collector exits before reporting when the training process fails (main.go:424-426 at v0.19.0).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone

import grpc

from earlystop import rule
from earlystop.api import pb2, services

log = logging.getLogger("earlystop")

# The Trial resource and the condition Katib's medianstop writes (pkg/earlystopping/v1beta1/
# medianstop/service.py:28-34,271-281 at v0.19.0); the trial controller reads it back.
TRIAL_PLURAL = "trials"
EARLY_STOPPED = {
    "type": "EarlyStopped",
    "status": "True",
    "reason": "TrialEarlyStopped",
    "message": "Trial is early stopped",
}
# Trials are in the service's namespace (the suggestion pod runs in the Experiment's); outside a
# pod Katib's service falls back to "default" (medianstop/service.py:49-66).
DEFAULT_NAMESPACE = "default"
DB_TIMEOUT_S = 20.0  # one GetObservationLog; the controller gives the whole call 60 s (suggestionclient.go:46)
GOALS = {pb2.MAXIMIZE: "maximize", pb2.MINIMIZE: "minimize"}
COMPARISON = {"maximize": pb2.LESS, "minimize": pb2.GREATER}


def settings_of(spec) -> rule.Settings:
    """The EarlyStoppingSpec's settings; ValueError naming the bad one (or the algorithm)."""
    if spec.algorithm_name != rule.ALGORITHM_NAME:
        raise ValueError(f"unknown algorithm name {spec.algorithm_name!r}: this service is {rule.ALGORITHM_NAME!r}")
    return rule.parse_settings((s.name, s.value) for s in spec.algorithm_settings)


def db_address(address: str) -> str:
    """HOST:PORT as Katib sends it; Katib's medianstop refuses anything else too (service.py:147-153)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"db_manager_address must be HOST:PORT (e.g. katib-db-manager.kubeflow:6789), got {address!r}")
    return address


def metric_values(observation_log, metric: str) -> list[float] | None:
    """The metric's values in the DB's order (by time), or None if one is not a finite number
    (the DB stores "unavailable" for a metric a trial never reported): such a trial is not comparable."""
    values = []
    for entry in observation_log.metric_logs:
        if entry.metric.name != metric:
            continue
        try:
            value = float(entry.metric.value)
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        values.append(value)
    return values


class MedianStopFloor(services.EarlyStoppingServicer):
    def __init__(self, namespace: str | None = None, db_timeout_s: float = DB_TIMEOUT_S):
        self._namespace = namespace
        self._db_timeout_s = db_timeout_s

    # ----------------------------------------------------------------------------- validation
    def ValidateEarlyStoppingSettings(self, request, context):
        try:
            settings = settings_of(request.early_stopping)
        except ValueError as e:
            log.info("ValidateEarlyStoppingSettings: refused: %s", e)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        log.info("ValidateEarlyStoppingSettings: ok %s", settings)
        return pb2.ValidateEarlyStoppingSettingsReply()

    # ---------------------------------------------------------------------------------- rules
    def GetEarlyStoppingRules(self, request, context):
        spec = request.experiment.spec
        try:
            settings = settings_of(spec.early_stopping)
            goal = GOALS.get(spec.objective.type)
            if goal is None:
                raise ValueError("experiment objective type must be maximize or minimize")
            metric = spec.objective.objective_metric_name
            if not metric:
                raise ValueError("experiment objective has no objectiveMetricName")
            address = db_address(request.db_manager_address)
        except ValueError as e:
            log.info("GetEarlyStoppingRules: refused: %s", e)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

        comparable = self._comparable(request.trials, metric, goal, settings.start_step, address, context)
        value = rule.stop_value(list(comparable.values()), goal, settings.floor, settings.min_trials_required)
        rules = []
        if value is not None:
            rules.append(
                pb2.EarlyStoppingRule(
                    name=metric, value=repr(value), comparison=COMPARISON[goal], start_step=settings.start_step
                )
            )
        log.info(
            "GetEarlyStoppingRules: %s %s, %d trials, %d reached step %d, floor %s -> %s",
            request.experiment.name,
            goal,
            len(request.trials),
            len(comparable),
            settings.start_step,
            settings.floor,
            f"stop if {metric} {'<' if goal == 'maximize' else '>'} {value!r}" if rules else "no rule",
        )
        return pb2.GetEarlyStoppingRulesReply(early_stopping_rules=rules)

    def _comparable(self, trials, metric: str, goal: str, start_step: int, address: str, context) -> dict[str, float]:
        """trial name -> best value of its first start_step reports, for the trials that made that many."""
        found = {}
        with grpc.insecure_channel(address) as channel:
            db = services.DBManagerStub(channel)
            for trial in trials:
                try:
                    reply = db.GetObservationLog(
                        pb2.GetObservationLogRequest(trial_name=trial.name, metric_name=metric),
                        timeout=self._db_timeout_s,
                    )
                except grpc.RpcError as e:
                    message = f"GetObservationLog of trial {trial.name} from the DB manager at {address}: {e.code().name} {e.details()}"
                    log.info("GetEarlyStoppingRules: failed: %s", message)
                    context.abort(grpc.StatusCode.UNAVAILABLE, message)
                values = metric_values(reply.observation_log, metric)
                best = None if values is None else rule.best_so_far(values, goal, start_step)
                if best is not None:
                    found[trial.name] = best
        return found

    # ---------------------------------------------------------------------------- trial status
    def SetTrialStatus(self, request, context):
        """Append Katib's EarlyStopped condition to the Trial's status, as medianstop/service.py:251-312
        does (GET the Trial, PATCH its status subresource with the whole object). Unlike it, the
        PATCH is awaited, so a refused one is an error to the collector, and the time is UTC.
        Katib grants the suggestion pod's service account every verb on trials and trials/status
        when early stopping is set (pkg/controller.v1beta1/suggestion/composer/composer.go:350-368)."""
        from components.katib.trials import KATIB_GROUP, KATIB_VERSION
        from components.kube import ApiException, custom_objects_api

        name = request.trial_name
        namespace = self.namespace()
        try:
            api = custom_objects_api()
            trial = api.get_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, namespace, TRIAL_PLURAL, name)
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            trial.setdefault("status", {}).setdefault("conditions", []).append(
                {**EARLY_STOPPED, "lastUpdateTime": now, "lastTransitionTime": now}
            )
            api.patch_namespaced_custom_object_status(KATIB_GROUP, KATIB_VERSION, namespace, TRIAL_PLURAL, name, trial)
        except ApiException as e:
            code = grpc.StatusCode.NOT_FOUND if e.status == 404 else grpc.StatusCode.UNAVAILABLE
            message = f"marking Trial {namespace}/{name} EarlyStopped: Kubernetes API answered {e.status} {e.reason}"
            log.info("SetTrialStatus: failed: %s", message)
            context.abort(code, message)
        except Exception as e:  # no kubeconfig, API server unreachable: the collector logs our message
            message = f"marking Trial {namespace}/{name} EarlyStopped: {type(e).__name__}: {e}"
            log.info("SetTrialStatus: failed: %s", message)
            context.abort(grpc.StatusCode.UNAVAILABLE, message)
        log.info("SetTrialStatus: Trial %s/%s is EarlyStopped", namespace, name)
        return pb2.SetTrialStatusReply()

    def namespace(self) -> str:
        if self._namespace:
            return self._namespace
        from components.kube import default_namespace

        try:
            return default_namespace()
        except ValueError:
            return DEFAULT_NAMESPACE


def build_server(address: str, service: MedianStopFloor | None = None, workers: int = 4) -> tuple[grpc.Server, int]:
    """An unstarted server with the service at `address` (HOST:PORT; port 0 picks one) and the bound port."""
    from concurrent import futures

    # gRPC sets SO_REUSEPORT by default: a second service on the same port would start and silently
    # share the calls with the first. Refuse instead.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)])
    services.add_EarlyStoppingServicer_to_server(service or MedianStopFloor(), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc >= 1.5x raises where older ones returned 0
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address} (port in use?): pick another with --port/--host")
    return server, port


def serve(host: str, port: int, grace_s: float = 5.0) -> None:
    """Serve until SIGTERM/SIGINT, then finish the calls in flight (at most grace_s) and return."""
    import signal
    import threading

    server, bound = build_server(f"{host}:{port}")
    server.start()
    log.info("medianstop-floor early stopping service listening on %s:%d", host, bound)
    stopping = threading.Event()

    def stop(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    stopping.wait()
    server.stop(grace_s).wait()
    log.info("stopped")

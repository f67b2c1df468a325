"""What a kubelet, a cloud controller and prometheus-operator would do for the corpus, done by
the corpus end-to-end test (tests/e2e/test_corpus.py) as ordinary API clients.

The test clusters have no nodes, no kubelet, no cloud provider and no operators: a real
Deployment never gets an available replica there, a LoadBalancer Service no address and a
Prometheus no condition. These simulated controllers supply that, and only that. They use
the official `kubernetes` client (as reconciler/localcluster/controllers.py does), list and
watch their kinds in every namespace, and write the status subresource only, never a spec:

* **kubelet** (`pods`): a pod of a Job has run to completion (phase Succeeded, every
  container terminated with exit code 0); any other pod is Running and Ready. Nothing runs:
  a container whose image, volume or Secret is missing is Ready all the same. On the real
  cluster the real Deployment, ReplicaSet, StatefulSet and Job controllers of
  kube-controller-manager create the pods and read them back into their own status, as
  they would from a real kubelet.
* **workload controllers** (`workloads=True`, for a cluster without kube-controller-manager:
  the embedded local cluster): Deployments, StatefulSets and DaemonSets report every
  replica updated, ready and available for their generation; Jobs report Complete. A
  DaemonSet is scheduled on no node (there are none), as the real controller reports it.
* **cloud controller** (`services`): a Service of type LoadBalancer gets an ingress address
  from TEST-NET-1 (192.0.2.0/24).
* **prometheus-operator** (`monitoring.coreos.com`): Prometheus, PrometheusAgent,
  Alertmanager and ThanosRuler report their replicas and the conditions `Available=True`
  and `Reconciled=True` with the generation they observed, as the operator does once its
  StatefulSet is up. ServiceMonitor, PodMonitor and the other configuration kinds get no
  status, as from the real operator.

Nothing here plays the aggregator: kube-apiserver sets an APIService's `Available`
condition itself, from its Service's endpoints (and the test clusters run no endpoints
controller), so an APIService whose backend never serves stays unavailable, as it should.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import itertools
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
import urllib3

FIELD_MANAGER = "corpus-simulated-controller"
WATCH_TIMEOUT_SECONDS = 60
RETRY_DELAY = 0.5
JOIN_TIMEOUT = 5.0
MERGE_PATCH = "application/merge-patch+json"
MONITORING = "monitoring.coreos.com"
# prometheus-operator's kinds that run workloads and report Available and Reconciled.
OPERATED = (("v1", "prometheuses"), ("v1alpha1", "prometheusagents"), ("v1", "alertmanagers"),
            ("v1", "thanosrulers"))

Object = dict[str, Any]
Patch = Callable[[Object], Object | None]  # the status patch an object needs, or None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _generation(obj: Mapping[str, Any]) -> int:
    return int(_meta(obj).get("generation") or 1)


def _replicas(obj: Mapping[str, Any]) -> int:
    value = _spec(obj).get("replicas")
    return 1 if value is None else int(value)


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in _status(obj).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return {}


def _true(kind: str, *, now: str, reason: str = "", message: str = "",
          generation: int | None = None) -> Object:
    condition: Object = {"type": kind, "status": "True", "lastTransitionTime": now}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


# --- kubelet ------------------------------------------------------------------------------


class _Kubelet:
    """Pods run: a Job's pod to completion, every other pod to Running and Ready."""

    def __init__(self) -> None:
        self._ips = itertools.count(2)

    def patch(self, pod: Object) -> Object | None:
        if _meta(pod).get("deletionTimestamp"):
            return None
        of_job = any(ref.get("kind") == "Job" for ref in _meta(pod).get("ownerReferences") or [])
        phase = "Succeeded" if of_job else "Running"
        if _status(pod).get("phase") == phase:
            return None
        now = _now()
        number = next(self._ips)
        spec = _spec(pod)
        if of_job:
            done = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now,
                                   "finishedAt": now}}
            containers = [self._container(c, state=done, ready=False)
                          for c in spec.get("containers") or []]
            not_ready = {"type": "Ready", "status": "False", "reason": "PodCompleted",
                         "lastTransitionTime": now}
            conditions = [_true("PodScheduled", now=now), _true("Initialized", now=now),
                          {**not_ready, "type": "ContainersReady"}, not_ready]
        else:
            running = {"running": {"startedAt": now}}
            containers = [self._container(c, state=running, ready=True)
                          for c in spec.get("containers") or []]
            conditions = [_true(kind, now=now) for kind in
                          ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        completed = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now,
                                    "finishedAt": now}}
        ip = f"10.244.{number // 250}.{number % 250 + 2}"
        status: Object = {
            "phase": phase, "conditions": conditions, "hostIP": "192.0.2.10",
            "hostIPs": [{"ip": "192.0.2.10"}], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now, "qosClass": _status(pod).get("qosClass") or "BestEffort",
            "containerStatuses": containers,
        }
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [
                self._container(c, state=completed, ready=False)
                for c in spec.get("initContainers") or []]
        return {"status": status}

    @staticmethod
    def _container(container: Mapping[str, Any], *, state: Object, ready: bool) -> Object:
        return {"name": container.get("name"), "image": container.get("image"),
                "imageID": "", "containerID": f"sim://{container.get('name')}",
                "ready": ready, "started": "running" in state, "restartCount": 0,
                "state": state}


# --- the workload controllers, where no kube-controller-manager runs ----------------------


def _deployment(obj: Object) -> Object | None:
    """Every replica updated and available for the current generation."""
    generation, replicas = _generation(obj), _replicas(obj)
    status = _status(obj)
    if (status.get("observedGeneration") == generation
            and status.get("availableReplicas", 0) == replicas
            and status.get("updatedReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas):
        return None
    now = _now()
    name = _meta(obj).get("name")
    return {"status": {
        "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas, "unavailableReplicas": 0,
        "conditions": [
            _true("Available", now=now, reason="MinimumReplicasAvailable",
                  message="Deployment has minimum availability."),
            _true("Progressing", now=now, reason="NewReplicaSetAvailable",
                  message=f'ReplicaSet "{name}-sim{generation}" has successfully progressed.'),
        ],
    }}


def _stateful_set(obj: Object) -> Object | None:
    """Every replica ready and at the update revision of the current generation."""
    generation, replicas = _generation(obj), _replicas(obj)
    status = _status(obj)
    revision = f"{_meta(obj).get('name')}-sim{generation}"
    if status.get("observedGeneration") == generation and \
            status.get("readyReplicas", 0) == replicas and \
            status.get("updateRevision") == revision:
        return None
    return {"status": {
        "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
        "currentReplicas": replicas, "updatedReplicas": replicas,
        "availableReplicas": replicas, "currentRevision": revision,
        "updateRevision": revision, "collisionCount": 0,
    }}


def _daemon_set(obj: Object) -> Object | None:
    """Scheduled on no node: the test clusters have none."""
    generation = _generation(obj)
    if _status(obj).get("observedGeneration") == generation:
        return None
    return {"status": {
        "observedGeneration": generation, "desiredNumberScheduled": 0,
        "currentNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0,
        "updatedNumberScheduled": 0, "numberAvailable": 0,
    }}


def _job(obj: Object) -> Object | None:
    """Ran to completion: as many succeeded pods as completions asked for."""
    if _condition(obj, "Complete").get("status") == "True" or \
            _condition(obj, "Failed").get("status") == "True":
        return None
    now = _now()
    completions = _spec(obj).get("completions")
    succeeded = 1 if completions is None else int(completions)
    return {"status": {
        "startTime": now, "completionTime": now, "active": 0, "ready": 0, "failed": 0,
        "terminating": 0, "succeeded": succeeded,
        "conditions": [
            _true("SuccessCriteriaMet", now=now, reason="CompletionsReached",
                  message="Reached expected number of succeeded pods"),
            _true("Complete", now=now, reason="CompletionsReached",
                  message="Reached expected number of succeeded pods"),
        ],
    }}


# --- cloud controller and operator --------------------------------------------------------


class _LoadBalancers:
    """A LoadBalancer Service gets an address, as a cloud provider's controller gives it."""

    def __init__(self) -> None:
        self._addresses = itertools.count(100)

    def patch(self, service: Object) -> Object | None:
        if _spec(service).get("type") != "LoadBalancer" or \
                (_status(service).get("loadBalancer") or {}).get("ingress"):
            return None
        address = f"192.0.2.{next(self._addresses) % 250 + 2}"
        return {"status": {"loadBalancer": {"ingress": [{"ip": address, "ipMode": "VIP"}]}}}


def _operated(obj: Object) -> Object | None:
    """prometheus-operator's status once the object's StatefulSet is up and reconciled."""
    generation = _generation(obj)
    if all(_condition(obj, kind).get("status") == "True"
           and _condition(obj, kind).get("observedGeneration") == generation
           for kind in ("Available", "Reconciled")):
        return None
    now = _now()
    replicas = _replicas(obj)
    return {"status": {
        "paused": bool(_spec(obj).get("paused")), "replicas": replicas,
        "updatedReplicas": replicas, "availableReplicas": replicas, "unavailableReplicas": 0,
        "conditions": [_true("Available", now=now, generation=generation),
                       _true("Reconciled", now=now, generation=generation)],
    }}


# --- the informers ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Informer:
    """One kind, in every namespace: how to list it, how to write its status, and what."""

    name: str
    list_all: Callable[..., Any]  # the client's list call for every namespace
    write: Callable[[Object, Object], Any]  # (object, status patch) -> the updated object
    patch: Patch


class CorpusControllers:
    """A kubelet, a cloud controller and prometheus-operator; with `workloads`, the
    workload controllers of kube-controller-manager too. start() them, stop() them."""

    def __init__(self, *, api_client: kubernetes.client.ApiClient, stop: threading.Event,
                 workloads: bool) -> None:
        self._stop = stop
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._watches: list[kubernetes.watch.Watch] = []
        self.errors: list[str] = []  # status writes the API server refused, for a failing test
        core = kubernetes.client.CoreV1Api(api_client)
        apps = kubernetes.client.AppsV1Api(api_client)
        batch = kubernetes.client.BatchV1Api(api_client)
        custom = kubernetes.client.CustomObjectsApi(api_client)
        kubelet, balancers = _Kubelet(), _LoadBalancers()
        self._informers = [
            _Informer("pods", core.list_pod_for_all_namespaces,
                      _typed(core.patch_namespaced_pod_status), kubelet.patch),
            _Informer("services", core.list_service_for_all_namespaces,
                      _typed(core.patch_namespaced_service_status), balancers.patch),
            *(_Informer(plural, functools.partial(custom.list_cluster_custom_object, MONITORING,
                                                  version, plural),
                        _custom(custom, version=version, plural=plural), _operated)
              for version, plural in OPERATED),
        ]
        if workloads:
            self._informers += [
                _Informer("deployments", apps.list_deployment_for_all_namespaces,
                          _typed(apps.patch_namespaced_deployment_status), _deployment),
                _Informer("statefulsets", apps.list_stateful_set_for_all_namespaces,
                          _typed(apps.patch_namespaced_stateful_set_status), _stateful_set),
                _Informer("daemonsets", apps.list_daemon_set_for_all_namespaces,
                          _typed(apps.patch_namespaced_daemon_set_status), _daemon_set),
                _Informer("jobs", batch.list_job_for_all_namespaces,
                          _typed(batch.patch_namespaced_job_status), _job),
            ]

    def start(self) -> None:
        """One list-and-watch thread per kind."""
        for informer in self._informers:
            thread = threading.Thread(target=self._run, args=(informer,),
                                      name=f"corpus-sim-{informer.name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """End the watches and join the threads (bounded)."""
        self._stop.set()
        for thread in self._threads:
            for _ in range(int(JOIN_TIMEOUT / 0.1)):
                with self._lock:
                    watches = list(self._watches)
                for w in watches:
                    w.stop()
                thread.join(0.1)
                if not thread.is_alive():
                    break

    def _run(self, informer: _Informer) -> None:
        delay = RETRY_DELAY
        while not self._stop.is_set():
            try:
                response = informer.list_all(_preload_content=False, _request_timeout=30)
                listing = json.loads(response.data)
                for item in listing.get("items") or []:
                    self._reconcile(informer, item)
                delay = RETRY_DELAY
                w = kubernetes.watch.Watch()
                with self._lock:
                    self._watches.append(w)
                if self._stop.is_set():
                    break
                for event in w.stream(informer.list_all,
                                      resource_version=listing["metadata"]["resourceVersion"],
                                      timeout_seconds=WATCH_TIMEOUT_SECONDS):
                    if self._stop.is_set():
                        break
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._reconcile(informer, event.get("raw_object") or {})
            except kubernetes.client.ApiException as exc:
                if exc.status != 410:  # 410: the resourceVersion expired; list again now
                    self._stop.wait(delay)  # 404: a CRD not installed yet
                    delay = min(delay * 2, 2.0)
            except (urllib3.exceptions.HTTPError, OSError, ValueError, KeyError):
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _reconcile(self, informer: _Informer, obj: Object) -> None:
        patch = informer.patch(obj)
        if patch is None or self._stop.is_set():
            return
        try:
            informer.write(obj, patch)
        except kubernetes.client.ApiException as exc:
            if exc.status not in (404, 409):  # gone, or changed meanwhile: the watch says
                meta = _meta(obj)
                self.errors.append(f"{informer.name} {meta.get('namespace')}/"
                                   f"{meta.get('name')}: {exc.status} {exc.body}")
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            pass  # the next event or list tries again


def _typed(call: Callable[..., Any]) -> Callable[[Object, Object], Any]:
    """A typed client's patch_namespaced_*_status as (object, patch) -> response."""
    def write(obj: Object, patch: Object) -> Any:
        meta = _meta(obj)
        return call(meta["name"], meta["namespace"], patch, field_manager=FIELD_MANAGER,
                    _content_type=MERGE_PATCH, _request_timeout=10)
    return write


def _custom(custom: kubernetes.client.CustomObjectsApi, *, version: str,
            plural: str) -> Callable[[Object, Object], Any]:
    """The status patch of one of prometheus-operator's namespaced kinds."""
    def write(obj: Object, patch: Object) -> Any:
        meta = _meta(obj)
        return custom.patch_namespaced_custom_object_status(
            MONITORING, version, meta["namespace"], plural, meta["name"], patch,
            field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH, _request_timeout=10)
    return write

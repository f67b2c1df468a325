"""Simulated controllers that bring the sample telco CRs to Ready, like real operators would.

Started by `LocalCluster(controllers=True)` against itself; written purely as a client of the
Kubernetes API (the official `kubernetes` package, the only module of this package that imports
it) so they can run against a real kube-apiserver too.

For WorkloadCluster and NetworkFunction (telco.example.com/v1alpha1, all namespaces): list and
watch; when an object's generation has not been observed, set Ready=False/Progressing (phase
Provisioning) at once and, `ready_delay` seconds later, Ready=True/Reconciled with
observedGeneration (phase Ready). The annotation `sim.reconciler.dev/fail: "true"` ends in
Ready=False/Failed instead; `sim.reconciler.dev/ready-delay: "<seconds>"` sets one object's
own delay (from its next generation change). A NetworkFunction with `spec.clusterRef` waits
until that WorkloadCluster (same namespace) is Ready before its own delay starts.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import typing
from collections.abc import Mapping
from typing import Any

import kubernetes
import urllib3

GROUP = "telco.example.com"
VERSION = "v1alpha1"
WORKLOAD_CLUSTERS = "workloadclusters"
NETWORK_FUNCTIONS = "networkfunctions"
KINDS = {WORKLOAD_CLUSTERS: "WorkloadCluster", NETWORK_FUNCTIONS: "NetworkFunction"}
FAIL_ANNOTATION = "sim.reconciler.dev/fail"
# Seconds this object takes to become Ready, instead of the controllers' ready_delay.
DELAY_ANNOTATION = "sim.reconciler.dev/ready-delay"
FIELD_MANAGER = "simulated-controller"
WATCH_TIMEOUT_SECONDS = 60
RETRY_DELAY = 0.5
JOIN_TIMEOUT = 5.0

Key = tuple[str, str, str]  # plural, namespace, name


def for_url(url: str, *, token: str, ready_delay: float,
            stop: threading.Event) -> SimulatedControllers:
    """Controllers talking to the API server at url with a bearer token (no kubeconfig)."""
    configuration = kubernetes.client.Configuration(host=url)
    configuration.api_key["BearerToken"] = f"Bearer {token}"
    api_client = kubernetes.client.ApiClient(configuration)
    return SimulatedControllers(api_client=api_client, ready_delay=ready_delay, stop=stop)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _delay(obj: Mapping[str, Any], default: float) -> float:
    """The object's own ready delay (its DELAY_ANNOTATION, in seconds), else `default`."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(DELAY_ANNOTATION)
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _ready_condition(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Ready=True for the current generation."""
    condition = _ready_condition(obj)
    generation = (obj.get("metadata") or {}).get("generation")
    return bool(
        condition
        and condition.get("status") == "True"
        and (obj.get("status") or {}).get("observedGeneration") == generation
    )


@dataclasses.dataclass(frozen=True)
class _Pending:
    generation: int
    outcome: str
    timer: threading.Timer


class SimulatedControllers:
    """Two informers (list+watch loops) and cancellable ready timers."""

    def __init__(
        self,
        *,
        api_client: kubernetes.client.ApiClient,
        ready_delay: float,
        stop: threading.Event,
    ) -> None:
        self._api = kubernetes.client.CustomObjectsApi(api_client)
        self.ready_delay = ready_delay
        self._stop = stop
        self._lock = threading.RLock()
        self._cache: dict[Key, dict[str, Any]] = {}
        self._pending: dict[Key, _Pending] = {}
        self._threads: list[threading.Thread] = []
        self._watches: dict[str, kubernetes.watch.Watch] = {}

    def start(self) -> None:
        """Start one informer thread per kind."""
        for plural in (WORKLOAD_CLUSTERS, NETWORK_FUNCTIONS):
            thread = threading.Thread(target=self._informer, args=(plural,),
                                      name=f"sim-{plural}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Cancel timers, end the watches and join the threads (bounded)."""
        self._stop.set()
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for item in pending:
            item.timer.cancel()
        for item in pending:
            item.timer.join(JOIN_TIMEOUT)
        for thread in self._threads:
            for _ in range(int(JOIN_TIMEOUT / 0.1)):
                with self._lock:
                    watches = list(self._watches.values())
                for w in watches:
                    w.stop()
                thread.join(0.1)
                if not thread.is_alive():
                    break

    # ---- informers -------------------------------------------------------------------------

    def _informer(self, plural: str) -> None:
        delay = RETRY_DELAY
        while not self._stop.is_set():
            try:
                # The client returns the decoded JSON list (a dict), typed only as `object`.
                listing = typing.cast(dict[str, Any], self._api.list_cluster_custom_object(
                    GROUP, VERSION, plural, _request_timeout=30))
                self._replace(plural, listing.get("items") or [])
                resource_version = (listing.get("metadata") or {}).get("resourceVersion")
                delay = RETRY_DELAY
                w = kubernetes.watch.Watch()
                with self._lock:
                    self._watches[plural] = w
                if self._stop.is_set():
                    break
                for event in w.stream(self._api.list_cluster_custom_object, GROUP, VERSION,
                                      plural, resource_version=resource_version,
                                      timeout_seconds=WATCH_TIMEOUT_SECONDS,
                                      allow_watch_bookmarks=True):
                    if self._stop.is_set():
                        break
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._on_event(plural, event["type"], event.get("raw_object") or {})
            except kubernetes.client.ApiException as exc:
                if exc.status == 410:
                    continue  # resourceVersion expired: list again at once
                if exc.status == 404:  # the CRD is not installed (yet, or any more)
                    self._replace(plural, [])
                    self._stop.wait(RETRY_DELAY)
                    continue
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except (urllib3.exceptions.HTTPError, OSError, ValueError):
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _replace(self, plural: str, items: list[dict[str, Any]]) -> None:
        with self._lock:
            keys = {self._key(plural, obj) for obj in items}
            for key in [k for k in self._cache if k[0] == plural and k not in keys]:
                self._forget(key)
            for obj in items:
                self._on_event(plural, "ADDED", obj)

    def _on_event(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        key = self._key(plural, obj)
        with self._lock:
            if kind == "DELETED":
                self._forget(key)
            else:
                self._cache[key] = obj
                self._evaluate(key)
            if plural == WORKLOAD_CLUSTERS:
                for other in list(self._cache):
                    if other[0] == NETWORK_FUNCTIONS and other[1] == key[1] and \
                            (self._cache[other].get("spec") or {}).get("clusterRef") == key[2]:
                        self._evaluate(other)

    def _forget(self, key: Key) -> None:
        self._cache.pop(key, None)
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.timer.cancel()

    @staticmethod
    def _key(plural: str, obj: Mapping[str, Any]) -> Key:
        metadata = obj.get("metadata") or {}
        return (plural, metadata.get("namespace") or "", metadata.get("name") or "")

    # ---- the reconcile ---------------------------------------------------------------------

    def _waiting_for(self, key: Key, obj: Mapping[str, Any]) -> str | None:
        """The WorkloadCluster a NetworkFunction still waits for, or None."""
        if key[0] != NETWORK_FUNCTIONS:
            return None
        ref = (obj.get("spec") or {}).get("clusterRef")
        if not ref:
            return None
        cluster = self._cache.get((WORKLOAD_CLUSTERS, key[1], str(ref)))
        return None if cluster is not None and is_ready(cluster) else str(ref)

    def _evaluate(self, key: Key) -> None:
        obj = self._cache.get(key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return
        generation = (obj.get("metadata") or {}).get("generation") or 1
        failing = ((obj.get("metadata") or {}).get("annotations") or {}).get(
            FAIL_ANNOTATION) == "true"
        outcome = "Failed" if failing else "Reconciled"
        condition = _ready_condition(obj) or {}
        if (obj.get("status") or {}).get("observedGeneration") == generation and \
                condition.get("reason") == outcome and \
                condition.get("observedGeneration") == generation:
            return
        waiting = None if failing else self._waiting_for(key, obj)
        pending = self._pending.get(key)
        if waiting is not None:
            if pending is not None:
                pending.timer.cancel()
                self._pending.pop(key, None)
            self._progress(key, obj, generation,
                           f"waiting for WorkloadCluster {waiting} to be Ready")
            return
        if pending is not None and pending.generation == generation and \
                pending.outcome == outcome:
            return
        if pending is not None:
            pending.timer.cancel()
        self._progress(key, obj, generation, f"provisioning generation {generation}")
        self._schedule(key, generation, outcome, _delay(obj, self.ready_delay))

    def _schedule(self, key: Key, generation: int, outcome: str, delay: float) -> None:
        if self._stop.is_set():
            return
        timer = threading.Timer(delay, self._fire, args=(key, generation, outcome))
        timer.daemon = True
        self._pending[key] = _Pending(generation=generation, outcome=outcome, timer=timer)
        timer.start()

    def _fire(self, key: Key, generation: int, outcome: str) -> None:
        with self._lock:
            pending = self._pending.get(key)
            if self._stop.is_set() or pending is None or pending.generation != generation:
                return
            self._pending.pop(key, None)
            obj = self._cache.get(key)
            if obj is None or (obj.get("metadata") or {}).get("generation") != generation:
                return
            if outcome == "Reconciled" and self._waiting_for(key, obj) is not None:
                self._evaluate(key)
                return
            kind = KINDS[key[0]]
            if outcome == "Failed":
                status, phase = "False", "Failed"
                message = f"simulated failure ({FAIL_ANNOTATION})"
            else:
                status, phase = "True", "Ready"
                message = f"{kind} {key[2]} is ready (generation {generation})"
            ok = self._patch_status(key, obj, generation=generation, phase=phase, status=status,
                                    reason=outcome, message=message, observed=True)
            if not ok:
                self._schedule(key, generation, outcome, RETRY_DELAY)

    def _progress(self, key: Key, obj: Mapping[str, Any], generation: int, message: str) -> None:
        condition = _ready_condition(obj) or {}
        if condition.get("reason") == "Progressing" and condition.get("message") == message and \
                condition.get("observedGeneration") == generation:
            return
        self._patch_status(key, obj, generation=generation, phase="Provisioning", status="False",
                           reason="Progressing", message=message, observed=False)

    def _patch_status(self, key: Key, obj: Mapping[str, Any], *, generation: int, phase: str,
                      status: str, reason: str, message: str, observed: bool) -> bool:
        previous = _ready_condition(obj) or {}
        transition = previous.get("lastTransitionTime") if previous.get("status") == status \
            else None
        body: dict[str, Any] = {"status": {
            "phase": phase,
            "conditions": [{
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": transition or _now(),
            }],
        }}
        if observed:
            body["status"]["observedGeneration"] = generation
        plural, namespace, name = key
        try:
            if namespace:
                updated = self._api.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, body,
                    field_manager=FIELD_MANAGER, _content_type="application/merge-patch+json",
                    _request_timeout=10)
            else:
                updated = self._api.patch_cluster_custom_object_status(
                    GROUP, VERSION, plural, name, body,
                    field_manager=FIELD_MANAGER, _content_type="application/merge-patch+json",
                    _request_timeout=10)
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError,
                ValueError):
            return False
        if isinstance(updated, dict) and key in self._cache:
            self._cache[key] = updated
        return True

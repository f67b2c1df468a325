"""Health of one live object: may the wave it belongs to proceed? Called by the rollout.

After each wave is applied the rollout reads every object back and calls assess() on it.
assess() dispatches on the object's API group and kind to one rule per kind family, in the
manner of Argo CD's gitops-engine (pkg/health), with kstatus' semantics (the ones Flux and
`kubectl wait` users rely on) for everything without a rule of its own:

* `reconciler.dev/health: skip` on an object makes it healthy at once, whatever it says;
* workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet) judge their rollout counters;
* Job, Pod, PersistentVolumeClaim, Service, Namespace, CustomResourceDefinition and
  APIService judge their own status fields or conditions;
* kinds that carry no status (ConfigMap, Secret, RBAC) are healthy once applied;
* everything else, custom resources above all, is judged as kstatus does: the generation
  the controller observed, then Stalled (failed) and Reconciling (progressing), then Ready,
  or failing that the conventional Reconciled and Available (prometheus-operator's kinds);
  an object with none of these conditions whose generation is caught up is current.

register() adds a rule for another kind; require_conditions() builds the common one. The
rules are spelled out, with their differences from kstatus, in docs/health.md.

It is pure logic over the plain dict the API server returns, plus the wall clock (injected
by tests) for one question: was a custom resource without status created just now? Nothing
here does I/O, and a malformed field (a condition that is not a mapping, a count that is not
a number) is read as absent rather than raising.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import time
from collections.abc import Callable, Mapping
from typing import Any

from reconciler import contract


class Status(enum.StrEnum):
    HEALTHY = "Healthy"  # the wave may proceed past this object
    PROGRESSING = "Progressing"  # not there yet: wait, up to the intent's health timeout
    FAILED = "Failed"  # will not get there without a change: stop the rollout


@dataclasses.dataclass(frozen=True)
class Health:
    """The verdict on one object, and a short reason fit for a status table."""

    status: Status
    message: str  # names the condition or counter, "" when healthy without detail


# A rule judges one live object of its kind. It must not raise: it reads a malformed field
# as absent, as the rules here do.
Rule = Callable[[Mapping[str, Any]], Health]

MESSAGE_LIMIT = 200  # characters; a controller's message is cut to this, whitespace folded

# Ready=False with one of these reasons (or any reason containing "fail") is a failure.
FAILURE_REASONS = frozenset({"failed", "error", "degraded", "installfailed",
                             "reconciliationfailed"})

# Container waiting reasons that do not clear up by waiting.
POD_FAILURE_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                                 "InvalidImageName"})

# Judged when an object has no Ready condition, all of those present, in this order: a
# failed reconcile is the cause, so it is named before the unavailability it brings.
CONVENTIONAL_CONDITIONS = ("Reconciled", "Available")

# The value of the annotation contract.ANNOTATION_HEALTH that skips the health check.
SKIP = "skip"

# Seconds after its creation during which a custom resource without any status waits for
# its controller's first status write; after that it is current, as in kstatus. (A real
# apiserver showed the next wave starting between the create and that first write.)
STATUS_GRACE = 10.0

HEALTHY = Health(status=Status.HEALTHY, message="")


def assess(obj: Mapping[str, Any], *,
           clock: Callable[[], float] = time.time,  # injected by tests
           ) -> Health:
    """The health of one live object; dispatches on apiVersion/kind to one rule per family."""
    metadata = _mapping(obj.get("metadata"))
    if _skipped(metadata):
        return Health(status=Status.HEALTHY,
                      message=f"health check skipped ({contract.ANNOTATION_HEALTH}: {SKIP})")
    if metadata.get("deletionTimestamp"):
        return _deleting(metadata=metadata)
    group = _group(obj.get("apiVersion"))
    rule = _FAMILIES.get((group, obj.get("kind", "")))
    if rule is not None:
        return rule(obj)
    return _assess_generic(obj, builtin=_is_builtin(group), now=clock())


def register(group: str, kind: str, rule: Rule, *, replace: bool = False) -> None:
    """Judge every object of this API group and kind by `rule` from now on.

    group is the API group alone ("" for the core group, "monitoring.coreos.com"), so every
    version of the kind is judged alike. A kind that already has a rule (one of ours or an
    earlier registration) is refused unless replace is True.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError("a health rule needs a kind: register(group, kind, rule)")
    if not isinstance(group, str) or "/" in group:
        raise ValueError(f"health rule for {kind}: group {group!r} is not an API group; "
                         f"pass the group without its version (\"apps\", not \"apps/v1\")")
    if not callable(rule):
        raise TypeError(f"health rule for {_kind_name(group, kind)} is not callable")
    if (group, kind) in _FAMILIES and not replace:
        raise ValueError(f"{_kind_name(group, kind)} already has a health rule; "
                         f"pass replace=True to replace it")
    _FAMILIES[(group, kind)] = rule


def require_conditions(*types: str, judge_reasons: bool = True) -> Rule:
    """A rule for kinds that are there when all these conditions are True, for the current
    generation: `require_conditions("Programmed")` for a Gateway.

    The generation and Stalled/Reconciling are checked first, as for every custom resource.
    A condition not yet reported is progressing. One that is False with a failure reason
    fails the object, unless judge_reasons is False (its reasons all clear up by waiting).
    """
    if not types:
        raise ValueError("require_conditions() needs at least one condition type")
    wanted = tuple(types)

    def rule(obj: Mapping[str, Any]) -> Health:
        status = _mapping(obj.get("status"))
        generation = _generation(obj)
        verdict = _kstatus_generic(status=status, generation=generation)
        if verdict is not None:
            return verdict
        conditions = _conditions(status)
        for kind in wanted:
            if kind not in conditions:
                return _progressing(f"no {kind} condition yet")
        return _judge([conditions[kind] for kind in wanted], generation=generation,
                      judge_reasons=judge_reasons)

    rule.__doc__ = f"Healthy when {', '.join(wanted)} {'is' if len(wanted) == 1 else 'are'} True."
    return rule


# --- the families -------------------------------------------------------------------------


def _assess_generic(obj: Mapping[str, Any], *, builtin: bool, now: float) -> Health:
    """Kinds without a rule of their own, judged as kstatus does (see docs/health.md)."""
    status = _mapping(obj.get("status"))
    if not status:
        if not builtin and _maybe_new(_mapping(obj.get("metadata")), now=now):
            return _progressing("waiting for its controller to report status")
        return HEALTHY  # nothing reports on it: current, as kstatus has it
    generation = _generation(obj)
    verdict = _kstatus_generic(status=status, generation=generation)
    if verdict is not None:
        return verdict
    conditions = _conditions(status)
    ready = conditions.get("Ready")
    if ready is not None:
        return _judge([ready], generation=generation, judge_reasons=True)
    conventional = [conditions[kind] for kind in CONVENTIONAL_CONDITIONS if kind in conditions]
    if conventional:
        return _judge(conventional, generation=generation, judge_reasons=True)
    return HEALTHY  # caught up, and no condition says otherwise: current


def _kstatus_generic(*, status: Mapping[str, Any], generation: int | None) -> Health | None:
    """kstatus' checks that come before any kind's own: the observed generation, then
    Stalled=True (failed) and Reconciling=True (progressing). None when they say nothing."""
    if _stale(observed=status.get("observedGeneration"), generation=generation):
        return _waiting_for_generation(generation)
    conditions = _conditions(status)
    stalled = conditions.get("Stalled")
    if stalled is not None and _is_true(stalled) and _current(stalled, generation=generation):
        return Health(status=Status.FAILED, message=_describe(stalled))
    reconciling = conditions.get("Reconciling")
    if reconciling is not None and _is_true(reconciling):
        return _progressing(_describe(reconciling))
    return None


def _judge(conditions: list[Mapping[str, Any]], *, generation: int | None,
           judge_reasons: bool) -> Health:
    """Healthy when every one of these conditions is True for the current generation."""
    if not all(_current(condition, generation=generation) for condition in conditions):
        return _waiting_for_generation(generation)
    if judge_reasons:
        for condition in conditions:
            if _cond_status(condition) == "False" and _is_failure_reason(condition.get("reason")):
                return Health(status=Status.FAILED, message=_describe(condition))
    for condition in conditions:
        if not _is_true(condition):
            return _progressing(_describe(condition))
    messages = [_short(condition.get("message")) for condition in conditions]
    return Health(status=Status.HEALTHY, message=next((m for m in messages if m), ""))


def _deployment(obj: Mapping[str, Any]) -> Health:
    """Deployment: rolled out when every replica is updated and available, none old left."""
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    if spec.get("paused") is True:
        return Health(status=Status.HEALTHY, message="paused")
    generation = _generation(obj)
    if _stale(observed=status.get("observedGeneration", 0), generation=generation):
        return _waiting_for_generation(generation)
    progressing = _conditions(status).get("Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(status=Status.FAILED, message=_describe(progressing))
    desired = _count(spec.get("replicas"), default=1)
    updated = _count(status.get("updatedReplicas"))
    total = _count(status.get("replicas"))
    available = _count(status.get("availableReplicas"))
    if updated < desired:
        return _progressing(f"{updated} of {desired} replicas updated")
    if total > updated:
        return _progressing(f"{total - updated} old replicas pending termination")
    if available < updated:
        return _progressing(f"{available} of {updated} updated replicas available")
    return HEALTHY


def _stateful_set(obj: Mapping[str, Any]) -> Health:
    """StatefulSet: every replica ready, and the update (up to its partition) rolled out."""
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    generation = _generation(obj)
    if _stale(observed=status.get("observedGeneration", 0), generation=generation):
        return _waiting_for_generation(generation)
    desired = _count(spec.get("replicas"), default=1)
    ready = _count(status.get("readyReplicas"))
    if ready < desired:
        return _progressing(f"{ready} of {desired} replicas ready")
    strategy = _mapping(spec.get("updateStrategy"))
    if strategy.get("type") == "OnDelete":
        return HEALTHY  # pods are replaced only when someone deletes them
    partition = _count(_mapping(strategy.get("rollingUpdate")).get("partition"))
    updated = _count(status.get("updatedReplicas"))
    if updated < desired - partition:
        return _progressing(f"{updated} of {desired - partition} replicas updated")
    update_revision = status.get("updateRevision")
    if partition == 0 and update_revision and update_revision != status.get("currentRevision"):
        return _progressing(f"rolling update to revision {update_revision} not finished")
    return HEALTHY


def _daemon_set(obj: Mapping[str, Any]) -> Health:
    """DaemonSet: every scheduled node runs an updated, available pod."""
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    generation = _generation(obj)
    if _stale(observed=status.get("observedGeneration", 0), generation=generation):
        return _waiting_for_generation(generation)
    if _mapping(spec.get("updateStrategy")).get("type") == "OnDelete":
        return HEALTHY  # pods are replaced only when someone deletes them
    desired = _count(status.get("desiredNumberScheduled"))
    updated = _count(status.get("updatedNumberScheduled"))
    available = _count(status.get("numberAvailable"))
    if updated < desired:
        return _progressing(f"{updated} of {desired} pods updated")
    if available < desired:
        return _progressing(f"{available} of {desired} pods available")
    return HEALTHY


def _replica_set(obj: Mapping[str, Any]) -> Health:
    """ReplicaSet: as many available replicas as the spec asks for."""
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    generation = _generation(obj)
    if _stale(observed=status.get("observedGeneration", 0), generation=generation):
        return _waiting_for_generation(generation)
    failure = _conditions(status).get("ReplicaFailure")
    if failure is not None and _is_true(failure):
        return Health(status=Status.FAILED, message=_describe(failure))
    desired = _count(spec.get("replicas"), default=1)
    available = _count(status.get("availableReplicas"))
    if available < desired:
        return _progressing(f"{available} of {desired} replicas available")
    return HEALTHY


def _job(obj: Mapping[str, Any]) -> Health:
    """Job: healthy once Complete, failed once Failed, running in between."""
    status = _mapping(obj.get("status"))
    conditions = _conditions(status)
    failed = conditions.get("Failed")
    if failed is not None and _is_true(failed):
        return Health(status=Status.FAILED, message=_describe(failed))
    complete = conditions.get("Complete")
    if complete is not None and _is_true(complete):
        return HEALTHY
    suspended = conditions.get("Suspended")
    if suspended is not None and _is_true(suspended):
        return _progressing(_describe(suspended))
    return _progressing(f"{_count(status.get('active'))} active, "
                        f"{_count(status.get('succeeded'))} succeeded, "
                        f"{_count(status.get('failed'))} failed")


def _pod(obj: Mapping[str, Any]) -> Health:
    """Pod: Succeeded, or Running and Ready; failed, or stuck on an image or a crash loop."""
    status = _mapping(obj.get("status"))
    phase = status.get("phase")
    if phase == "Succeeded":
        return HEALTHY
    if phase == "Failed":
        detail = _short(status.get("message")) or _short(status.get("reason"))
        return Health(status=Status.FAILED, message=f"phase Failed: {detail}" if detail
                      else "phase Failed")
    waiting = _waiting_containers(status)
    for name, state in waiting:
        if state.get("reason") in POD_FAILURE_REASONS:
            return Health(status=Status.FAILED, message=_container_message(name, state))
    conditions = _conditions(status)
    ready = conditions.get("Ready")
    if phase == "Running" and ready is not None and _is_true(ready):
        return HEALTHY
    if waiting:
        return _progressing(_container_message(*waiting[0]))
    scheduled = conditions.get("PodScheduled")
    if scheduled is not None and _cond_status(scheduled) == "False":
        return _progressing(_describe(scheduled))  # e.g. Unschedulable: 0/4 nodes available
    if phase == "Running" and ready is not None:
        return _progressing(_describe(ready))
    return _progressing(f"phase {phase}" if isinstance(phase, str) and phase else "no phase yet")


def _persistent_volume_claim(obj: Mapping[str, Any]) -> Health:
    """PersistentVolumeClaim: Bound to a volume; Lost when its volume went away."""
    phase = _mapping(obj.get("status")).get("phase")
    if phase == "Bound":
        return HEALTHY
    if phase == "Lost":
        return Health(status=Status.FAILED, message="claim lost its volume")
    return _progressing(f"phase {phase}" if isinstance(phase, str) and phase
                        else "waiting for a volume")


def _service(obj: Mapping[str, Any]) -> Health:
    """Service: a LoadBalancer waits for its ingress address; every other type is ready."""
    if _mapping(obj.get("spec")).get("type") != "LoadBalancer":
        return HEALTHY
    ingress = _mapping(_mapping(obj.get("status")).get("loadBalancer")).get("ingress")
    if isinstance(ingress, list) and ingress:
        return HEALTHY
    return _progressing("waiting for a load balancer address")


def _namespace(obj: Mapping[str, Any]) -> Health:
    """Namespace: Active (or no status yet) is healthy; Terminating is not there yet."""
    if _mapping(obj.get("status")).get("phase") == "Terminating":
        return _progressing("namespace is terminating")
    return HEALTHY


def _custom_resource_definition(obj: Mapping[str, Any]) -> Health:
    """CustomResourceDefinition: Established; names that clash with another CRD fail it."""
    conditions = _conditions(_mapping(obj.get("status")))
    names = conditions.get("NamesAccepted")
    if names is not None and _cond_status(names) == "False":
        return Health(status=Status.FAILED, message=_describe(names))
    established = conditions.get("Established")
    if established is not None and _is_true(established):
        return HEALTHY
    if established is not None:
        return _progressing(_describe(established))
    return _progressing("not yet Established")


def _no_status(obj: Mapping[str, Any]) -> Health:
    """Kinds that carry no status (configuration, RBAC): healthy once applied."""
    del obj
    return HEALTHY


# (API group, kind) -> its rule. Group "" is the core group (apiVersion "v1"). register()
# adds to it; a rule of our own goes here, with a fixture per state (docs/health.md).
_FAMILIES: dict[tuple[str, str], Rule] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _stateful_set,
    ("apps", "DaemonSet"): _daemon_set,
    ("apps", "ReplicaSet"): _replica_set,
    ("batch", "Job"): _job,
    ("", "Pod"): _pod,
    ("", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "Service"): _service,
    ("", "Namespace"): _namespace,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _custom_resource_definition,
    # The aggregator's reasons for Available=False (ServiceNotFound, MissingEndpoints,
    # FailedDiscoveryCheck, ...) all clear up once the backend serves: it waits, never fails.
    ("apiregistration.k8s.io", "APIService"): require_conditions("Available",
                                                                 judge_reasons=False),
    ("", "ConfigMap"): _no_status,
    ("", "Secret"): _no_status,
    ("", "ServiceAccount"): _no_status,
    ("rbac.authorization.k8s.io", "Role"): _no_status,
    ("rbac.authorization.k8s.io", "RoleBinding"): _no_status,
    ("rbac.authorization.k8s.io", "ClusterRole"): _no_status,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _no_status,
}


# --- reading the object -------------------------------------------------------------------


def _deleting(*, metadata: Mapping[str, Any]) -> Health:
    finalizers = metadata.get("finalizers")
    names = [f for f in finalizers if isinstance(f, str)] if isinstance(finalizers, list) else []
    if names:
        return _progressing(f"being deleted (finalizers: {', '.join(names)})")
    return _progressing("being deleted")


def _skipped(metadata: Mapping[str, Any]) -> bool:
    """Whether the object carries `reconciler.dev/health: skip` (any case, spaces ignored)."""
    value = _mapping(metadata.get("annotations")).get(contract.ANNOTATION_HEALTH)
    return isinstance(value, str) and value.strip().lower() == SKIP


def _kind_name(group: str, kind: str) -> str:
    return f"{group}/{kind}" if group else kind


def _maybe_new(metadata: Mapping[str, Any], *, now: float) -> bool:
    """Whether the object may have been created too recently for its controller to have
    written a status: metadata.creationTimestamp within STATUS_GRACE of now, either way (so a
    clock behind the API server's cannot hold it back for more than twice that), or no
    readable creationTimestamp at all (the API server always sets one; nothing tells its age)."""
    created = _timestamp(metadata.get("creationTimestamp"))
    return created is None or abs(now - created) < STATUS_GRACE


def _timestamp(value: object) -> float | None:
    """An RFC 3339 time as the API writes it ("2026-11-27T10:00:04Z"), in epoch seconds."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


def _group(api_version: object) -> str:
    """The API group of an apiVersion: "apps/v1" -> "apps", "v1" -> "" (the core group)."""
    if not isinstance(api_version, str):
        return ""
    return api_version.rpartition("/")[0]


def _is_builtin(group: str) -> bool:
    """Whether a group is Kubernetes' own; a CRD's group must contain a dot."""
    return "." not in group or group.endswith(".k8s.io")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _count(value: object, *, default: int = 0) -> int:
    number = _int(value)
    return default if number is None else number


def _generation(obj: Mapping[str, Any]) -> int | None:
    return _int(_mapping(obj.get("metadata")).get("generation"))


def _stale(*, observed: object, generation: int | None) -> bool:
    """Whether an observedGeneration is behind; an absent one (None) is not."""
    seen = _int(observed)
    return generation is not None and seen is not None and seen < generation


def _current(condition: Mapping[str, Any], *, generation: int | None) -> bool:
    return not _stale(observed=condition.get("observedGeneration"), generation=generation)


def _waiting_for_generation(generation: int | None) -> Health:
    return _progressing(f"waiting for the controller to observe generation {generation}")


def _progressing(message: str) -> Health:
    return Health(status=Status.PROGRESSING, message=message)


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """status.conditions by type; entries that are not mappings or lack a type are skipped."""
    found: dict[str, Mapping[str, Any]] = {}
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return found
    for condition in conditions:
        if isinstance(condition, Mapping) and isinstance(condition.get("type"), str):
            found.setdefault(condition["type"], condition)
    return found


def _cond_status(condition: Mapping[str, Any]) -> str:
    """A condition's status as the API spells it; a YAML boolean is read as its string."""
    value = condition.get("status")
    if isinstance(value, bool):
        return "True" if value else "False"
    return value if isinstance(value, str) else "Unknown"


def _is_true(condition: Mapping[str, Any]) -> bool:
    return _cond_status(condition) == "True"


def _is_failure_reason(reason: object) -> bool:
    if not isinstance(reason, str):
        return False
    folded = reason.lower()
    return folded in FAILURE_REASONS or "fail" in folded


def _describe(condition: Mapping[str, Any]) -> str:
    """'Ready=False (Provisioning): waiting for nodes', leaving out what is absent."""
    text = f"{condition.get('type')}={_cond_status(condition)}"
    reason = _short(condition.get("reason"))
    if reason:
        text += f" ({reason})"
    message = _short(condition.get("message"))
    if message:
        text += f": {message}"
    return text


def _short(value: object) -> str:
    """A controller's text on one line, cut to MESSAGE_LIMIT characters."""
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split())
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT - 3].rstrip() + "..."
    return text


def _waiting_containers(status: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, state.waiting) of each waiting container, init containers first."""
    waiting: list[tuple[str, Mapping[str, Any]]] = []
    for key in ("initContainerStatuses", "containerStatuses"):
        statuses = status.get(key)
        if not isinstance(statuses, list):
            continue
        for entry in statuses:
            container = _mapping(entry)
            state = _mapping(_mapping(container.get("state")).get("waiting"))
            if state:
                waiting.append((str(container.get("name", "?")), state))
    return waiting


def _container_message(name: str, state: Mapping[str, Any]) -> str:
    text = f"container {name} waiting"
    reason = _short(state.get("reason"))
    if reason:
        text += f" ({reason})"
    message = _short(state.get("message"))
    if message:
        text += f": {message}"
    return text

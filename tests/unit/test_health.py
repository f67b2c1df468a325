"""Health assessment: one verdict per live object, per kind family, from kubectl-shaped fixtures."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import pathlib
from typing import Any

import pytest
from ruamel import yaml as ruamel_yaml

from reconciler import contract
from reconciler.site import health

TESTDATA = pathlib.Path(__file__).parent / "testdata" / "health"

H = health.Status.HEALTHY
P = health.Status.PROGRESSING
F = health.Status.FAILED

# fixture file -> (expected status, a fragment the message must contain; "" for no message)
EXPECTED: dict[str, tuple[health.Status, str]] = {
    # Custom resources: our sample kinds, with conditions as their controllers write them.
    "cr-ready.yaml": (H, "control plane and 4 of 4 workers ready"),
    "cr-ready-stale-generation.yaml": (P, "waiting for the controller to observe generation 3"),
    "cr-ready-condition-stale-generation.yaml": (P, "observe generation 3"),
    "cr-not-ready-progressing.yaml": (
        P, "Ready=False (Provisioning): waiting for nodes (2 of 4 workers joined)"),
    "cr-ready-unknown.yaml": (P, "Ready=Unknown (Reconciling): reconciliation in progress"),
    "cr-failed.yaml": (F, "Ready=False (ProvisioningFailed): node pool dataplane: flavor"),
    "cr-stalled.yaml": (F, "Stalled=True (UnsupportedVersion): kubernetesVersion v1.30.2"),
    "cr-reconciling.yaml": (P, "Reconciling=True (Scaling): scaling node pool dataplane"),
    # Caught up, and no Ready, Reconciled or Available condition: current, as in kstatus.
    "cr-no-ready-condition.yaml": (H, ""),
    # Read 2 s after its creation (FIXTURE_TIME): its controller has not written yet.
    "cr-no-status.yaml": (P, "waiting for its controller to report status"),
    "networkfunction-ready.yaml": (H, "N4 association up"),
    "networkfunction-install-failed.yaml": (F, "Ready=False (InstallFailed): helm install"),
    "networkfunction-degraded.yaml": (F, "Ready=False (Degraded): N4 association"),
    # Custom resources of other projects, as their controllers (and kstatus' tests) write them.
    "prometheus-available-reconciled.yaml": (H, ""),
    "prometheus-available-stale-generation.yaml": (
        P, "waiting for the controller to observe generation 5"),
    "prometheus-some-pods-not-ready.yaml": (
        P, "Available=Degraded (SomePodsNotReady): shard 0: pod prometheus-prometheus-1: 0/1"),
    "prometheus-no-pod-ready.yaml": (P, "Available=False (NoPodReady)"),
    "prometheus-reconcile-failed.yaml": (
        F, "Reconciled=False (ReconciliationFailed): synchronizing web config secret failed: "
           "failed to initialize web config: invalid TLS certificate: cannot specify both"),
    "servicemonitor-no-status.yaml": (H, ""),
    "helmrelease-stalled.yaml": (
        F, "Stalled=True (RetriesExceeded): Failed to install after 1 attempt(s)"),
    "mycr-generation-not-observed.yaml": (P, "waiting for the controller to observe generation 2"),
    "mycr-unknown-condition.yaml": (H, ""),
    # Aggregated APIs, by the aggregator's Available condition.
    "apiservice-available.yaml": (H, "all checks passed"),
    "apiservice-missing-endpoints.yaml": (
        P, "Available=False (MissingEndpoints): endpoints for service/cert-manager-webhook"),
    "apiservice-failed-discovery-check.yaml": (
        P, "Available=False (FailedDiscoveryCheck): failing or missing response from "
           "https://10.0.1.197:8443/apis/metrics.k8s.io/v1beta1"),
    "apiservice-health-skip.yaml": (H, "health check skipped (reconciler.dev/health: skip)"),
    # Workloads.
    "deployment-healthy.yaml": (H, ""),
    "deployment-stale-generation.yaml": (P, "observe generation 2"),
    "deployment-progressing.yaml": (P, "1 of 2 replicas updated"),
    "deployment-old-replicas.yaml": (P, "1 old replicas pending termination"),
    "deployment-unavailable.yaml": (P, "1 of 2 updated replicas available"),
    "deployment-failed-deadline.yaml": (
        F, "Progressing=False (ProgressDeadlineExceeded): ReplicaSet \"upf-exporter-7d9f8c6b5d\""),
    "deployment-paused.yaml": (H, "paused"),
    "deployment-being-deleted.yaml": (P, "being deleted (finalizers: foregroundDeletion)"),
    "statefulset-healthy.yaml": (H, ""),
    "statefulset-progressing.yaml": (P, "1 of 3 replicas ready"),
    "statefulset-rolling-update.yaml": (P, "1 of 3 replicas updated"),
    "daemonset-healthy.yaml": (H, ""),
    "daemonset-progressing.yaml": (P, "2 of 4 pods updated"),
    "daemonset-unavailable.yaml": (P, "3 of 4 pods available"),
    "replicaset-healthy.yaml": (H, ""),
    "replicaset-progressing.yaml": (P, "1 of 2 replicas available"),
    "replicaset-quota-failure.yaml": (F, "ReplicaFailure=True (FailedCreate): pods"),
    # Jobs and pods.
    "job-complete.yaml": (H, ""),
    "job-failed.yaml": (
        F, "Failed=True (BackoffLimitExceeded): Job has reached the specified backoff limit"),
    "job-running.yaml": (P, "1 active, 0 succeeded, 0 failed"),
    "job-suspended.yaml": (P, "Suspended=True (JobSuspended)"),
    "pod-running.yaml": (H, ""),
    "pod-succeeded.yaml": (H, ""),
    "pod-crashloop.yaml": (F, "container exporter waiting (CrashLoopBackOff): back-off 2m40s"),
    "pod-image-pull-backoff.yaml": (F, "container exporter waiting (ImagePullBackOff)"),
    "pod-container-creating.yaml": (P, "container exporter waiting (ContainerCreating)"),
    "pod-not-ready.yaml": (P, "Ready=False (ContainersNotReady)"),
    "pod-unschedulable.yaml": (
        P, "PodScheduled=False (Unschedulable): 0/4 nodes are available"),
    "pod-evicted.yaml": (F, "phase Failed: The node was low on resource: ephemeral-storage."),
    # Storage, networking, namespaces, CRDs.
    "pvc-bound.yaml": (H, ""),
    "pvc-pending.yaml": (P, "phase Pending"),
    "pvc-lost.yaml": (F, "claim lost its volume"),
    "service-clusterip.yaml": (H, ""),
    "service-loadbalancer-pending.yaml": (P, "waiting for a load balancer address"),
    "service-loadbalancer-ready.yaml": (H, ""),
    "namespace-active.yaml": (H, ""),
    "namespace-terminating.yaml": (P, "being deleted"),
    "crd-established.yaml": (H, ""),
    "crd-names-conflict.yaml": (F, "NamesAccepted=False (ShortNamesConflict): \"nf\" is already"),
    "crd-not-established.yaml": (P, "Established=False (Installing)"),
    # Kinds without status, and a built-in kind whose conditions are not Ready-style.
    "configmap.yaml": (H, ""),
    "clusterrole.yaml": (H, ""),
    "poddisruptionbudget.yaml": (H, ""),
}


# The wall clock the fixtures are judged at: 2 s after cr-no-status.yaml was created, days
# after servicemonitor-no-status.yaml was. Only objects without any status read it.
FIXTURE_TIME = datetime.datetime(2026, 11, 27, 10, 0, 6, tzinfo=datetime.UTC).timestamp()


def at(seconds: float):
    """A clock stopped at `seconds` (epoch), for assess(clock=...)."""
    return lambda: seconds


def load(name: str) -> dict[str, Any]:
    """One fixture, read as the API returns it: plain dicts, lists and scalars."""
    loader = ruamel_yaml.YAML(typ="safe", pure=True)
    return loader.load((TESTDATA / name).read_text(encoding="utf-8"))


def cr(**status: Any) -> dict[str, Any]:
    """A WorkloadCluster at generation 2 with the given status fields."""
    obj: dict[str, Any] = {
        "apiVersion": "telco.example.com/v1alpha1",
        "kind": "WorkloadCluster",
        "metadata": {"name": "wc", "namespace": "ran", "generation": 2},
        "spec": {"region": "r1", "kubernetesVersion": "v1.30.2"},
    }
    if status:
        obj["status"] = status
    return obj


def ready(status: str = "True", **fields: Any) -> dict[str, Any]:
    return {"type": "Ready", "status": status, **fields}


@pytest.mark.parametrize(("fixture", "status", "fragment"),
                         [(name, *expected) for name, expected in EXPECTED.items()])
def test_fixture(fixture: str, status: health.Status, fragment: str):
    """Each fixture state of each kind family gets its expected status and reason."""
    verdict = health.assess(load(fixture), clock=at(FIXTURE_TIME))
    assert verdict.status is status, verdict
    if fragment:
        assert fragment in verdict.message
    else:
        assert verdict.message == ""


def test_every_fixture_is_in_the_table():
    """No fixture file sits untested, and no table entry names a missing file."""
    assert sorted(p.name for p in TESTDATA.glob("*.yaml")) == sorted(EXPECTED)


def test_assess_does_not_modify_the_object():
    """The live object the rollout passes in comes back unchanged."""
    obj = load("pod-crashloop.yaml")
    before = copy.deepcopy(obj)
    health.assess(obj)
    assert obj == before


def test_health_is_frozen_and_status_is_a_string():
    """A verdict cannot be changed after the fact, and its status prints as the API word."""
    verdict = health.assess(load("cr-ready.yaml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.status = health.Status.FAILED  # type: ignore[misc]
    assert f"{verdict.status}" == "Healthy"


def test_deletion_wins_over_a_healthy_status():
    """An object with a deletionTimestamp is progressing whatever its status says."""
    obj = load("cr-ready.yaml")
    obj["metadata"]["deletionTimestamp"] = "2026-11-27T12:00:00Z"
    assert health.assess(obj) == health.Health(status=P, message="being deleted")


def test_namespace_terminating_without_deletion_timestamp():
    """A namespace whose phase is Terminating is still progressing."""
    obj = load("namespace-active.yaml")
    obj["status"]["phase"] = "Terminating"
    assert health.assess(obj) == health.Health(status=P, message="namespace is terminating")


def test_namespace_without_status_is_healthy():
    """A namespace the API has not yet given a phase counts as applied and healthy."""
    obj = load("namespace-active.yaml")
    del obj["status"]
    assert health.assess(obj).status is H


def test_custom_resource_without_status_waits_for_its_controller():
    """A custom resource created moments ago with no or empty status is not healthy yet: its
    controller has not reported (a real apiserver showed the next wave starting in that gap)."""
    obj = cr()
    obj["metadata"]["creationTimestamp"] = "2026-11-27T10:00:04Z"
    created = datetime.datetime(2026, 11, 27, 10, 0, 4, tzinfo=datetime.UTC).timestamp()
    obj["status"] = {}
    waiting = health.Health(status=P, message="waiting for its controller to report status")
    assert health.assess(obj, clock=at(created + 1)) == waiting
    del obj["status"]
    assert health.assess(obj, clock=at(created)) == waiting
    assert health.assess(obj, clock=at(created + health.STATUS_GRACE - 0.5)) == waiting


def test_custom_resource_without_status_is_current_after_the_grace():
    """Once STATUS_GRACE has passed since its creation, a custom resource nobody writes a
    status on (a ServiceMonitor) is healthy, as kstatus calls it Current."""
    obj = cr()
    obj["metadata"]["creationTimestamp"] = "2026-11-27T10:00:04Z"
    created = datetime.datetime(2026, 11, 27, 10, 0, 4, tzinfo=datetime.UTC).timestamp()
    assert health.assess(obj, clock=at(created + health.STATUS_GRACE)) == health.HEALTHY
    assert health.assess(obj, clock=at(created + 86400)) == health.HEALTHY


def test_a_clock_behind_the_api_server_waits_at_most_twice_the_grace():
    """A creationTimestamp ahead of our clock counts as just created only within the grace, so
    a skewed clock cannot hold a status-less object back until the health timeout."""
    obj = cr()
    obj["metadata"]["creationTimestamp"] = "2026-11-27T10:00:04Z"
    created = datetime.datetime(2026, 11, 27, 10, 0, 4, tzinfo=datetime.UTC).timestamp()
    assert health.assess(obj, clock=at(created - health.STATUS_GRACE + 1)).status is P
    assert health.assess(obj, clock=at(created - health.STATUS_GRACE - 1)).status is H


def test_custom_resource_without_status_or_creation_time_waits():
    """Without a readable creationTimestamp (which an API server always sets) nothing tells
    how long the object has gone without status: it waits, up to the health timeout."""
    obj = cr()
    waiting = health.Health(status=P, message="waiting for its controller to report status")
    assert health.assess(obj, clock=at(FIXTURE_TIME)) == waiting
    obj["metadata"]["creationTimestamp"] = "yesterday"
    assert health.assess(obj, clock=at(FIXTURE_TIME)) == waiting


def test_unquoted_creation_timestamp_is_read_too():
    """A creationTimestamp a YAML loader turned into a datetime is read like the string."""
    obj = cr()
    obj["metadata"]["creationTimestamp"] = datetime.datetime(2026, 11, 27, 10, 0, 4)
    assert health.assess(obj, clock=at(FIXTURE_TIME)).status is P
    obj["metadata"]["creationTimestamp"] = datetime.datetime(2026, 11, 20, 10, 0, 4)
    assert health.assess(obj, clock=at(FIXTURE_TIME)).status is H


def test_builtin_kind_without_status_needs_no_grace():
    """A built-in kind without status is healthy at once, even just created."""
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "p", "generation": 1,
                        "creationTimestamp": "2026-11-27T10:00:05Z"}}
    assert health.assess(pdb, clock=at(FIXTURE_TIME)) == health.HEALTHY


def test_builtin_kind_without_status_is_healthy():
    """A built-in kind with no rule and no status (a PodDisruptionBudget) is healthy."""
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "p", "generation": 1}}
    assert health.assess(pdb) == health.HEALTHY


def test_status_without_conditions_waits_for_the_generation_only():
    """A status with only observedGeneration waits for the generation, then is current."""
    assert health.assess(cr(observedGeneration=1)) == health.Health(
        status=P, message="waiting for the controller to observe generation 2")
    assert health.assess(cr(observedGeneration=2)) == health.HEALTHY


def test_missing_generation_skips_generation_checks():
    """Without metadata.generation a Ready=True condition is enough, stale or not."""
    obj = cr(observedGeneration=1, conditions=[ready(observedGeneration=1)])
    del obj["metadata"]["generation"]
    assert health.assess(obj).status is H


def test_generation_of_a_bad_type_is_ignored():
    """A generation that is not an integer (a string, a boolean) is read as absent."""
    obj = cr(observedGeneration=1, conditions=[ready()])
    obj["metadata"]["generation"] = "7"
    assert health.assess(obj).status is H
    obj["metadata"]["generation"] = True
    assert health.assess(obj).status is H


def test_conditions_that_are_not_mappings_are_skipped():
    """A condition entry that is not a mapping, or has no type, does not break assessment."""
    obj = cr(conditions=["Ready", None, 3, {"status": "True"}, ready(reason="Provisioned")])
    assert health.assess(obj).status is H


def test_conditions_that_are_not_a_list_are_ignored():
    """status.conditions of the wrong type counts as no conditions at all: current."""
    assert health.assess(cr(conditions={"Ready": "False"})) == health.HEALTHY


def test_boolean_condition_status_is_read_as_its_string():
    """An unquoted YAML `status: true` on a condition is read as "True"."""
    assert health.assess(cr(conditions=[ready(status=True)])).status is H  # type: ignore[arg-type]
    assert health.assess(cr(conditions=[ready(status=False, reason="Failed")])).status is F  # type: ignore[arg-type]


@pytest.mark.parametrize("reason", ["Failed", "Error", "Degraded", "InstallFailed",
                                    "ReconciliationFailed", "UpgradeFailed", "error"])
def test_failure_reasons_fail(reason: str):
    """Ready=False with a failure reason, in any case, fails the object."""
    verdict = health.assess(cr(conditions=[ready("False", reason=reason, message="boom")]))
    assert verdict == health.Health(status=F, message=f"Ready=False ({reason}): boom")


@pytest.mark.parametrize("reason", ["Provisioning", "DependencyNotReady", "", None])
def test_other_reasons_progress(reason: str | None):
    """Ready=False with any other reason, or none, is still progressing."""
    verdict = health.assess(cr(conditions=[ready("False", reason=reason)]))
    assert verdict.status is P
    assert verdict.message.startswith("Ready=False")


def test_stalled_false_does_not_fail():
    """A Stalled condition that is False is no failure."""
    obj = cr(conditions=[ready(), {"type": "Stalled", "status": "False", "reason": "Ok"}])
    assert health.assess(obj).status is H


def test_stalled_for_an_old_generation_does_not_fail():
    """A Stalled condition about an older generation waits for the controller instead."""
    obj = cr(conditions=[ready("False", reason="Provisioning"),
                         {"type": "Stalled", "status": "True", "observedGeneration": 1}])
    assert health.assess(obj).status is P


def test_failure_for_an_old_generation_waits():
    """A failed Ready condition at an older generation waits for the controller to see the fix."""
    obj = cr(observedGeneration=1,
             conditions=[ready("False", reason="InstallFailed", observedGeneration=1)])
    verdict = health.assess(obj)
    assert verdict == health.Health(
        status=P, message="waiting for the controller to observe generation 2")


def test_long_messages_are_folded_and_cut():
    """A long multi-line controller message is one line of at most MESSAGE_LIMIT characters."""
    text = "line one\n  line two " + "x" * 500
    verdict = health.assess(cr(conditions=[ready("False", reason="Provisioning", message=text)]))
    assert "\n" in text and "\n" not in verdict.message
    assert "line one line two" in verdict.message
    assert verdict.message.endswith("...")
    assert len(verdict.message) <= len("Ready=False (Provisioning): ") + health.MESSAGE_LIMIT


def test_unknown_custom_kind_with_other_conditions_is_current():
    """An unknown custom kind whose conditions are none of Ready, Reconciled, Available,
    Stalled or Reconciling is current, as in kstatus: nothing says to wait."""
    obj = {"apiVersion": "infra.example.org/v1", "kind": "Gadget", "metadata": {"name": "g"},
           "status": {"conditions": [{"type": "Synced", "status": "False"}]}}
    assert health.assess(obj) == health.HEALTHY


def test_unknown_builtin_kind_honours_ready():
    """An unlisted built-in kind is still judged by a Ready condition when it has one."""
    condition = {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                 "message": "PLEG is not healthy"}
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
           "status": {"conditions": [condition]}}
    assert health.assess(obj) == health.Health(
        status=P, message="Ready=False (KubeletNotReady): PLEG is not healthy")


def test_object_without_api_version_or_kind():
    """An object with no apiVersion, kind or metadata is healthy rather than an error."""
    assert health.assess({}) == health.HEALTHY


def test_deployment_without_status_waits_for_generation():
    """A Deployment the controller has not yet touched is progressing."""
    obj = load("deployment-healthy.yaml")
    del obj["status"]
    assert health.assess(obj) == health.Health(
        status=P, message="waiting for the controller to observe generation 2")


def test_deployment_replicas_default_to_one():
    """A Deployment without spec.replicas wants one updated, available replica."""
    obj = load("deployment-healthy.yaml")
    del obj["spec"]["replicas"]
    obj["status"].update(replicas=1, updatedReplicas=1, availableReplicas=0)
    assert health.assess(obj) == health.Health(
        status=P, message="0 of 1 updated replicas available")
    obj["status"]["availableReplicas"] = 1
    assert health.assess(obj) == health.HEALTHY


def test_deployment_scaled_to_zero_is_healthy():
    """A Deployment with zero replicas and no pods has nothing to wait for."""
    obj = load("deployment-healthy.yaml")
    obj["spec"]["replicas"] = 0
    obj["status"] = {"observedGeneration": 2}
    assert health.assess(obj) == health.HEALTHY


def test_deployment_counts_of_bad_type_read_as_zero():
    """Replica counts that are not integers are read as zero, not raised on."""
    obj = load("deployment-healthy.yaml")
    obj["status"]["updatedReplicas"] = "2"
    assert health.assess(obj) == health.Health(status=P, message="0 of 2 replicas updated")


def test_statefulset_partition_limits_the_update():
    """A StatefulSet with a partition is healthy once the pods above the partition are updated."""
    obj = load("statefulset-rolling-update.yaml")
    obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 2
    assert health.assess(obj) == health.HEALTHY


def test_statefulset_on_delete_does_not_wait_for_updates():
    """An OnDelete StatefulSet is healthy when its replicas are ready, updated or not."""
    obj = load("statefulset-rolling-update.yaml")
    obj["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert health.assess(obj) == health.HEALTHY


def test_daemonset_on_delete_does_not_wait_for_updates():
    """An OnDelete DaemonSet is healthy once its generation is observed."""
    obj = load("daemonset-progressing.yaml")
    obj["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert health.assess(obj) == health.HEALTHY


def test_pod_init_container_crashloop_fails():
    """A crash-looping init container fails the pod like a main container would."""
    obj = load("pod-container-creating.yaml")
    obj["status"]["initContainerStatuses"] = [
        {"name": "sysctl", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
    assert health.assess(obj) == health.Health(
        status=F, message="container sysctl waiting (CrashLoopBackOff)")


def test_pod_without_status():
    """A pod with no status yet is progressing, not an error."""
    obj = load("pod-running.yaml")
    del obj["status"]
    assert health.assess(obj) == health.Health(status=P, message="no phase yet")


def test_pod_container_statuses_of_bad_type():
    """Container statuses that are not a list, or entries that are not mappings, are skipped."""
    obj = load("pod-running.yaml")
    obj["status"]["containerStatuses"] = [None, "exporter"]
    obj["status"]["initContainerStatuses"] = {"name": "x"}
    assert health.assess(obj) == health.HEALTHY


def test_service_loadbalancer_with_hostname_is_healthy():
    """A LoadBalancer Service with a hostname ingress is healthy."""
    obj = load("service-loadbalancer-pending.yaml")
    obj["status"]["loadBalancer"] = {"ingress": [{"hostname": "lb.example.com"}]}
    assert health.assess(obj) == health.HEALTHY


def test_service_loadbalancer_empty_ingress_list_waits():
    """An empty ingress list is no address yet."""
    obj = load("service-loadbalancer-pending.yaml")
    obj["status"]["loadBalancer"] = {"ingress": []}
    assert health.assess(obj).status is P


def test_job_without_status_is_progressing():
    """A Job the controller has not started is progressing with zero counts."""
    obj = load("job-running.yaml")
    del obj["status"]
    assert health.assess(obj) == health.Health(
        status=P, message="0 active, 0 succeeded, 0 failed")


def test_crd_without_conditions_is_progressing():
    """A CRD with no conditions yet is waiting to be Established."""
    obj = load("crd-established.yaml")
    del obj["status"]
    assert health.assess(obj) == health.Health(status=P, message="not yet Established")


def test_dispatch_ignores_the_version():
    """A family is chosen by API group and kind, so another version of the group is judged alike."""
    obj = load("job-failed.yaml")
    obj["apiVersion"] = "batch/v2"
    assert health.assess(obj).status is F


def test_same_kind_in_another_group_is_not_confused():
    """A custom Deployment kind in a custom group is judged by its conditions, not as apps/v1."""
    obj = {"apiVersion": "telco.example.com/v1alpha1", "kind": "Deployment",
           "metadata": {"name": "d", "generation": 1},
           "status": {"conditions": [ready()], "observedGeneration": 1}}
    assert health.assess(obj) == health.HEALTHY


# --- kstatus' conventional conditions -------------------------------------------------------


def condition(kind: str, status: str = "True", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "status": status, **fields}


def test_available_and_reconciled_stand_in_for_ready():
    """Without Ready, Available=True and Reconciled=True at the current generation are healthy."""
    obj = cr(conditions=[condition("Available", observedGeneration=2),
                         condition("Reconciled", observedGeneration=2)])
    assert health.assess(obj) == health.HEALTHY


def test_only_available_true_for_an_old_generation_waits():
    """An Available=True condition about an older generation waits, with no top-level
    observedGeneration to tell."""
    obj = cr(conditions=[condition("Available", observedGeneration=1)])
    assert health.assess(obj) == health.Health(
        status=P, message="waiting for the controller to observe generation 2")


def test_one_stale_conventional_condition_is_enough_to_wait():
    """Reconciled for the current generation does not make a stale Available current."""
    obj = cr(conditions=[condition("Available", observedGeneration=1),
                         condition("Reconciled", observedGeneration=2)])
    assert health.assess(obj).status is P


def test_a_failed_reconcile_is_named_before_the_unavailability():
    """Reconciled=False with a failure reason fails the object and is the message given."""
    obj = cr(conditions=[condition("Available", "False", reason="StatefulSetNotFound"),
                         condition("Reconciled", "False", reason="ReconciliationFailed",
                                   message="boom")])
    assert health.assess(obj) == health.Health(
        status=F, message="Reconciled=False (ReconciliationFailed): boom")


def test_ready_wins_over_the_conventional_conditions():
    """When a Ready condition exists it alone decides; Available is not consulted."""
    obj = cr(conditions=[ready(), condition("Available", "False", reason="NoPodReady")])
    assert health.assess(obj) == health.HEALTHY
    obj = cr(conditions=[ready("False", reason="Provisioning"), condition("Available")])
    assert health.assess(obj).status is P


def test_stalled_wins_over_available():
    """Stalled=True fails the object even when Available=True."""
    obj = cr(conditions=[condition("Available"), condition("Stalled", reason="Broken")])
    assert health.assess(obj) == health.Health(status=F, message="Stalled=True (Broken)")


def test_reconciling_wins_over_available():
    """Reconciling=True is progressing even when Available=True."""
    obj = cr(conditions=[condition("Available"), condition("Reconciling", reason="Scaling")])
    assert health.assess(obj) == health.Health(status=P, message="Reconciling=True (Scaling)")


def test_apiservice_without_conditions_waits():
    """An APIService the aggregator has not checked yet is progressing."""
    obj = load("apiservice-available.yaml")
    del obj["status"]
    assert health.assess(obj) == health.Health(status=P, message="no Available condition yet")


@pytest.mark.parametrize("reason", ["ServiceNotFound", "MissingEndpoints", "EndpointsNotFound",
                                    "ServicePortError", "FailedDiscoveryCheck"])
def test_apiservice_unavailable_never_fails(reason: str):
    """Every reason the aggregator gives for Available=False waits for the backend, even one
    containing "Failed": only the health timeout ends it."""
    obj = load("apiservice-available.yaml")
    obj["status"]["conditions"] = [condition("Available", "False", reason=reason)]
    assert health.assess(obj) == health.Health(status=P, message=f"Available=False ({reason})")


# --- reconciler.dev/health: skip ------------------------------------------------------------


def skipped(obj: dict[str, Any], value: str = "skip") -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[contract.ANNOTATION_HEALTH] = value
    return obj


def test_skip_annotation_key_comes_from_the_contract():
    """The annotation is reconciler.dev/health, spelled once in contract.py."""
    assert contract.ANNOTATION_HEALTH == "reconciler.dev/health"


@pytest.mark.parametrize("fixture", ["cr-failed.yaml", "pod-crashloop.yaml", "cr-no-status.yaml",
                                     "deployment-progressing.yaml"])
def test_skip_annotation_makes_any_object_healthy(fixture: str):
    """A failed, crashing, status-less or rolling object marked skip is healthy at once."""
    verdict = health.assess(skipped(load(fixture)), clock=at(FIXTURE_TIME))
    assert verdict == health.Health(
        status=H, message="health check skipped (reconciler.dev/health: skip)")


def test_skip_annotation_wins_over_deletion():
    """An object marked skip is not waited for even while it is being deleted."""
    obj = skipped(load("deployment-being-deleted.yaml"))
    assert health.assess(obj).status is H


@pytest.mark.parametrize("value", ["Skip", " SKIP "])
def test_skip_annotation_ignores_case_and_spaces(value: str):
    """`Skip` and ` SKIP ` mean skip too."""
    assert health.assess(skipped(load("cr-failed.yaml"), value)).status is H


@pytest.mark.parametrize("value", ["true", "skipped", "", "no"])
def test_other_annotation_values_do_not_skip(value: str):
    """Any other value of the annotation leaves the object judged by its rule."""
    assert health.assess(skipped(load("cr-failed.yaml"), value)).status is F


def test_skip_annotation_of_a_bad_type_is_ignored():
    """Annotations that are not a mapping, or a value that is not a string, skip nothing."""
    obj = load("cr-failed.yaml")
    obj["metadata"]["annotations"] = ["reconciler.dev/health=skip"]
    assert health.assess(obj).status is F
    obj["metadata"]["annotations"] = {contract.ANNOTATION_HEALTH: True}
    assert health.assess(obj).status is F


# --- adding a rule ---------------------------------------------------------------------------


@pytest.fixture
def rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(health, "_FAMILIES", dict(health._FAMILIES))


def gateway(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "ran", "generation": 3},
            "status": {"conditions": list(conditions)}}


@pytest.mark.usefixtures("rules")
def test_a_registered_rule_judges_its_kind_in_every_version():
    """register(group, kind, rule) sends objects of that group and kind, any version, to rule."""
    verdict = health.Health(status=P, message="judged by the test rule")
    health.register("gateway.networking.k8s.io", "Gateway", lambda obj: verdict)
    assert health.assess(gateway()) == verdict
    other_version = gateway()
    other_version["apiVersion"] = "gateway.networking.k8s.io/v1beta1"
    assert health.assess(other_version) == verdict


@pytest.mark.usefixtures("rules")
def test_require_conditions_waits_for_every_condition_at_the_generation():
    """A require_conditions() rule is healthy only when all its conditions are True for the
    current generation, and fails on a failure reason."""
    health.register("gateway.networking.k8s.io", "Gateway",
                    health.require_conditions("Accepted", "Programmed"))
    accepted = condition("Accepted", observedGeneration=3)
    assert health.assess(gateway(accepted)) == health.Health(
        status=P, message="no Programmed condition yet")
    programmed = condition("Programmed", "False", reason="Pending", observedGeneration=3)
    assert health.assess(gateway(accepted, programmed)) == health.Health(
        status=P, message="Programmed=False (Pending)")
    stale = condition("Programmed", observedGeneration=2)
    assert health.assess(gateway(accepted, stale)) == health.Health(
        status=P, message="waiting for the controller to observe generation 3")
    failed = condition("Programmed", "False", reason="AddressNotAssignedFailure",
                       observedGeneration=3)
    assert health.assess(gateway(accepted, failed)).status is F
    done = condition("Programmed", observedGeneration=3, message="address assigned")
    assert health.assess(gateway(accepted, done)) == health.Health(
        status=H, message="address assigned")


@pytest.mark.usefixtures("rules")
def test_require_conditions_still_honours_stalled_and_the_generation():
    """kstatus' generic checks come before the rule's own conditions."""
    health.register("gateway.networking.k8s.io", "Gateway",
                    health.require_conditions("Programmed"))
    obj = gateway(condition("Programmed"), condition("Stalled", reason="Invalid"))
    assert health.assess(obj).status is F
    obj = gateway(condition("Programmed"))
    obj["status"]["observedGeneration"] = 2
    assert health.assess(obj).status is P


@pytest.mark.usefixtures("rules")
def test_a_kind_with_a_rule_is_not_registered_twice():
    """Registering a kind that has a rule is refused, naming it, unless replace=True."""
    with pytest.raises(ValueError, match="apps/Deployment already has a health rule; "
                                         "pass replace=True"):
        health.register("apps", "Deployment", health.require_conditions("Available"))
    health.register("apps", "Deployment", health.require_conditions("Available"), replace=True)
    assert health.assess(load("deployment-progressing.yaml")).status is H


@pytest.mark.usefixtures("rules")
def test_register_refuses_an_api_version_for_a_group():
    """A group given with its version ("apps/v1") is refused with the right spelling."""
    with pytest.raises(ValueError, match='"apps", not "apps/v1"'):
        health.register("apps/v1", "Gadget", health.require_conditions("Ready"))
    with pytest.raises(ValueError, match="needs a kind"):
        health.register("example.org", "", health.require_conditions("Ready"))
    with pytest.raises(TypeError, match="Gadget is not callable"):
        health.register("example.org", "Gadget", "Ready")  # type: ignore[arg-type]


def test_require_conditions_needs_a_condition():
    """require_conditions() without a condition type is a mistake, said at once."""
    with pytest.raises(ValueError, match="at least one condition type"):
        health.require_conditions()

"""Health assessment: one verdict per live object, per kind family, from kubectl-shaped fixtures."""

from __future__ import annotations

import copy
import dataclasses
import pathlib
from typing import Any

import pytest
from ruamel import yaml as ruamel_yaml

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
    "cr-no-ready-condition.yaml": (P, "no Ready condition yet"),
    "cr-no-status.yaml": (P, "waiting for its controller to report status"),
    "networkfunction-ready.yaml": (H, "N4 association up"),
    "networkfunction-install-failed.yaml": (F, "Ready=False (InstallFailed): helm install"),
    "networkfunction-degraded.yaml": (F, "Ready=False (Degraded): N4 association"),
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
    verdict = health.assess(load(fixture))
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
    """A custom resource with no or empty status is not healthy: its controller has not
    reported yet (a real apiserver showed the next wave starting in that gap)."""
    obj = cr()
    obj["status"] = {}
    assert health.assess(obj).status is P
    del obj["status"]
    assert health.assess(obj).status is P


def test_builtin_kind_without_status_is_healthy():
    """A built-in kind with no rule and no status (a PodDisruptionBudget) is healthy."""
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "p", "generation": 1}}
    assert health.assess(pdb) == health.HEALTHY


def test_status_without_conditions_waits_for_generation_and_ready():
    """A status with only observedGeneration waits: first for the generation, then for Ready."""
    assert health.assess(cr(observedGeneration=1)).status is P
    caught_up = health.assess(cr(observedGeneration=2))
    assert caught_up.status is P and caught_up.message == "no Ready condition yet"


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
    """status.conditions of the wrong type counts as no conditions at all: no Ready yet."""
    assert health.assess(cr(conditions={"Ready": "True"})).status is P


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


def test_unknown_custom_kind_with_conditions_needs_ready():
    """An unknown custom kind whose conditions lack Ready is not yet healthy."""
    obj = {"apiVersion": "infra.example.org/v1", "kind": "Gadget", "metadata": {"name": "g"},
           "status": {"conditions": [{"type": "Synced", "status": "True"}]}}
    assert health.assess(obj) == health.Health(status=P, message="no Ready condition yet")


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

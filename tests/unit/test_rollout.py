"""Wave planning, health gates, prune and drift take-back, against our own Cluster port."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import contract, errors
from reconciler.repo import documents
from reconciler.site import abort, rollout, state
from tests import fakes

SITE = "edge-a"


def manifest(kind: str, name: str, *, wave: int | None = None, api_version: str = "v1",
             namespace: str | None = "ran", **extra: Any) -> documents.Manifest:
    annotations = {"reconciler.dev/intent-id": "i"}
    if wave is not None:
        annotations["reconciler.dev/wave"] = str(wave)
    metadata: dict[str, Any] = {"name": name, "annotations": annotations}
    if namespace:
        metadata["namespace"] = namespace
    return documents.Manifest(location=documents.Location(file=f"{name}.yaml", document=0, line=1),
                           body={"apiVersion": api_version, "kind": kind, "metadata": metadata,
                                 **extra})


def run(target: fakes.FakeCluster, manifests: list[documents.Manifest], **kwargs: Any):
    return rollout.run(target=target, site=SITE, crds=(), manifests=manifests,
                       abort=kwargs.pop("signal", abort.Abort()), on_progress=lambda _: None,
                       **kwargs)


def test_waves_sort_by_wave_then_kind_then_name():
    """Lower waves first; in a wave Namespaces, then config, then workloads, then CRs."""
    items = [manifest("NetworkFunction", "b", wave=20, api_version="x.io/v1"),
             manifest("ConfigMap", "z"), manifest("Deployment", "d", api_version="apps/v1"),
             manifest("Namespace", "ran", namespace=None), manifest("ConfigMap", "a"),
             manifest("NetworkFunction", "a", wave=20, api_version="x.io/v1"),
             manifest("Secret", "s", wave=-5)]
    planned = [(wave, [m.describe() for m in group]) for wave, group in rollout.plan_waves(items)]
    assert planned == [
        (-5, ["Secret/ran/s"]),
        (0, ["Namespace/ran", "ConfigMap/ran/a", "ConfigMap/ran/z", "Deployment/ran/d"]),
        (20, ["NetworkFunction/ran/a", "NetworkFunction/ran/b"]),
    ]


def test_an_object_defined_twice_is_applied_as_its_last_definition(caplog):
    """As `kubectl apply` of the same files leaves it: the later file wins, every pass the
    same one (applying both raced, and each pass re-applied the loser)."""
    first = manifest("ConfigMap", "c", data={"from": "first"})
    second = documents.Manifest(
        location=documents.Location(file="later.yaml", document=2, line=7),
        body={**first.body, "data": {"from": "second"}})
    other = manifest("ConfigMap", "d")
    planned = rollout.plan_waves([first, other, second])
    assert [(m.describe(), m.body.get("data")) for _, group in planned for m in group] == [
        ("ConfigMap/ran/c", {"from": "second"}), ("ConfigMap/ran/d", None)]
    assert "ConfigMap/ran/c is defined twice: later.yaml" in caplog.text
    target = fakes.FakeCluster()
    assert run(target, [first, other, second]).phase is state.Outcome.SUCCEEDED
    assert target.applied().count("ConfigMap/ran/c") == 1


def test_wave_waits_for_health_and_times_out_naming_the_object():
    """A custom resource that never turns Ready fails its wave at the timeout, by name."""
    target = fakes.FakeCluster()
    target.kinds[("x.io/v1", "Widget")] = True
    target.not_ready.add("Widget/ran/w")
    now = [0.0]

    def clock() -> float:
        now[0] += 0.3
        return now[0]

    result = run(target, [manifest("Widget", "w", api_version="x.io/v1", spec={"a": 1}),
                          manifest("ConfigMap", "later", wave=5)],
                 health_timeout=1.0, poll_interval=0.0, clock=clock)
    assert result.phase is state.Outcome.FAILED
    assert "wave 0 not healthy after 1s: Widget/ran/w" in result.message
    assert [w.phase.value for w in result.waves] == ["failed", "pending"]
    assert "ConfigMap/ran/later" not in target.applied()


def test_abort_during_a_health_wait_ends_the_rollout_aborted():
    """An abort set while a wave waits ends the rollout Aborted; later waves never start."""
    target = fakes.FakeCluster()
    target.kinds[("x.io/v1", "Widget")] = True
    target.not_ready.add("Widget/ran/w")
    signal = abort.Abort()
    polls = [0]
    real_list = target.list

    def counting_list(**kwargs: Any) -> list[dict[str, Any]]:
        polls[0] += 1
        if polls[0] == 3:
            signal.set("superseded by b", superseded_by="b")
        return real_list(**kwargs)

    target.list = counting_list  # type: ignore[method-assign]
    result = run(target, [manifest("Widget", "w", api_version="x.io/v1", spec={"a": 1}),
                          manifest("ConfigMap", "later", wave=5)],
                 signal=signal, poll_interval=0.01)
    assert result.phase is state.Outcome.ABORTED
    assert "ConfigMap/ran/later" not in target.applied()


def test_fields_taken_by_an_imperative_edit_are_taken_back_with_force():
    """A conflict with an Update manager (kubectl edit) is drift: re-applied with force."""
    target = fakes.FakeCluster()
    forced: list[bool] = []
    real_apply = target.apply

    def apply(obj: dict[str, Any], *, force: bool = False, dry_run: bool = False,
              field_manager: str = ""):
        forced.append(force)
        if not force:
            raise errors.ConflictError('Apply failed with 1 conflict: conflict with '
                                       '"kubectl-edit": .data.k', status=409,
                                       managers=("kubectl-edit",))
        return real_apply(obj, force=force, field_manager=field_manager)

    target.apply = apply  # type: ignore[method-assign]
    target.get = lambda ref: {"metadata": {  # type: ignore[method-assign]
        "labels": {contract.LABEL_SITE: SITE},  # the site's object, edited out of band
        "managedFields": [{"manager": "kubectl-edit", "operation": "Update"}]}}
    result = run(target, [manifest("ConfigMap", "c", data={"k": "v"})])
    assert result.phase is state.Outcome.SUCCEEDED
    assert forced == [False, True]


def test_a_conflict_with_another_applier_stays_an_error():
    """A conflict with an Apply manager is not drift: the apply fails, unforced."""
    target = fakes.FakeCluster()
    target.fail["ConfigMap/ran/c"] = errors.ConflictError(
        'Apply failed with 1 conflict: conflict with "field-engineer": .data.k', status=409,
        managers=("field-engineer",))
    target.get = lambda ref: {"metadata": {  # type: ignore[method-assign]
        "labels": {contract.LABEL_SITE: SITE},  # the site's object, applied to by another
        "managedFields": [{"manager": "field-engineer", "operation": "Apply"}]}}
    result = run(target, [manifest("ConfigMap", "c", data={"k": "v"})])
    assert result.phase is state.Outcome.FAILED
    assert "field-engineer" in result.message




def test_an_unavailable_group_fails_its_objects_alone_and_the_wave_goes_on(
        monkeypatch: pytest.MonkeyPatch):
    """Objects of a group version the cluster cannot serve fail, named with the server's
    reason; the rest of their wave (later kind groups too) is applied; later waves are not."""
    monkeypatch.setattr(rollout, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    target = fakes.FakeCluster()
    target.kinds[("x.io/v1", "Widget")] = True
    target.unavailable["apps/v1"] = "HTTP 503: service unavailable"
    result = run(target, [manifest("ConfigMap", "c"),
                          manifest("Deployment", "d", api_version="apps/v1"),
                          manifest("Widget", "w", api_version="x.io/v1", spec={"a": 1}),
                          manifest("ConfigMap", "later", wave=5)])
    assert result.phase is state.Outcome.FAILED
    assert result.message.startswith("wave 0: Deployment/ran/d apply failed: ")
    assert "lists apps/v1 but cannot serve it now: HTTP 503: service unavailable" in result.message
    assert set(target.applied()) == {"ConfigMap/ran/c", "Widget/ran/w"}
    assert sorted(str(r.ref) for r in result.results) == ["ConfigMap/ran/c", "Widget/ran/w"]
    assert [(str(f.ref), f.error.split(":")[0]) for f in result.failures] == [
        ("Deployment/ran/d", "Deployment/ran/d apply failed")]
    assert [w.phase.value for w in result.waves] == ["failed", "pending"]


def test_any_other_failure_still_stops_the_wave_at_its_kind_group():
    """A failure that is not an unavailable group stops the wave after its kind group."""
    target = fakes.FakeCluster()
    target.kinds[("x.io/v1", "Widget")] = True
    target.fail["ConfigMap/ran/c"] = errors.ApplyError(
        'ConfigMap/ran/c apply failed: ConfigMap "c" is invalid', status=422)
    result = run(target, [manifest("ConfigMap", "c"), manifest("ConfigMap", "b"),
                          manifest("Widget", "w", api_version="x.io/v1", spec={"a": 1})])
    assert result.phase is state.Outcome.FAILED
    assert result.message == 'wave 0: ConfigMap/ran/c apply failed: ConfigMap "c" is invalid'
    assert "Widget/ran/w" not in target.applied()
    assert [str(r.ref) for r in result.results] == ["ConfigMap/ran/b"]
    assert [(str(f.ref), f.error) for f in result.failures] == [
        ("ConfigMap/ran/c", 'ConfigMap/ran/c apply failed: ConfigMap "c" is invalid')]


def test_successes_and_failures_of_one_group_are_both_reported():
    """An IngressClass applied next to a failing PodDisruptionBudget (one kind group) is a
    result; the budget is a failure with its error."""
    target = fakes.FakeCluster()
    target.kinds[("networking.k8s.io/v1", "IngressClass")] = False
    target.kinds[("policy/v1", "PodDisruptionBudget")] = True
    target.fail["PodDisruptionBudget/ran/upf"] = errors.ApplyError(
        'PodDisruptionBudget/ran/upf apply failed: spec.minAvailable: Invalid value', status=422)
    result = run(target, [manifest("IngressClass", "nginx", api_version="networking.k8s.io/v1",
                                   namespace=None),
                          manifest("PodDisruptionBudget", "upf", api_version="policy/v1")])
    assert result.phase is state.Outcome.FAILED
    assert [(str(r.ref), r.change.value) for r in result.results] == [
        ("IngressClass/nginx", "created")]
    assert [(str(f.ref), f.error) for f in result.failures] == [
        ("PodDisruptionBudget/ran/upf",
         "PodDisruptionBudget/ran/upf apply failed: spec.minAvailable: Invalid value")]

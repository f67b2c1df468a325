"""Kubernetes Events for a site: which happenings become which Event, and a recurring one
counted into one Event, written at most once per interval, through our Cluster port."""

from __future__ import annotations

import datetime
from pathlib import Path

from reconciler import cluster, contract, errors
from reconciler.repo import documents
from reconciler.site import events, fence, observe, state
from tests import fakes, gitrepo, sites

SITE = sites.SITE
NAMESPACE = "reconciler-system"


def recorder(target: fakes.FakeCluster, now: list[float]) -> events.Recorder:
    return events.Recorder(target=target, regarding=events.state_object(NAMESPACE),
                           instance="pod-1", patch_every=60.0, clock=lambda: now[0],
                           wall=lambda: datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))


def test_happenings_become_events_with_their_reasons() -> None:
    """Accepted and Succeeded are Normal; Refused, Dropped, Aborted and Failed Warnings;
    a drift pass and a pass that drops nothing make none."""
    manifest = documents.Manifest(
        location=documents.Location(file="sites/x/a.yaml", document=0, line=3),
        body={"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "a", "namespace": "n"}})
    drop = fence.Drop(manifest=manifest, carried="old", reason="stale")
    cases = [
        (observe.Accepted(SITE, "b", 2, "a" * 40, "a"), "Normal", "Accepted",
         "accepted intent b (sequence 2) at commit aaaaaaaaaaaa, superseding a"),
        (observe.Refused(SITE, "z", "c", "sequence 1 is not above 2"), "Warning", "Refused",
         "refused intent z: sequence 1 is not above 2"),
        (observe.Dropped(SITE, "b", (drop,)), "Warning", "Dropped",
         "1 manifest(s) dropped, not of intent b (their objects are held): "
         "sites/x/a.yaml:3 ConfigMap/n/a (carries old)"),
        (observe.RolloutEnded(SITE, "a", "c", state.Outcome.ABORTED, "", drift=False,
                              superseded_by="b"), "Warning", "Aborted",
         "rollout of intent a aborted: superseded by b"),
        (observe.RolloutEnded(SITE, "b", "c", state.Outcome.SUCCEEDED, "", drift=False),
         "Normal", "Succeeded", "intent b rolled out"),
        (observe.PassEnded(SITE, "failed", "cannot reach git", stage="fetch"), "Warning",
         "Failed", "fetch failed: cannot reach git"),
    ]
    for happening, kind, reason, message in cases:
        assert events.note_of(happening) == events.Note(SITE, kind, reason, message)
    assert events.note_of(observe.Dropped(SITE, "b", ())) is None
    assert events.note_of(observe.RolloutEnded(SITE, "b", "c", state.Outcome.SUCCEEDED, "",
                                               drift=True)) is None
    assert events.note_of(observe.PassEnded(SITE, "ok", "")) is None


def test_an_event_regards_the_state_object_and_carries_the_site_label() -> None:
    """The Event regards ConfigMap reconciler-state-<site> in its namespace, labelled with
    the site, named after it, with the replica as the reporting instance."""
    target, now = fakes.FakeCluster(), [0.0]
    recorder(target, now).record(events.Note(SITE, "Normal", "Accepted", "accepted intent b"))
    [event] = target.events.values()
    assert event.regarding == cluster.ObjectRef("v1", "ConfigMap", NAMESPACE,
                                                f"reconciler-state-{SITE}")
    assert event.namespace == NAMESPACE
    assert event.name.startswith(f"reconciler-state-{SITE}.")
    assert event.labels == {contract.LABEL_SITE: SITE}
    assert event.message == f"site {SITE}: accepted intent b"
    assert (event.count, event.instance, event.first) == (1, "pod-1", "2026-01-01T00:00:00Z")


def test_a_recurring_event_is_counted_not_repeated() -> None:
    """The same note again within the interval adds to the count without a write; after it,
    one patch carries the count; a flush writes what is left."""
    target, now = fakes.FakeCluster(), [0.0]
    rec = recorder(target, now)
    note = events.Note(SITE, "Warning", "Failed", "fetch failed: cannot reach git")
    for _ in range(5):
        rec.record(note)
    assert target.event_writes == [("create", target.event_writes[0][1])]
    now[0] = 61.0
    rec.record(note)
    assert [verb for verb, _ in target.event_writes] == ["create", "patch"]
    [event] = target.events.values()
    assert event.count == 6
    rec.record(note)
    rec.flush(due_only=True)  # not due yet: nothing written
    assert len(target.event_writes) == 2
    rec.flush(due_only=False)
    assert next(iter(target.events.values())).count == 7


def test_the_namespace_regarding_lives_in_default() -> None:
    """With the file store an Event regards the reconciler's Namespace, and, that being
    cluster-scoped, is recorded in `default`."""
    ref, namespace = events.namespace_object(NAMESPACE)(SITE)
    assert (ref, namespace) == (cluster.ObjectRef("v1", "Namespace", None, NAMESPACE),
                                "default")


def test_a_cluster_that_refuses_events_never_stops_the_recorder() -> None:
    """A failed write is logged and skipped; the next one goes through."""
    target, now = fakes.FakeCluster(), [0.0]
    rec = recorder(target, now)
    target.fail["events"] = errors.ForbiddenError("events is forbidden", verbs=("create",),
                                                   group="", resource="events")
    rec.record(events.Note(SITE, "Normal", "Accepted", "one"))
    del target.fail["events"]
    rec.record(events.Note(SITE, "Normal", "Accepted", "two"))
    assert [e.message for e in target.events.values()] == [f"site {SITE}: two"]


def test_a_sync_records_accepted_and_succeeded(tmp_path: Path,
                                               remote: gitrepo.GitRemote) -> None:
    """A real pass through the recorder's thread: Accepted then Succeeded, once each."""
    env = sites.Env(tmp_path, remote)
    rec = events.Recorder(target=env.cluster, regarding=events.state_object(NAMESPACE)).start()
    assert env.sync(observer=rec).ok
    rec.stop(timeout=5.0)
    reasons = [e.reason for e in env.cluster.events.values()]
    assert reasons == ["Accepted", "Succeeded"]

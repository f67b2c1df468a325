"""Jobs: one that finished under the intent in force is not run again after its TTL; an
immutable field that changes is replaced with reconciler.dev/replace, else named."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import cluster, errors
from reconciler.site import abort, report, state
from tests import gitrepo, sites

JOB = cluster.ObjectRef("batch/v1", "Job", "sfo-ran", "sfo-migrate")
JOB_FILE = "sites/edge-sfo-01/manifests/40-job.yaml"


def job_manifest(*, intent_id: str = "sfo-baseline-1", ttl: bool = True,
                 image: str = "migrate:1.0", replace: bool = False) -> str:
    return f"""\
apiVersion: batch/v1
kind: Job
metadata:
  name: sfo-migrate
  namespace: sfo-ran
  annotations:
    reconciler.dev/intent-id: {intent_id}
    reconciler.dev/wave: "30"
{"    reconciler.dev/replace: enabled" if replace else ""}
spec:
{"  ttlSecondsAfterFinished: 60" if ttl else ""}
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: registry.example.com/{image}
"""


@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote) -> sites.Env:
    return sites.Env(tmp_path, remote)


def with_job(remote: gitrepo.GitRemote, *, ttl: bool = True) -> None:
    remote.write(JOB_FILE, job_manifest(ttl=ttl))
    remote.commit_and_push("A migration Job")


def test_job_deleted_by_its_ttl_is_not_run_again(env: sites.Env):
    """A Job that ran under the intent in force and was deleted by its TTL is not
    recreated: it is reported unchanged, with a note, and its wave does not wait for it."""
    with_job(env.remote)
    first = env.sync()
    assert first.ok, first.message
    assert str(JOB) in env.cluster.applied()
    del env.cluster.objects[JOB]  # the TTL controller deletes the finished Job
    applies = len(env.cluster.applied())
    again = env.sync()
    assert again.ok, again.message
    assert len(env.cluster.applied()) == applies
    assert JOB not in env.cluster.objects
    (job,) = [r for r in again.results if r.ref == JOB]
    assert job.change is cluster.Change.UNCHANGED
    assert job.note == ("completed under intent sfo-baseline-1 and deleted after its TTL; "
                        "not run again")
    assert (f"  {JOB}  unchanged: completed under intent sfo-baseline-1 and deleted after "
            "its TTL; not run again") in report.sync_text(again).splitlines()
    recorded = env.store.load()
    assert JOB.inventory_id in {e.id for e in recorded.inventory}  # not pruned
    assert recorded.rollout is not None and recorded.rollout.phase is state.Outcome.SUCCEEDED


def test_new_intent_runs_the_job_again(env: sites.Env):
    """A new intent that still carries the Job is a new request: the Job runs again."""
    with_job(env.remote)
    assert env.sync().ok
    del env.cluster.objects[JOB]
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-upf-2-4", sequence=2)
    env.remote.commit_and_push("Upgrade the UPF\n\nIntent-Id: sfo-upf-2-4")
    result = env.sync()
    assert result.ok, result.message
    (job,) = [r for r in result.results if r.ref == JOB]
    assert job.change is cluster.Change.CREATED and job.note == ""
    assert JOB in env.cluster.objects


def test_job_without_ttl_is_recreated_when_deleted(env: sites.Env):
    """Without ttlSecondsAfterFinished nothing deletes the Job on its own: a deleted one is
    drift, and is recreated."""
    with_job(env.remote, ttl=False)
    assert env.sync().ok
    del env.cluster.objects[JOB]
    result = env.sync()
    assert result.ok, result.message
    (job,) = [r for r in result.results if r.ref == JOB]
    assert job.change is cluster.Change.CREATED
    assert JOB in env.cluster.objects


NEW_ID = "sfo-upf-2-4"


def new_intent_with_new_template(remote: gitrepo.GitRemote, *, replace: bool) -> None:
    """A new intent whose Job runs another image: a change of its immutable spec.template."""
    gitrepo.restamp(remote, site=sites.SITE, new_id=NEW_ID, sequence=2)
    remote.write(JOB_FILE, job_manifest(intent_id=NEW_ID, image="migrate:2.0",
                                        replace=replace))
    remote.commit_and_push(f"Migrate again\n\nIntent-Id: {NEW_ID}")


def test_immutable_change_without_the_annotation_names_the_field_and_the_annotation(
        env: sites.Env):
    """A Job whose spec.template changes fails without reconciler.dev/replace: the error
    names the object, the immutable field and the annotation to set; nothing is deleted."""
    with_job(env.remote)
    assert env.sync().ok
    new_intent_with_new_template(env.remote, replace=False)
    result = env.sync()
    assert not result.ok
    (failure,) = result.failures
    assert failure.ref == JOB
    assert failure.error == (
        "Job/sfo-ran/sfo-migrate apply failed: spec.template is immutable; set "
        "reconciler.dev/replace: enabled on the manifest to delete and recreate it")
    assert failure.error in result.message
    assert env.cluster.deletes == []
    image = env.cluster.objects[JOB]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/migrate:1.0"


def test_immutable_change_with_the_annotation_deletes_and_recreates(env: sites.Env):
    """With reconciler.dev/replace: enabled the Job is deleted (foreground) and applied
    again: reported configured, with a note naming the immutable field."""
    with_job(env.remote)
    assert env.sync().ok
    new_intent_with_new_template(env.remote, replace=True)
    result = env.sync()
    assert result.ok, result.message
    (job,) = [r for r in result.results if r.ref == JOB]
    assert job.change is cluster.Change.CONFIGURED
    assert job.note == "replaced: spec.template is immutable"
    assert env.cluster.deletes == [(str(JOB), True)]
    image = env.cluster.objects[JOB]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/migrate:2.0"
    calls = [c for c in env.cluster.calls if c[1] == str(JOB) and c[0] != "get"]
    assert calls[-3:] == [("apply", str(JOB)), ("delete", str(JOB)), ("apply", str(JOB))]


def test_immutable_fields_come_from_the_status_causes():
    """Only FieldValueInvalid causes ending `field is immutable` name an immutable field."""
    causes = (
        errors.Cause(type="FieldValueInvalid", field="spec.selector",
                     message='Invalid value: {"matchLabels":{"app":"b"}}: field is immutable'),
        errors.Cause(type="FieldValueRequired", field="spec.x", message="Required value"),
        errors.Cause(type="FieldValueInvalid", field="spec.y", message="Invalid value: 3: bad"),
        errors.Cause(type="FieldValueInvalid", field="spec.selector",
                     message="Invalid value: {}: field is immutable"),
    )
    assert errors.immutable_fields(causes) == ("spec.selector",)
    assert errors.immutable_fields(()) == ()


def test_waiting_for_a_replaced_object_to_go_ends_on_abort(env: sites.Env):
    """While a replaced object is still being deleted (its pods going first), the wait ends
    at once on abort, and nothing is applied after it."""
    with_job(env.remote)
    assert env.sync().ok
    new_intent_with_new_template(env.remote, replace=True)
    signal = abort.Abort()

    def delete(ref: cluster.ObjectRef, *, foreground: bool = False) -> bool:
        env.cluster.calls.append(("delete", str(ref)))
        signal.set("superseded by sfo-next", superseded_by="sfo-next")
        return True  # accepted; the object stays, being deleted

    env.cluster.delete = delete  # type: ignore[method-assign]
    runs = env.cluster.applied().count(str(JOB))
    result = env.sync(abort=signal)
    assert result.phase is state.Outcome.ABORTED
    assert env.cluster.applied().count(str(JOB)) == runs + 1  # the refused one, none after
    assert JOB in env.cluster.objects

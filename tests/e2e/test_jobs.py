"""Jobs end to end: a Job that finished under the intent in force is not run again after
its TTL deleted it; a new intent runs it again. A Job whose spec.template (immutable)
changes is replaced with reconciler.dev/replace: enabled, and named without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import cluster
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl, kubectl_run

pytestmark = pytest.mark.e2e

JOB_FILE = f"sites/{SITE}/manifests/40-job.yaml"
INTENT_FILE = f"sites/{SITE}/intent.yaml"
JOB = cluster.ObjectRef("batch/v1", "Job", "sfo-ran", "sfo-migrate")


def job_manifest(*, intent_id: str = "sfo-baseline-1", image: str = "migrate:1.0",
                 replace: bool = False) -> str:
    # No kubelet runs on the test clusters, so the Job never completes: its health is not
    # waited for. A Job the rollout did wait for would hold its wave until healthTimeout.
    return f"""\
apiVersion: batch/v1
kind: Job
metadata:
  name: sfo-migrate
  namespace: sfo-ran
  annotations:
    reconciler.dev/intent-id: {intent_id}
    reconciler.dev/wave: "30"
    reconciler.dev/health: skip
{"    reconciler.dev/replace: enabled" if replace else ""}
spec:
  ttlSecondsAfterFinished: 3600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: registry.example.com/{image}
"""


def with_job(remote: gitrepo.GitRemote) -> None:
    remote.write(JOB_FILE, job_manifest())
    # A wave that waited for the deleted Job would time out: in 20s, not the default 10m.
    remote.write(INTENT_FILE, remote.read(INTENT_FILE).replace("healthTimeout: 10m",
                                                               "healthTimeout: 20s"))
    remote.commit_and_push("A migration Job")


def delete_job(target: ClusterUnderTest) -> None:
    """What the TTL controller does once the Job has finished: delete it, foreground."""
    kubectl(target, "delete", "job", JOB.name, "-n", JOB.namespace or "",
            "--cascade=foreground", "--wait=true", "--timeout=60s")


def job_uid(target: ClusterUnderTest) -> str | None:
    done = kubectl_run(target, "get", "job", JOB.name, "-n", JOB.namespace or "",
                       "-o", "jsonpath={.metadata.uid}")
    return done.stdout if done.returncode == 0 else None


def test_job_deleted_by_its_ttl_is_not_run_again(any_cluster: ClusterUnderTest,
                                                 remote: gitrepo.GitRemote, tmp_path: Path):
    """After the TTL deleted the Job, a pass under the same intent does not recreate it;
    a new intent that still carries it runs it again."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    with_job(remote)
    first = site.sync()
    assert first.ok, first.message
    assert job_uid(any_cluster)
    delete_job(any_cluster)
    mark = any_cluster.mark()
    again = site.sync()
    assert again.ok, again.message
    (job,) = [r for r in again.results if r.ref == JOB]
    assert job.change is cluster.Change.UNCHANGED
    assert "deleted after its TTL; not run again" in job.note
    assert job_uid(any_cluster) is None
    assert any_cluster.changed_since(mark) == []
    assert JOB.inventory_id in {e.id for e in site.store.load().inventory}

    gitrepo.restamp(remote, site=SITE, new_id="sfo-upf-2-4", sequence=2)
    remote.commit_and_push("Upgrade the UPF\n\nIntent-Id: sfo-upf-2-4")
    third = site.sync()
    assert third.ok, third.message
    (job,) = [r for r in third.results if r.ref == JOB]
    assert job.change is cluster.Change.CREATED
    assert job_uid(any_cluster)


NEW_ID = "sfo-upf-2-4"


@pytest.mark.parametrize("replace", [False, True], ids=["named", "replaced"])
def test_job_whose_template_changes(any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote,
                                    tmp_path: Path, replace: bool):
    """A new intent changes the Job's image: without reconciler.dev/replace the pass fails
    naming the field and the annotation, and the Job stays; with it, the Job is deleted and
    created anew from the new template."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    with_job(remote)
    assert site.sync().ok
    before = job_uid(any_cluster)
    assert before
    gitrepo.restamp(remote, site=SITE, new_id=NEW_ID, sequence=2)
    remote.write(JOB_FILE, job_manifest(intent_id=NEW_ID, image="migrate:2.0", replace=replace))
    remote.commit_and_push(f"Migrate again\n\nIntent-Id: {NEW_ID}")
    result = site.sync()
    live = kubectl(any_cluster, "get", "job", JOB.name, "-n", JOB.namespace or "", "-o", "json")
    image = live["spec"]["template"]["spec"]["containers"][0]["image"]
    if not replace:
        assert not result.ok
        (failure,) = result.failures
        assert failure.error == (
            "Job/sfo-ran/sfo-migrate apply failed: spec.template is immutable; set "
            "reconciler.dev/replace: enabled on the manifest to delete and recreate it")
        assert live["metadata"]["uid"] == before
        assert image == "registry.example.com/migrate:1.0"
        return
    assert result.ok, result.message
    (job,) = [r for r in result.results if r.ref == JOB]
    assert job.change is cluster.Change.CONFIGURED
    assert job.note == "replaced: spec.template is immutable"
    assert live["metadata"]["uid"] != before
    assert image == "registry.example.com/migrate:2.0"
    if any_cluster.has_request_log:
        deletes = [r for r in any_cluster.writes() if r.verb == "delete" and r.name == JOB.name]
        assert len(deletes) == 1

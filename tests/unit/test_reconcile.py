"""One sync pass end to end through real Git, with our own Cluster port faked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import contract, errors
from reconciler.site import abort, fence, pipeline, state
from tests import gitrepo, sites

SITE = "edge-sfo-01"
SITE_OBJECTS = [
    "Namespace/sfo-ran",
    "ConfigMap/sfo-ran/sfo-site-config",
    "WorkloadCluster/sfo-ran/sfo-wc-01",
    "NetworkFunction/sfo-ran/sfo-upf",
    "NetworkFunction/sfo-ran/sfo-smf",
]
CRDS = ["CustomResourceDefinition/networkfunctions.telco.example.com",
        "CustomResourceDefinition/workloadclusters.telco.example.com"]


Env = sites.Env


@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote) -> Env:
    return Env(tmp_path, remote)


def test_first_sync_accepts_and_applies_in_wave_order(env: Env):
    """The first pass accepts the intent, applies CRDs first, then the site's waves in order."""
    result = env.sync()
    assert result.ok, result.message
    assert result.verdict is fence.Verdict.ACCEPT
    applied = env.cluster.applied()
    # Kind groups go in order; within a group applies run concurrently, in any order.
    groups = [set(CRDS), {"Namespace/sfo-ran"}, {"ConfigMap/sfo-ran/sfo-site-config"},
              {"WorkloadCluster/sfo-ran/sfo-wc-01"},
              {"NetworkFunction/sfo-ran/sfo-upf", "NetworkFunction/sfo-ran/sfo-smf"}]
    position = 0
    for group in groups:
        assert set(applied[position:position + len(group)]) == group, applied
        position += len(group)
    assert position == len(applied)
    recorded = env.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-baseline-1"
    assert recorded.rollout is not None and recorded.rollout.phase is state.Outcome.SUCCEEDED
    assert [w.wave for w in recorded.rollout.waves] == [0, 10, 20]
    assert [h.outcome for h in recorded.history] == [state.Outcome.SUCCEEDED]
    assert [e.id for e in recorded.inventory] == sorted(e.id for e in recorded.inventory)
    assert len(recorded.inventory) == len(SITE_OBJECTS)  # CRDs are shared: not inventoried


def test_applied_objects_carry_the_site_labels(env: Env):
    """Every applied object is labelled managed-by, and with the site unless it is a
    shared CRD of crds/ (no site label, or two sites would flip it: docs/policy.md)."""
    env.sync()
    for ref, obj in env.cluster.objects.items():
        labels = obj["metadata"]["labels"]
        shared = ref.kind == "CustomResourceDefinition"  # the sample's CRDs are in crds/
        assert labels.get(contract.LABEL_SITE) == (None if shared else SITE), ref
        assert labels[contract.LABEL_MANAGED_BY] == "reconciler", ref


def test_second_sync_changes_nothing(env: Env):
    """A second pass on the same commit keeps the intent and writes no object."""
    env.sync()
    applies_before = len(env.cluster.applied())
    result = env.sync()
    assert len(env.cluster.applied()) == applies_before
    assert result.ok
    assert result.verdict is fence.Verdict.KEEP
    site_results = [r for r in result.results if r.intent_id]
    assert {r.change.value for r in site_results} == {"unchanged"}
    assert len(env.store.load().history) == 1


def test_stale_manifest_is_dropped_and_never_applied(env: Env):
    """A manifest still carrying the old id after a new intent is dropped, not applied."""
    env.sync()
    gitrepo.restamp(env.remote, site=SITE, new_id="sfo-upf-2", sequence=2,
                    keep_old=("30-configmap.yaml",))
    env.remote.commit_and_push("Intent sfo-upf-2")
    before = len(env.cluster.calls)
    result = env.sync()
    assert result.ok
    assert result.verdict is fence.Verdict.ACCEPT
    applied_now = [what for verb, what in env.cluster.calls[before:] if verb == "apply"]
    assert "ConfigMap/sfo-ran/sfo-site-config" not in applied_now
    (drop,) = result.drops
    assert drop.object == "ConfigMap/sfo-ran/sfo-site-config"
    assert drop.carried == "sfo-baseline-1"
    assert drop.location.file == "sites/edge-sfo-01/manifests/30-configmap.yaml"
    recorded = env.store.load()
    assert [d.object for d in recorded.drops] == [drop.object]
    assert recorded.history[0].superseded_by == "sfo-upf-2"
    assert recorded.history[0].outcome is state.Outcome.SUCCEEDED


def test_new_intent_is_recorded_before_its_first_apply(env: Env, tmp_path: Path):
    """When the first object of a new intent is applied, the state file already accepts it."""
    env.sync()
    gitrepo.restamp(env.remote, site=SITE, new_id="sfo-upf-2", sequence=2)
    env.remote.commit_and_push("Intent sfo-upf-2")
    seen: list[str] = []
    apply = env.cluster.apply

    def recording_apply(obj, **kwargs):  # type: ignore[no-untyped-def]
        on_disk = json.loads(env.store.path.read_text())
        seen.append(on_disk["accepted"]["id"])
        return apply(obj, **kwargs)

    env.cluster.apply = recording_apply  # type: ignore[method-assign]
    assert env.sync().ok
    assert seen and set(seen) == {"sfo-upf-2"}


def test_lower_sequence_is_refused_and_nothing_applied(env: Env):
    """An intent with a lower sequence is refused; the accepted one stays and nothing is sent."""
    gitrepo.restamp(env.remote, site=SITE, new_id="sfo-5", sequence=5)
    env.remote.commit_and_push("Intent sfo-5")
    assert env.sync().ok
    gitrepo.restamp(env.remote, site=SITE, new_id="sfo-late", sequence=3)
    env.remote.commit_and_push("A late merge of an older intent")
    before = len(env.cluster.applied())
    result = env.sync()
    assert not result.ok
    assert result.verdict is fence.Verdict.REFUSE
    assert len(env.cluster.applied()) == before
    recorded = env.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-5"
    assert recorded.history[-1].outcome is state.Outcome.REFUSED
    assert recorded.last_sync is not None and recorded.last_sync.result == "refused"


def test_missing_intent_file_fails_and_keeps_the_last_good_state(env: Env):
    """Without intent.yaml the pass fails naming the file; nothing is applied or forgotten."""
    env.sync()
    env.remote.remove("sites/edge-sfo-01/intent.yaml")
    env.remote.commit_and_push("Oops")
    before = len(env.cluster.applied())
    result = env.sync()
    assert not result.ok
    assert "sites/edge-sfo-01/intent.yaml: missing" in result.message
    assert len(env.cluster.applied()) == before
    recorded = env.store.load()
    assert recorded.accepted is not None and recorded.accepted.id == "sfo-baseline-1"
    assert recorded.errors[-1].stage == "bundle"


def test_invalid_manifest_stops_the_revision(env: Env):
    """A manifest breaking its kind's schema fails the pass before anything is applied."""
    path = "sites/edge-sfo-01/manifests/20-networkfunctions.yaml"
    env.remote.write(path, env.remote.read(path).replace("type: UPF", "type: TOASTER"))
    env.remote.commit_and_push("A typo")
    result = env.sync()
    assert not result.ok
    assert env.cluster.applied() == []
    assert any("$.spec.type" in e and path in e for e in result.errors)
    assert env.store.load().accepted is None


def test_force_push_is_refused(env: Env):
    """A rewritten branch is refused, nothing is applied, and the last head is kept."""
    first = env.remote.commit_and_push("Second commit")
    env.sync()
    env.remote.reset_hard("HEAD~1")
    env.remote.commit("Rewritten")
    env.remote.push(force=True)
    before = len(env.cluster.applied())
    result = env.sync()
    assert not result.ok
    assert "rewritten" in result.message
    assert len(env.cluster.applied()) == before
    assert env.store.load().last_fetched_head == first


def test_force_push_is_accepted_when_allowed(env: Env, tmp_path: Path):
    """--allow-history-rewrite takes the rewritten head."""
    env.sync()
    env.remote.reset_hard("HEAD")
    env.remote.commit("Amended elsewhere")
    env.remote.push(force=True)
    env.options = pipeline.Options(url=env.remote.url, site=SITE, cache_dir=tmp_path / "cache",
                                    allow_history_rewrite=True)
    assert env.sync().ok


def test_failed_apply_fails_the_rollout_and_stops_later_waves(env: Env):
    """A permanent apply error fails its wave; later waves are not started."""
    env.cluster.fail["WorkloadCluster/sfo-ran/sfo-wc-01"] = errors.ApplyError(
        "WorkloadCluster/sfo-ran/sfo-wc-01 apply failed: denied", status=403)
    result = env.sync()
    assert not result.ok
    assert result.phase is state.Outcome.FAILED
    assert not any(a.startswith("NetworkFunction/") for a in env.cluster.applied())
    recorded = env.store.load()
    assert recorded.history[-1].outcome is state.Outcome.FAILED
    assert recorded.rollout is not None
    assert [w.phase.value for w in recorded.rollout.waves] == ["healthy", "failed", "pending"]


def test_drifted_object_is_reapplied_and_only_it(env: Env):
    """An object changed out of band is applied again; objects in sync are not written."""
    env.sync()
    ref = next(r for r in env.cluster.objects if r.kind == "ConfigMap")
    env.cluster.objects[ref]["data"]["dnn"] = "edited-by-hand"
    before = len(env.cluster.applied())
    result = env.sync()
    assert result.ok
    assert env.cluster.applied()[before:] == ["ConfigMap/sfo-ran/sfo-site-config"]
    assert env.cluster.objects[ref]["data"]["dnn"] == "internet"
    changes = {str(r.ref): r.change.value for r in result.results if r.intent_id}
    assert changes["ConfigMap/sfo-ran/sfo-site-config"] == "configured"
    assert changes["WorkloadCluster/sfo-ran/sfo-wc-01"] == "unchanged"


def test_retryable_apply_error_is_retried(env: Env):
    """A 503 on one apply is retried and the rollout still succeeds."""
    flaky = errors.ClusterError("Namespace/sfo-ran apply failed: unavailable", retryable=True,
                                status=503)
    apply = env.cluster.apply
    failures = [flaky]

    def flaky_apply(obj, **kwargs):  # type: ignore[no-untyped-def]
        if obj["kind"] == "Namespace" and failures:
            raise failures.pop()
        return apply(obj, **kwargs)

    env.cluster.apply = flaky_apply  # type: ignore[method-assign]
    assert env.sync().ok
    assert "Namespace/sfo-ran" in env.cluster.applied()


def test_aborted_rollout_applies_nothing_more(env: Env):
    """An abort signalled before the rollout applies nothing; the pass ends aborted, and
    since the superseding intent's acceptance is not recorded, the rollout stays open
    (the acceptance closes it, or the next pass resumes it)."""
    signal = abort.Abort()
    signal.set("superseded by next", superseded_by="next")
    result = env.sync(abort=signal)
    assert not result.ok
    assert result.phase is state.Outcome.ABORTED
    assert env.cluster.applied() == []
    recorded = env.store.load()
    assert recorded.rollout is not None and recorded.rollout.superseded_by is None
    assert recorded.rollout.phase is state.Outcome.PROGRESSING
    assert recorded.last_sync is not None and recorded.last_sync.result == "aborted"
    assert state.problems(recorded) == []


def test_unknown_site_is_a_clear_error(env: Env, tmp_path: Path):
    """A site missing from the repository names the sites that exist."""
    env.options = pipeline.Options(url=env.remote.url, site="edge-nowhere",
                                    cache_dir=tmp_path / "cache")
    env.store = state.FileStateStore(state_dir=tmp_path / "state", site="edge-nowhere")
    result = env.sync()
    assert not result.ok
    assert "edge-nyc-02" in result.message and "edge-sfo-01" in result.message


def test_intent_superseded_before_its_rollout_began_ends_aborted(env: Env):
    """Two intents accepted in quick succession: the one whose rollout never started is
    recorded Aborted (superseded by the next), not left Pending forever."""
    assert env.sync().ok
    box = pipeline.SiteBox(env.store)
    repo = pipeline.source.Source(url=env.options.url, branch=env.options.branch,
                                   cache_dir=env.options.cache_dir)
    for number in (2, 3):
        gitrepo.restamp(env.remote, site=SITE, new_id=f"intent-{number}", sequence=number)
        env.remote.commit_and_push(f"Intent {number}")
        with env.store.lock():
            planned, failure = pipeline.evaluate(box=box, repo=repo, options=env.options)
        assert failure is None and planned is not None  # accepted; its rollout never runs
    entries = {e.id: e for e in env.store.load().history}
    assert entries["sfo-baseline-1"].outcome is state.Outcome.SUCCEEDED
    assert entries["intent-2"].outcome is state.Outcome.ABORTED
    assert entries["intent-2"].superseded_by == "intent-3"
    assert entries["intent-2"].message == "Aborted (superseded by intent-3)"
    assert entries["intent-3"].outcome is state.Outcome.PENDING
    recorded = env.store.load().rollout
    assert recorded is not None and recorded.intent_id == "sfo-baseline-1"
    assert recorded.phase is state.Outcome.SUCCEEDED, "another intent's record was rewritten"


def test_symlinked_manifests_folder_is_refused_and_nothing_pruned(env: Env):
    """A commit that turns a site's manifests folder into a symlink is refused: read as an
    empty site, it would have pruned everything."""
    assert env.sync().ok
    manifests = env.remote.work / "sites" / SITE / "manifests"
    manifests.rename(manifests.with_name("elsewhere"))
    manifests.symlink_to("elsewhere")
    env.remote.commit_and_push("manifests moved behind a symlink")
    before = list(env.cluster.objects)
    result = env.sync()
    assert not result.ok
    assert f"sites/{SITE}/manifests: symbolic links are not allowed" in result.message
    assert not [call for call in env.cluster.calls if call[0] == "delete"]
    assert list(env.cluster.objects) == before
    assert len(env.store.load().inventory) == 5

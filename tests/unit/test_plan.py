"""`reconciler plan` on real Git with our own Cluster port faked: it agrees with sync, changes
nothing, and reads every kind of ref. The end-to-end half runs against real API servers."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler import cli, cluster, contract, errors, kube
from reconciler.manager import plan as planner
from reconciler.manager import render
from reconciler.site import fence, pipeline, state
from tests import fakes, gitrepo
from tests.plans import planned, pruned, prunes_planned, synced

SITE = "edge-sfo-01"
MANIFESTS = f"sites/{SITE}/manifests"
INTENT_FILE = f"sites/{SITE}/intent.yaml"
CONFIG_MAP_FILE = f"{MANIFESTS}/30-configmap.yaml"
NETWORK_FUNCTIONS_FILE = f"{MANIFESTS}/20-networkfunctions.yaml"
NAMESPACE = "Namespace/sfo-ran"
CONFIG_MAP = "ConfigMap/sfo-ran/sfo-site-config"
WORKLOAD_CLUSTER = "WorkloadCluster/sfo-ran/sfo-wc-01"
UPF = "NetworkFunction/sfo-ran/sfo-upf"
SMF = "NetworkFunction/sfo-ran/sfo-smf"
SITE_OBJECTS = {NAMESPACE, CONFIG_MAP, WORKLOAD_CLUSTER, UPF, SMF}
CRDS = {"CustomResourceDefinition/networkfunctions.telco.example.com",
        "CustomResourceDefinition/workloadclusters.telco.example.com"}
SYNC_REF = "refs/reconciler/heads/main"


class RecordingCluster(fakes.FakeCluster):
    """FakeCluster whose applies also record the dry-run flag: its `calls` list an apply the
    same way whether it was a dry run or not."""

    def __init__(self) -> None:
        super().__init__()
        self.applies: list[tuple[str, bool]] = []  # ("Kind/ns/name", dry_run)
        self.closed = 0
        self.connected: list[dict[str, object]] = []  # kube.connect()'s arguments

    def close(self) -> None:
        self.closed += 1

    def apply(self, obj: Mapping[str, Any], *, force: bool = False,
              dry_run: bool = False,
              field_manager: str = contract.SHARED_FIELD_MANAGER) -> cluster.Applied:
        self.applies.append((str(cluster.ObjectRef.of(obj)), dry_run))
        return super().apply(obj, force=force, dry_run=dry_run,
                             field_manager=field_manager)


class Env:
    """One site: a Git remote, the fake cluster, the state dir, and a Git cache that sync
    and plan share (as the CLI's default `<state-dir>/.git-cache` does)."""

    def __init__(self, tmp_path: Path, remote: gitrepo.GitRemote) -> None:
        self.remote = remote
        self.cluster = RecordingCluster()
        self.state_dir = tmp_path / "state"
        self.cache_dir = tmp_path / "cache"
        self.store = state.FileStateStore(state_dir=self.state_dir, site=SITE)

    def sync(self) -> pipeline.SyncResult:
        options = pipeline.Options(url=self.remote.url, site=SITE, cache_dir=self.cache_dir)
        with self.store.lock():
            return pipeline.sync_once(options=options, store=self.store, target=self.cluster)

    def plan(self, *, online: bool = False, ref: str = "main", site: str = SITE) -> planner.Plan:
        options = planner.Options(url=self.remote.url, site=site, ref=ref,
                                  state_dir=self.state_dir, cache_dir=self.cache_dir)
        return planner.make(options=options, target=self.cluster if online else None)

    def cli(self, *args: str, site: str = SITE) -> int:
        return cli.main(["plan", "--repo", self.remote.url, "--site", site, "--state-dir",
                         str(self.state_dir), "--cache-dir", str(self.cache_dir), *args])

    def edit(self, path: str, old: str, new: str) -> None:
        text = self.remote.read(path)
        assert old in text, f"{old!r} not in {path}"
        self.remote.write(path, text.replace(old, new, 1))

    def delete(self, path: str) -> None:
        (self.remote.work / path).unlink()  # committed by `add -A`, even after an edit

    def serve_kube(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`--kubeconfig` connects to this fake cluster."""

        def connect(**kwargs: object) -> RecordingCluster:
            self.cluster.connected.append(kwargs)
            return self.cluster

        monkeypatch.setattr(kube, "connect", connect)

    def cache_git(self, *args: str) -> str:
        (cache,) = self.cache_dir.glob("*.git")
        return gitrepo.git(*args, cwd=cache)


@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote) -> Env:
    return Env(tmp_path, remote)






def drops(decision: fence.Decision | None) -> list[str]:
    assert decision is not None
    return sorted(d.object for d in decision.drops)


def assert_agrees(plan: planner.Plan, result: pipeline.SyncResult) -> None:
    """The plan's per-object changes, drops and prunes are exactly what the sync did."""
    assert result.ok, result.message
    assert plan.ok and plan.decision is not None
    assert plan.decision.verdict is result.verdict
    assert planned(plan) == synced(result)
    assert drops(plan.decision) == sorted(d.object for d in result.drops)
    assert prunes_planned(plan) == pruned(result)


def new_intent(env: Env, *, new_id: str = "sfo-upf-2", sequence: int | None = 2,
               keep_old: tuple[str, ...] = ()) -> None:
    gitrepo.restamp(env.remote, site=SITE, new_id=new_id, sequence=sequence,
                    keep_old=keep_old)


# --- 1. a site never synced ----------------------------------------------------------------

def test_offline_plan_for_a_new_site_creates_everything(env: Env):
    """Offline, a site without state would accept the intent, create every object, apply the
    CRDs and prune nothing."""
    plan = env.plan()
    assert plan.ok and plan.errors == () and plan.notes == ()
    assert plan.decision is not None and plan.decision.verdict is fence.Verdict.ACCEPT
    assert plan.compared_with == planner.INVENTORY and plan.accepted is None
    assert plan.commit == gitrepo.git("rev-parse", "HEAD", cwd=env.remote.work)
    changes = planned(plan)
    assert {o: c for o, c in changes.items() if o in SITE_OBJECTS} == dict.fromkeys(
        SITE_OBJECTS, "created")
    assert {o: c for o, c in changes.items() if o not in SITE_OBJECTS} == dict.fromkeys(
        CRDS, "applied")
    assert all(o.wave is None for o in plan.objects if str(o.ref) in CRDS)
    assert [o.wave for o in plan.objects if str(o.ref) in SITE_OBJECTS] == [0, 0, 10, 20, 20]
    assert plan.prunes == () and plan.decision.drops == ()


# --- 2. online plan == what sync then does -------------------------------------------------

def test_online_plan_agrees_with_the_first_sync(env: Env):
    """On an empty cluster the plan says created for every object, CRDs included, and the
    first sync creates exactly those."""
    plan = env.plan(online=True)
    assert set(planned(plan).values()) == {"created"}
    assert set(planned(plan)) == SITE_OBJECTS | CRDS
    notes = {str(o.ref): o.note for o in plan.objects}
    assert notes[UPF] == notes[WORKLOAD_CLUSTER] == "its CRD is created first"
    assert plan.compared_with == planner.LIVE
    assert_agrees(plan, env.sync())


def test_online_plan_agrees_with_a_sync_that_changes_nothing(env: Env):
    """Right after a sync, the plan and the next sync both find every object unchanged."""
    assert env.sync().ok
    plan = env.plan(online=True)
    assert plan.decision is not None and plan.decision.verdict is fence.Verdict.KEEP
    assert set(planned(plan).values()) == {"unchanged"}
    before = len(env.cluster.applied())
    result = env.sync()
    assert_agrees(plan, result)
    assert len(env.cluster.applied()) == before


def test_online_plan_agrees_with_sync_on_a_new_intent_with_drop_and_prune(env: Env):
    """A new intent that edits the UPF, leaves the WorkloadCluster on the old id (held, not
    pruned) and removes the ConfigMap (pruned) plans exactly what sync then does."""
    assert env.sync().ok
    new_intent(env, keep_old=("10-workloadcluster.yaml",))
    env.edit(NETWORK_FUNCTIONS_FILE, 'version: "2.3.1"', 'version: "2.4.0"')
    env.delete(CONFIG_MAP_FILE)
    env.remote.commit_and_push("Intent sfo-upf-2: UPF 2.4, no site ConfigMap")
    plan = env.plan(online=True)
    assert plan.decision is not None and plan.decision.verdict is fence.Verdict.ACCEPT
    assert drops(plan.decision) == [WORKLOAD_CLUSTER]
    assert prunes_planned(plan) == [CONFIG_MAP]
    assert WORKLOAD_CLUSTER not in planned(plan)
    assert planned(plan)[UPF] == "configured"
    result = env.sync()
    assert_agrees(plan, result)
    assert {str(r) for r in env.cluster.objects} == CRDS | SITE_OBJECTS - {CONFIG_MAP}
    held = {e.name for e in env.store.load().inventory if e.kind == "WorkloadCluster"}
    assert held == {"sfo-wc-01"}


def test_online_plan_agrees_with_sync_when_prune_is_off(env: Env):
    """With `spec.rollout.prune: false` the plan lists no prune and sync deletes nothing."""
    assert env.sync().ok
    new_intent(env)
    env.edit(INTENT_FILE, "prune: true", "prune: false")
    env.delete(CONFIG_MAP_FILE)
    env.remote.commit_and_push("Intent sfo-upf-2 without the ConfigMap, prune off")
    plan = env.plan(online=True)
    assert plan.intent is not None and plan.intent.prune is False
    assert plan.prunes == ()
    result = env.sync()
    assert_agrees(plan, result)
    assert pruned(result) == []
    assert not any(verb == "delete" for verb, _ in env.cluster.calls)
    assert CONFIG_MAP in {str(r) for r in env.cluster.objects}


def test_online_plan_sees_drift_and_sync_reapplies_only_it(env: Env):
    """An object edited on the cluster is the only one the plan calls configured, and the
    only one the sync applies again."""
    assert env.sync().ok
    ref = next(r for r in env.cluster.objects if str(r) == CONFIG_MAP)
    env.cluster.objects[ref]["data"]["dnn"] = "edited-by-hand"
    plan = env.plan(online=True)
    assert {o: c for o, c in planned(plan).items() if c != "unchanged"} == {
        CONFIG_MAP: "configured"}
    before = len(env.cluster.applied())
    result = env.sync()
    assert_agrees(plan, result)
    assert env.cluster.applied()[before:] == [CONFIG_MAP]
    assert env.cluster.objects[ref]["data"]["dnn"] == "internet"


def test_online_prune_of_an_object_without_the_site_label_is_kept(env: Env):
    """A stale object that lost its site label is planned as kept (with the reason), not
    counted as a prune, and sync does not delete it."""
    assert env.sync().ok
    ref = next(r for r in env.cluster.objects if str(r) == CONFIG_MAP)
    del env.cluster.objects[ref]["metadata"]["labels"]["reconciler.dev/site"]
    env.delete(CONFIG_MAP_FILE)
    env.remote.commit_and_push("No site ConfigMap")
    plan = env.plan(online=True)
    (prune,) = plan.prunes
    assert prune.entry.name == "sfo-site-config" and "reconciler.dev/site" in prune.kept
    assert "0 to prune" in render.plan_text(plan)
    result = env.sync()
    assert_agrees(plan, result)
    assert ref in env.cluster.objects


def test_online_prune_of_an_object_whose_api_group_is_unreachable_is_kept(env: Env):
    """A stale object of an API group the cluster lists but cannot serve now (an
    aggregated API whose backend is down) is planned as kept, naming the group and the
    server's reason; prune never deletes what it cannot see."""
    assert env.sync().ok
    env.delete(NETWORK_FUNCTIONS_FILE)
    env.remote.commit_and_push("No network functions")
    env.cluster.unavailable["telco.example.com/v1alpha1"] = "HTTP 503: service unavailable"
    plan = env.plan(online=True)
    kept = {p.entry.name: p.kept for p in plan.prunes}
    assert set(kept) == {"sfo-upf", "sfo-smf"}
    assert all(k == "its API group telco.example.com/v1alpha1 cannot be reached "
                    "(HTTP 503: service unavailable)" for k in kept.values())
    assert "0 to prune" in render.plan_text(plan)


def test_online_plan_of_an_object_the_server_refuses_fails_as_sync_does(
        env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """An object whose dry run the server refuses is planned as failing with the server's
    reason, the plan exits 1, and the sync that follows fails on that object too."""
    assert env.sync().ok
    env.edit(CONFIG_MAP_FILE, "dnn: internet", "dnn: ims")
    env.remote.commit_and_push("DNN ims")
    env.cluster.fail[CONFIG_MAP] = errors.ApplyError(
        f"{CONFIG_MAP} apply failed: denied by policy", status=403)
    plan = env.plan(online=True)
    assert not plan.ok
    failing = {str(o.ref): o.note for o in plan.objects if o.change == planner.FAILS}
    assert failing == {CONFIG_MAP: f"{CONFIG_MAP} apply failed: denied by policy"}
    env.serve_kube(monkeypatch)
    assert env.cli("--kubeconfig", "edge.kubeconfig") == 1
    text = capsys.readouterr().out
    reason = f"{CONFIG_MAP} apply failed: denied by policy"
    assert f"| 0 | `{CONFIG_MAP}` | **fails**: {reason} |" in text
    assert "**1 refused by the API server**" in text
    result = env.sync()
    assert not result.ok and result.phase is state.Outcome.FAILED
    assert "denied by policy" in result.message


def test_online_plan_of_a_transient_error_agrees_with_the_sync_that_retries(env: Env):
    """A 503 on one dry run does not plan the object as failing: sync retries such an error
    and creates the object."""
    flaky = errors.ClusterError(f"{NAMESPACE} apply failed: unavailable", retryable=True,
                                status=503)
    failures = [flaky]
    apply = env.cluster.apply

    def flaky_apply(obj: Mapping[str, Any], **kwargs: Any) -> cluster.Applied:
        if obj["kind"] == "Namespace" and failures:
            raise failures.pop()
        return apply(obj, **kwargs)

    env.cluster.apply = flaky_apply  # type: ignore[method-assign]
    plan = env.plan(online=True)
    failures.append(flaky)
    result = env.sync()
    assert result.ok
    assert_agrees(plan, result)


# --- 3. a plan changes nothing -------------------------------------------------------------

def _snapshot(env: Env) -> tuple[Any, ...]:
    state_bytes = env.store.path.read_bytes() if env.store.path.exists() else None
    return (copy.deepcopy(env.cluster.objects), dict(env.cluster.kinds), state_bytes,
            sorted(p.name for p in env.state_dir.iterdir()) if env.state_dir.exists() else None)


@pytest.mark.parametrize("online", [True, False], ids=["online", "offline"])
def test_plan_of_a_first_sync_changes_nothing(env: Env, online: bool):
    """Planning a site never synced writes no object, no state file and no lock file."""
    before = _snapshot(env)
    assert env.plan(online=online).ok
    assert _snapshot(env) == before
    assert not env.store.path.exists() and not env.store.lock_path.exists()
    assert all(dry_run for _, dry_run in env.cluster.applies)
    assert not any(verb == "delete" for verb, _ in env.cluster.calls)


@pytest.mark.parametrize("online", [True, False], ids=["online", "offline"])
def test_plan_with_prunes_and_changes_changes_nothing(env: Env, online: bool):
    """A plan that would configure, drop and prune leaves the cluster, its kinds and the state
    file byte for byte as they were: only dry-run applies, no delete."""
    assert env.sync().ok
    new_intent(env, keep_old=("10-workloadcluster.yaml",))
    env.delete(CONFIG_MAP_FILE)
    env.remote.commit_and_push("Intent sfo-upf-2")
    env.cluster.calls.clear()
    env.cluster.applies.clear()
    before = _snapshot(env)
    plan = env.plan(online=online)
    assert prunes_planned(plan) == [CONFIG_MAP] and planned(plan)[UPF] == "configured"
    assert _snapshot(env) == before
    if online:
        assert env.cluster.applies and all(dry_run for _, dry_run in env.cluster.applies)
    else:
        assert env.cluster.calls == []
    assert not any(verb == "delete" for verb, _ in env.cluster.calls)


# --- 4. offline, against the recorded inventory --------------------------------------------

def test_offline_plan_of_the_synced_commit_is_all_unchanged(env: Env):
    """Offline, the commit the site last rolled out plans every site object unchanged."""
    assert env.sync().ok
    plan = env.plan()
    assert plan.decision is not None and plan.decision.verdict is fence.Verdict.KEEP
    changes = planned(plan)
    assert {o: c for o, c in changes.items() if o in SITE_OBJECTS} == dict.fromkeys(
        SITE_OBJECTS, "unchanged")
    assert {changes[c] for c in CRDS} == {"applied"}
    assert plan.prunes == () and plan.notes == ()


def test_offline_plan_of_an_edit_configures_only_that_object(env: Env):
    """A commit that edits one manifest plans that object configured and the rest unchanged,
    as the sync that follows then does."""
    assert env.sync().ok
    env.edit(NETWORK_FUNCTIONS_FILE, 'version: "2.3.1"', 'version: "2.4.0"')
    env.remote.commit_and_push("UPF 2.4 under the same intent")
    plan = env.plan()
    assert {o: c for o, c in planned(plan).items() if o in SITE_OBJECTS} == {
        **dict.fromkeys(SITE_OBJECTS, "unchanged"), UPF: "configured"}
    result = env.sync()
    assert {o: c for o, c in synced(result).items() if o in SITE_OBJECTS} == {
        o: c for o, c in planned(plan).items() if o in SITE_OBJECTS}


def test_offline_plan_lists_the_prune_of_a_removed_file(env: Env):
    """A removed manifest's object is listed as a prune offline, and the sync deletes it."""
    assert env.sync().ok
    env.delete(CONFIG_MAP_FILE)
    env.remote.commit_and_push("No site ConfigMap")
    plan = env.plan()
    assert prunes_planned(plan) == [CONFIG_MAP]
    assert CONFIG_MAP not in planned(plan)
    assert f"| `{CONFIG_MAP}` | `sfo-baseline-1` | deleted |" in render.plan_text(plan)
    assert pruned(env.sync()) == [CONFIG_MAP]


def test_offline_plan_holds_the_object_of_a_dropped_manifest(env: Env):
    """Offline, a manifest left on the old id is dropped and its object is not pruned."""
    assert env.sync().ok
    new_intent(env, keep_old=("30-configmap.yaml",))
    env.remote.commit_and_push("Intent sfo-upf-2")
    plan = env.plan()
    assert drops(plan.decision) == [CONFIG_MAP]
    assert plan.prunes == ()
    assert set(planned(plan).values()) - {"applied"} == {"configured"}  # the id changed


def test_offline_plan_notes_a_last_commit_missing_from_the_repository(env: Env):
    """When the last rolled-out commit is not in the repository, a note says so and the
    objects the site holds are shown configured, not unchanged."""
    assert env.sync().ok
    current = env.store.load()
    assert current.rollout is not None
    foreign = "0123456789abcdef0123456789abcdef01234567"
    env.store.save(dataclasses.replace(
        current, rollout=dataclasses.replace(current.rollout, commit=foreign)))
    plan = env.plan()
    assert plan.ok
    (note,) = plan.notes
    assert "0123456789ab" in note and "not in this repository" in note
    assert {o: c for o, c in planned(plan).items() if o in SITE_OBJECTS} == dict.fromkeys(
        SITE_OBJECTS, "configured")
    assert "_Note: the commit the site last rolled out" in render.plan_text(plan)


def test_offline_plan_after_a_failed_rollout_configures_what_it_never_reached(env: Env):
    """After a rollout that failed at wave 10, offline plan says configured for the objects
    of waves 10 and 20 (still on the old intent), as the sync that retries then does."""
    assert env.sync().ok
    new_intent(env)
    env.remote.commit_and_push("Intent sfo-upf-2")
    env.cluster.fail[WORKLOAD_CLUSTER] = errors.ApplyError(
        f"{WORKLOAD_CLUSTER} apply failed: denied", status=403)
    failed = env.sync()
    assert not failed.ok and failed.phase is state.Outcome.FAILED
    del env.cluster.fail[WORKLOAD_CLUSTER]
    plan = env.plan()
    result = env.sync()
    assert result.ok
    assert synced(result)[WORKLOAD_CLUSTER] == "configured"
    assert {o: c for o, c in planned(plan).items() if o in SITE_OBJECTS} == {
        o: c for o, c in synced(result).items() if o in SITE_OBJECTS}


# --- 5. refused ----------------------------------------------------------------------------

def test_lower_sequence_would_be_refused(env: Env, capsys: pytest.CaptureFixture[str]):
    """A replay with a lower sequence plans a refusal: nothing planned, not ok, exit 1."""
    new_intent(env, new_id="sfo-5", sequence=5)
    env.remote.commit_and_push("Intent sfo-5")
    assert env.sync().ok
    new_intent(env, new_id="sfo-late", sequence=3)
    env.remote.commit_and_push("A late merge of an older intent")
    plan = env.plan(online=True)
    assert plan.decision is not None and plan.decision.verdict is fence.Verdict.REFUSE
    assert not plan.ok and plan.objects == () and plan.prunes == ()
    assert "sequence 3" in plan.decision.reason
    assert env.cli() == 1
    text = capsys.readouterr().out
    assert "**Intent `sfo-late` (sequence 3) would be REFUSED:**" in text
    assert "`sfo-5` stays in force" in text
    assert env.cli("-o", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "refuse" and data["ok"] is False and data["objects"] == []


def test_superseded_intent_would_be_refused(env: Env, capsys: pytest.CaptureFixture[str]):
    """An intent id the site accepted before and replaced is refused even with a higher
    sequence."""
    assert env.sync().ok
    new_intent(env, new_id="sfo-upf-2", sequence=2)
    env.remote.commit_and_push("Intent sfo-upf-2")
    assert env.sync().ok
    new_intent(env, new_id="sfo-baseline-1", sequence=3)
    env.remote.commit_and_push("Roll back by replaying the baseline id")
    plan = env.plan()
    assert plan.decision is not None and plan.decision.verdict is fence.Verdict.REFUSE
    assert "superseded" in plan.decision.reason and not plan.ok
    assert env.cli() == 1
    assert "would be REFUSED" in capsys.readouterr().out


# --- 6. invalid revisions ------------------------------------------------------------------

@pytest.mark.parametrize(("path", "old", "new"), [
    (CONFIG_MAP_FILE, "  dnn: internet\n", "  dnn: [internet\n"),
    (INTENT_FILE, "sequence: 1", "sequence: one"),
    (NETWORK_FUNCTIONS_FILE, "type: UPF", "type: TOASTER"),
], ids=["yaml-syntax", "intent-schema", "manifest-schema"])
def test_invalid_revision_plans_nothing(env: Env, capsys: pytest.CaptureFixture[str],
                                        path: str, old: str, new: str):
    """A revision with a YAML error or a schema break plans no object and exits 1, naming
    the file."""
    env.edit(path, old, new)
    env.remote.commit_and_push("Broken")
    plan = env.plan()
    assert plan.errors and any(path in e for e in plan.errors), plan.errors
    assert not plan.ok and plan.decision is None and plan.objects == () and plan.prunes == ()
    assert env.cli() == 1
    text = capsys.readouterr().out
    assert "**Invalid revision" in text and path in text


# --- 7. --ref forms ------------------------------------------------------------------------

def push_refs(env: Env) -> dict[str, str]:
    """Commits beyond main, each reachable only from its own ref; ref -> commit."""
    work = env.remote.work
    main = gitrepo.git("rev-parse", "HEAD", cwd=work)
    feature = env.remote.commit("On the feature branch")
    gitrepo.git("push", "-q", "origin", "HEAD:refs/heads/feature/upf", cwd=work)
    tagged = env.remote.commit("Tagged")
    gitrepo.git("tag", "-a", "-m", "release", "v1.0", cwd=work)
    gitrepo.git("push", "-q", "origin", "refs/tags/v1.0", cwd=work)
    light = env.remote.commit("Tagged lightly")
    gitrepo.git("tag", "light", cwd=work)
    gitrepo.git("push", "-q", "origin", "refs/tags/light", cwd=work)
    pull = env.remote.commit("A pull request")
    gitrepo.git("push", "-q", "origin", "HEAD:refs/pull/7/head", cwd=work)
    return {"main": main, "HEAD": main, "refs/heads/main": main, "feature/upf": feature,
            feature: feature, feature[:8]: feature, "v1.0": tagged, "light": light,
            "refs/pull/7/head": pull}


def test_plan_reads_every_ref_form(env: Env):
    """Branches, annotated and light tags, full and short SHAs, refs/... and HEAD each plan
    the commit they name."""
    expected = push_refs(env)
    plans = {ref: env.plan(ref=ref) for ref in expected}
    assert {ref: (p.commit, p.ref, p.ok) for ref, p in plans.items()} == {
        ref: (sha, ref, True) for ref, sha in expected.items()}
    assert plans["v1.0"].subject == "Tagged"
    # refs/... and HEAD share one fetched ref: HEAD after a pull request is main again.
    assert env.plan(ref="HEAD").commit == expected["main"]


def test_unknown_ref_fails_naming_it(env: Env, capsys: pytest.CaptureFixture[str]):
    """A branch, refs/... or SHA the repository lacks is a SourceError naming it: exit 1."""
    for ref in ("no-such-branch", "refs/pull/99/head", "abcdef0123"):
        with pytest.raises(errors.SourceError, match=ref):
            env.plan(ref=ref)
        assert env.cli("--ref", ref) == 1, ref
        captured = capsys.readouterr()
        assert captured.out == "", ref
        assert captured.err.startswith("reconciler: error: ") and repr(ref) in captured.err


def test_plan_does_not_move_the_sync_branch_ref(env: Env):
    """Plan fetches into its own ref space: the branch ref sync follows in the shared cache
    stays where sync left it, even when plan reads a newer head."""
    assert env.sync().ok
    synced_head = env.cache_git("rev-parse", SYNC_REF)
    pull = env.remote.commit("A pull request")
    gitrepo.git("push", "-q", "origin", "HEAD:refs/pull/7/head", cwd=env.remote.work)
    newer = env.remote.commit_and_push("Newer head of main")
    for ref in ("main", "HEAD", "refs/pull/7/head", pull):
        env.plan(ref=ref)
    assert env.plan(ref="main").commit == newer
    assert env.cache_git("rev-parse", SYNC_REF) == synced_head
    assert env.store.load().last_fetched_head == synced_head
    result = env.sync()  # the next sync still sees a descendant of the head it fetched
    assert result.ok and result.commit == newer


# --- 8. command line -----------------------------------------------------------------------

def test_json_output(env: Env, capsys: pytest.CaptureFixture[str]):
    """`-o json` prints the verdict, objects, drops, prunes and a summary, offline compared
    with the inventory."""
    assert env.sync().ok
    env.delete(CONFIG_MAP_FILE)
    env.edit(NETWORK_FUNCTIONS_FILE, 'version: "2.3.1"', 'version: "2.4.0"')
    env.remote.commit_and_push("UPF 2.4, no ConfigMap")
    assert env.cli("-o", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert {"verdict", "objects", "drops", "prunes", "summary", "comparedWith"} <= set(data)
    assert data["comparedWith"] == "inventory" and data["verdict"] == "keep"
    assert data["ok"] is True and data["site"] == SITE
    assert {k: data["summary"][k] for k in ("created", "configured", "unchanged")} == {
        "created": 0, "configured": 1, "unchanged": 3}
    assert data["prunes"] == [{"object": CONFIG_MAP, "intentId": "sfo-baseline-1",
                               "kept": None}]
    assert data["drops"] == []
    upf = next(o for o in data["objects"] if o["object"] == UPF)
    assert upf["change"] == "configured" and upf["wave"] == 20
    assert upf["file"] == NETWORK_FUNCTIONS_FILE and upf["line"] == 3


def test_json_accepted_uses_the_state_files_keys(env: Env, capsys: pytest.CaptureFixture[str]):
    """The accepted intent in plan's JSON has the keys it has in the state file and in
    `reconciler status -o json`."""
    assert env.sync().ok
    assert env.cli("-o", "json") == 0
    accepted = json.loads(capsys.readouterr().out)["accepted"]
    assert accepted == state.to_json(env.store.load())["accepted"]


def test_text_output_is_markdown(env: Env, capsys: pytest.CaptureFixture[str]):
    """The text output is a Markdown comment: heading, object table, drops and a summary."""
    assert env.sync().ok
    new_intent(env, keep_old=("30-configmap.yaml",))
    env.remote.commit_and_push("Intent sfo-upf-2")
    assert env.cli() == 0
    text = capsys.readouterr().out
    assert text.startswith(f"### reconciler plan: site `{SITE}` at `")
    assert "| Wave | Object | Change | File |" in text
    assert "**Intent `sfo-upf-2` (sequence 2) would be accepted.**" in text
    assert f"| 20 | `{UPF}` | configured | {NETWORK_FUNCTIONS_FILE}:3 |" in text
    assert f"| `{CONFIG_MAP}` | {CONFIG_MAP_FILE}:2 | `sfo-baseline-1` |" in text
    summary = [line for line in text.splitlines() if line.startswith("**Summary:**")]
    assert summary == ["**Summary:** 0 to create, 4 to configure, 0 unchanged, "
                       "2 CRD(s) applied, 1 dropped, 0 to prune."]


def test_unknown_site_lists_the_known_sites(env: Env, capsys: pytest.CaptureFixture[str]):
    """A site missing from the repository is a usage error (exit 2) naming the sites that
    exist, not an invalid revision and not a traceback."""
    assert env.cli(site="edge-nowhere") == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.out == ""
    assert "reconciler: error: sites/edge-nowhere/: no such site in " in captured.err
    assert captured.err.rstrip().endswith("at main (sites: edge-nyc-02, edge-sfo-01)")


def test_invalid_site_name_is_a_usage_error(env: Env, capsys: pytest.CaptureFixture[str]):
    """A site name no site can have is a usage error (exit 2), before anything is fetched."""
    assert env.cli(site="Bad_Site") == 2
    assert "invalid site name 'Bad_Site'" in capsys.readouterr().err
    assert not env.cache_dir.exists()


def test_kubeconfig_plans_against_the_live_cluster(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]):
    """With --kubeconfig the command compares with the cluster it connects to, by dry run,
    and closes the connection."""
    assert env.sync().ok
    ref = next(r for r in env.cluster.objects if str(r) == CONFIG_MAP)
    env.cluster.objects[ref]["data"]["dnn"] = "edited-by-hand"
    env.serve_kube(monkeypatch)
    env.cluster.applies.clear()
    assert env.cli("--kubeconfig", "edge.kubeconfig", "--context", "edge", "-o", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert env.cluster.connected == [{"kubeconfig": Path("edge.kubeconfig"), "context": "edge"}]
    assert env.cluster.closed == 1
    assert data["comparedWith"] == "cluster"
    assert {o["object"]: o["change"] for o in data["objects"] if o["change"] != "unchanged"} == {
        CONFIG_MAP: "configured"}
    assert env.cluster.applies and all(dry_run for _, dry_run in env.cluster.applies)
    assert env.cluster.objects[ref]["data"]["dnn"] == "edited-by-hand"


# --- found in review -------------------------------------------------------------------------

POLICY_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: clusterpolicies.example.org
spec:
  group: example.org
  scope: {scope}
  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {singular}}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
POLICY = """\
apiVersion: example.org/v1
kind: ClusterPolicy
metadata:
  name: p1
  annotations:
    reconciler.dev/intent-id: sfo-baseline-1
    reconciler.dev/wave: "{wave}"
spec:
  level: strict
"""


def policy_crd(*, wave: int | None = None) -> str:
    text = POLICY_CRD.format(scope="Cluster", kind="ClusterPolicy", plural="clusterpolicies",
                             singular="clusterpolicy")
    if wave is None:
        return text
    return text.replace("  name: clusterpolicies.example.org\n", (
        "  name: clusterpolicies.example.org\n  annotations:\n"
        "    reconciler.dev/intent-id: sfo-baseline-1\n"
        f"    reconciler.dev/wave: \"{wave}\"\n"))


def test_online_plan_of_a_kind_whose_crd_an_earlier_wave_creates(env: Env):
    """A CRD among the site's manifests (wave 0) serves a kind of wave 10: the plan says
    its object is created, as the rollout will, not that it fails."""
    env.remote.write(f"{MANIFESTS}/05-policy-crd.yaml", policy_crd(wave=0))
    env.remote.write(f"{MANIFESTS}/40-policy.yaml", POLICY.format(wave=10))
    env.remote.commit_and_push("a policy kind and its first object")
    plan = env.plan(online=True)
    assert plan.ok, plan.objects
    (policy,) = [o for o in plan.objects if o.ref.kind == "ClusterPolicy"]
    assert (policy.change, policy.note) == ("created", "its CRD is created first")
    result = env.sync()
    assert result.ok, result.message
    assert planned(plan) == synced(result)


def test_offline_plan_takes_a_custom_kinds_scope_from_the_inventory(env: Env):
    """A cluster-scoped custom kind whose CRD left the repository (installed another way
    now) keeps its recorded scope offline: not invented into namespace default, not pruned."""
    env.remote.write("crds/clusterpolicies.yaml", policy_crd())
    env.remote.write(f"{MANIFESTS}/40-policy.yaml", POLICY.format(wave=30))
    env.remote.commit_and_push("a policy")
    assert env.sync().ok
    env.remote.remove("crds/clusterpolicies.yaml")
    env.remote.commit_and_push("the platform team installs the policy CRD now")
    plan = env.plan(online=False)
    assert planned(plan)["ClusterPolicy/p1"] == "unchanged"
    assert prunes_planned(plan) == []
    online = env.plan(online=True)
    assert planned(online)["ClusterPolicy/p1"] == "unchanged" and prunes_planned(online) == []


def test_online_plan_survives_a_malformed_crd(env: Env):
    """A CRD whose names is not a mapping does not crash the online plan."""
    env.remote.write("crds/broken.yaml", POLICY_CRD.replace(
        "  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {singular}}}",
        "  names: Bad").format(scope="Cluster"))
    env.remote.commit_and_push("a broken CRD")
    plan = env.plan(online=True)
    assert any(o.ref.name == "clusterpolicies.example.org" for o in plan.objects)


def test_default_cache_is_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               remote: gitrepo.GitRemote):
    """Without --cache-dir, plan caches Git objects in the user's cache folder: a checkout
    planned in stays clean (so `intent publish` does not find it dirty)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(remote.work)
    assert cli.main(["plan", "--repo", ".", "--site", SITE, "--ref", "HEAD"]) == 0
    assert gitrepo.git("status", "--porcelain", cwd=remote.work) == ""
    assert list((tmp_path / "xdg" / "intent-reconciler" / "plan").glob("*.git"))


def test_offline_scope_of_a_crd_kind_in_a_k8s_io_group_is_not_guessed():
    """gateway.networking.k8s.io comes from CRDs: without its CRD in the repository, a
    GatewayClass (cluster-scoped) is shown as written, never put in `default`; a built-in
    kind still is."""
    from reconciler.repo import documents

    def manifest(api_version: str, kind: str) -> documents.Manifest:
        return documents.Manifest(location=documents.Location(file="m.yaml", document=0, line=1),
                                  body={"apiVersion": api_version, "kind": kind,
                                        "metadata": {"name": "x"}})

    import types

    scope = planner._Scope(types.SimpleNamespace(crds=(), manifests=()))  # no CRDs at all
    gateway = scope.ref(manifest("gateway.networking.k8s.io/v1", "GatewayClass"))
    assert gateway.namespace is None
    assert scope.ref(manifest("v1", "ConfigMap")).namespace == "default"
    assert scope.ref(manifest("rbac.authorization.k8s.io/v1", "ClusterRole")).namespace is None

"""Site policy (#12 item 7): namespaces and kinds the operator allows, no silent adoption,
and the move of a site's objects from the shared field manager to its own."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler import cluster, contract, errors
from reconciler.manager import plan as planner
from reconciler.repo import documents
from reconciler.site import abort, managers, pipeline, prune, rollout, state
from reconciler.site import policy as policies
from tests import fakes, gitrepo, sites

SITE = "edge-a"
MINE = contract.field_manager(SITE)


def manifest(kind: str, name: str, *, namespace: str | None = "ran",
             api_version: str = "v1", file: str = "m.yaml",
             annotations: dict[str, str] | None = None, **extra: Any) -> documents.Manifest:
    metadata: dict[str, Any] = {"name": name, "annotations": {
        contract.ANNOTATION_INTENT_ID: "i", **(annotations or {})}}
    if namespace:
        metadata["namespace"] = namespace
    return documents.Manifest(location=documents.Location(file=file, document=0, line=3),
                              body={"apiVersion": api_version, "kind": kind,
                                    "metadata": metadata, **extra})


def refused(policy: policies.Policy, *items: documents.Manifest,
            crds: tuple[documents.Manifest, ...] = ()) -> list[str]:
    return [str(r) for r in policies.check(policy=policy, manifests=items, crds=crds,
                                           intent_id="i")]


# --- namespaces -------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", policies.DEFAULT_DENIED_NAMESPACES)
def test_kube_namespaces_are_denied_by_default(namespace: str):
    """With no flag, an object in kube-system, kube-public or kube-node-lease is refused,
    naming the file, the object and the rule."""
    assert refused(policies.DEFAULT, manifest("ConfigMap", "c", namespace=namespace,
                                              file="sites/edge-a/manifests/c.yaml")) == [
        f"sites/edge-a/manifests/c.yaml:3: ConfigMap/{namespace}/c: namespace {namespace} is "
        f"denied by default (lift it with --allow-namespace {namespace}) "
        "(rule: policy-namespace)"]


def test_a_namespace_object_counts_as_the_namespace_it_names():
    """Applying (and so adopting) the Namespace kube-node-lease is as refused as writing
    into it."""
    found = policies.check(policy=policies.DEFAULT, intent_id="i",
                           manifests=[manifest("Namespace", "kube-node-lease", namespace=None)])
    assert [(r.object, r.rule) for r in found] == [("Namespace/kube-node-lease",
                                                    policies.RULE_NAMESPACE)]


def test_naming_a_default_denied_namespace_exactly_lifts_it():
    """`--allow-namespace kube-system` lets kube-system in; a pattern matching it does not."""
    item = manifest("ConfigMap", "c", namespace="kube-system")
    assert refused(policies.Policy(allow_namespaces=("kube-system",)), item) == []
    assert refused(policies.Policy(allow_namespaces=("kube-*",)), item) != []


def test_an_allow_list_admits_only_its_namespaces_and_patterns():
    """With --allow-namespace, any other namespace is refused; shell patterns match."""
    policy = policies.Policy(allow_namespaces=("sfo-*", "shared"))
    assert refused(policy, manifest("ConfigMap", "a", namespace="sfo-ran"),
                   manifest("ConfigMap", "b", namespace="shared")) == []
    assert refused(policy, manifest("ConfigMap", "c", namespace="nyc-ran")) == [
        "m.yaml:3: ConfigMap/nyc-ran/c: namespace nyc-ran is not allowed (--allow-namespace "
        "sfo-*, shared) (rule: policy-namespace)"]


def test_a_deny_wins_over_an_allow():
    """A namespace both allowed (by a pattern) and denied is refused."""
    policy = policies.Policy(allow_namespaces=("sfo-*",), deny_namespaces=("sfo-secret",))
    assert [r.rule for r in policies.check(policy=policy, intent_id="i", manifests=[
        manifest("ConfigMap", "c", namespace="sfo-secret")])] == [policies.RULE_NAMESPACE]


def test_a_namespaced_object_without_a_namespace_is_held_to_default():
    """The server puts it in `default`, so the policy does; a cluster-scoped object (a
    built-in kind, or one the repository's CRD declares Cluster) has no namespace."""
    policy = policies.Policy(allow_namespaces=("ran",))
    crd = manifest("CustomResourceDefinition", "sites.x.io", namespace=None,
                   api_version="apiextensions.k8s.io/v1",
                   spec={"group": "x.io", "scope": "Cluster", "names": {"kind": "Site"},
                         "versions": [{"name": "v1", "served": True}]})
    assert [r.object for r in policies.check(policy=policy, crds=[crd], intent_id="i",
                                             manifests=[
        manifest("ConfigMap", "nowhere", namespace=None),
        manifest("ClusterRole", "reader", namespace=None,
                 api_version="rbac.authorization.k8s.io/v1"),
        manifest("Site", "sfo", namespace=None, api_version="x.io/v1"),
    ])] == ["ConfigMap/nowhere"]


# --- kinds ------------------------------------------------------------------------------


def test_a_denied_kind_is_refused_in_every_group_when_spelled_bare():
    """`--deny-kind ClusterRoleBinding` stops a repository granting cluster-admin."""
    binding = manifest("ClusterRoleBinding", "admin", namespace=None,
                       api_version="rbac.authorization.k8s.io/v1")
    assert refused(policies.Policy(deny_kinds=("ClusterRoleBinding",)), binding) == [
        "m.yaml:3: ClusterRoleBinding/admin: kind "
        "ClusterRoleBinding.rbac.authorization.k8s.io is denied (--deny-kind "
        "ClusterRoleBinding) (rule: policy-kind)"]


def test_kind_dot_group_matches_that_group_only():
    """`Secret.x.io` denies x.io's Secret, not the core Secret."""
    policy = policies.Policy(deny_kinds=("Secret.x.io",))
    assert [r.object for r in policies.check(policy=policy, intent_id="i", manifests=[
        manifest("Secret", "core"), manifest("Secret", "custom", api_version="x.io/v1"),
    ])] == ["Secret/ran/custom"]


def test_an_allow_list_of_kinds_admits_only_those():
    """With --allow-kind, any other kind is refused, the CRDs of crds/ included."""
    policy = policies.Policy(allow_kinds=("ConfigMap", "Deployment.apps"))
    crd = manifest("CustomResourceDefinition", "w.x.io", namespace=None,
                   api_version="apiextensions.k8s.io/v1")
    found = policies.check(policy=policy, crds=[crd], intent_id="i", manifests=[
        manifest("ConfigMap", "c"), manifest("Deployment", "d", api_version="apps/v1"),
        manifest("Deployment", "old", api_version="extensions/v1beta1")])
    assert [(r.object, r.rule) for r in found] == [
        ("CustomResourceDefinition/w.x.io", policies.RULE_KIND),
        ("Deployment/ran/old", policies.RULE_KIND)]


# --- prune ------------------------------------------------------------------------------


def test_prune_is_not_permitted_outside_the_policy():
    """outside() names why an inventoried object must stay: a denied kind or namespace,
    a Namespace by its own name; empty for one inside the policy."""
    policy = policies.Policy(deny_kinds=("Secret",))
    assert "policy-kind" in policies.outside(
        policy=policy, ref=cluster.ObjectRef("v1", "Secret", "ran", "s"))
    assert "policy-namespace" in policies.outside(
        policy=policy, ref=cluster.ObjectRef("v1", "Namespace", None, "kube-node-lease"))
    assert policies.outside(policy=policy,
                            ref=cluster.ObjectRef("v1", "ConfigMap", "ran", "c")) == ""


def test_prune_leaves_an_object_outside_the_policy():
    """A stale object in a namespace the policy denies is never deleted, not even read."""
    target = fakes.FakeCluster()
    for namespace in ("kube-system", "ran"):
        target.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "c", "namespace": namespace, "labels": {contract.LABEL_SITE: SITE}}})
    stale = [state.InventoryEntry(id=f"{namespace}_c__ConfigMap", api_version="v1",
                                  kind="ConfigMap", namespace=namespace, name="c",
                                  intent_id="i", applied_at="2026-12-01T00:00:00Z")
             for namespace in ("kube-system", "ran")]
    deleted: list[Any] = []
    prune.run(target=target, site=SITE, stale=stale, abort=abort.Abort(), into=deleted)
    assert [str(r.ref) for r in deleted] == ["ConfigMap/ran/c"]
    assert ("get", "ConfigMap/kube-system/c") not in target.calls
    assert cluster.ObjectRef("v1", "ConfigMap", "kube-system", "c") in target.objects


# --- adoption ---------------------------------------------------------------------------


def live_object(labels: dict[str, str] | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ran", "labels": labels or {}}}


def test_an_object_that_is_not_the_sites_is_not_adopted():
    """An existing object without the site's label is refused, naming the label found."""
    none = policies.adoption(manifest=manifest("ConfigMap", "c"), live=live_object(None),
                             site=SITE)
    other = policies.adoption(manifest=manifest("ConfigMap", "c"),
                              live=live_object({contract.LABEL_SITE: "edge-b"}), site=SITE)
    assert none is not None and other is not None
    assert str(none) == (
        "m.yaml:3: ConfigMap/ran/c: exists and was not applied for site edge-a (it carries "
        "no reconciler.dev/site label); not taken over: set the annotation "
        "reconciler.dev/adopt: \"enabled\" on the manifest to adopt it (rule: adoption)")
    assert "it carries reconciler.dev/site=edge-b, another site's" in str(other)


def test_the_sites_own_absent_or_annotated_objects_are_applied():
    """No refusal for the site's own object, an absent one, or a manifest that adopts."""
    mine = live_object({contract.LABEL_SITE: SITE})
    adopting = manifest("ConfigMap", "c",
                        annotations={contract.ANNOTATION_ADOPT: contract.ADOPT_ENABLED})
    assert policies.adoption(manifest=manifest("ConfigMap", "c"), live=mine, site=SITE) is None
    assert policies.adoption(manifest=manifest("ConfigMap", "c"), live=None, site=SITE) is None
    assert policies.adoption(manifest=adopting, live=live_object(None), site=SITE) is None


def run(target: fakes.FakeCluster, items: list[documents.Manifest]) -> rollout.Result:
    return rollout.run(target=target, site=SITE, crds=(), manifests=items,
                       abort=abort.Abort(), on_progress=lambda waves: None, poll_interval=0.01)


def test_a_rollout_refuses_to_adopt_before_its_first_write():
    """One unlabelled existing object fails the rollout before any wave is applied: no
    write at all, the failure naming the object and the rule."""
    target = fakes.FakeCluster()
    target.objects[cluster.ObjectRef("v1", "ConfigMap", "ran", "c")] = live_object(None)
    result = run(target, [manifest("ConfigMap", "a"), manifest("ConfigMap", "c")])
    assert result.phase is state.Outcome.FAILED
    assert "ConfigMap/ran/c" in result.message and "(rule: adoption)" in result.message
    assert [f.ref.name for f in result.failures] == ["c"]
    assert target.applied() == []


def test_a_pass_over_the_sites_own_objects_reads_nothing_more():
    """Objects the site's list found (its label) cost no GET: only unknown ones are read."""
    target = fakes.FakeCluster()
    items = [manifest("ConfigMap", "a"), manifest("ConfigMap", "b")]
    assert run(target, items).phase is state.Outcome.SUCCEEDED
    first = [c for c in target.calls if c[0] == "get"]
    target.calls.clear()
    assert run(target, items).phase is state.Outcome.SUCCEEDED
    assert first == [("get", "ConfigMap/ran/a"), ("get", "ConfigMap/ran/b")]
    assert [c for c in target.calls if c[0] in ("get", "apply", "patch")] == []


def test_the_sites_manifests_are_applied_as_its_own_field_manager():
    """A site's manifests are applied as `reconciler/<site>`, crds/ as the shared one."""
    target = fakes.FakeCluster()
    crd = manifest("CustomResourceDefinition", "ws.x.io", namespace=None,
                   api_version="apiextensions.k8s.io/v1",
                   spec={"group": "x.io", "scope": "Namespaced", "names": {"kind": "W"},
                         "versions": [{"name": "v1", "served": True}]})
    rollout.run(target=target, site=SITE, crds=[crd], manifests=[manifest("ConfigMap", "a")],
                abort=abort.Abort(), on_progress=lambda waves: None)
    managers_of = {str(ref): [e["manager"] for e in obj["metadata"]["managedFields"]]
                   for ref, obj in target.objects.items()}
    assert managers_of == {"CustomResourceDefinition/ws.x.io": ["reconciler"],
                           "ConfigMap/ran/a": [MINE]}


# --- field manager migration ------------------------------------------------------------


def entry(manager: str, fields: dict[str, Any], *, operation: str = "Apply") -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "apiVersion": "v1",
            "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields}


def legacy_object(*entries: dict[str, Any], site: str = SITE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "c", "namespace": "ran", "resourceVersion": "7",
        "labels": {contract.LABEL_SITE: site}, "managedFields": list(entries)}}


def test_the_shared_managers_apply_entry_is_renamed_to_the_sites():
    """The legacy `reconciler` Apply entry becomes `reconciler/<site>`; others stay."""
    edit = entry("kubectl-edit", {"f:data": {"f:x": {}}}, operation="Update")
    moved = managers.migrated_entries(
        legacy_object(entry("reconciler", {"f:data": {"f:k": {}}}), edit), site=SITE)
    assert moved == [edit, entry(MINE, {"f:data": {"f:k": {}}})]


def test_an_entry_the_site_already_has_is_merged_with_the_shared_one():
    """When the site's manager applied too, its entry takes the union of both field sets."""
    moved = managers.migrated_entries(legacy_object(
        entry("reconciler", {"f:data": {"f:old": {}}}),
        entry(MINE, {"f:data": {"f:new": {}}})), site=SITE)
    assert moved == [entry(MINE, {"f:data": {"f:old": {}, "f:new": {}}})]


def test_nothing_is_migrated_on_another_sites_object_or_without_a_legacy_entry():
    """Only objects carrying this site's label, with a shared-manager Apply entry."""
    legacy = entry("reconciler", {"f:data": {}})
    assert managers.migrated_entries(legacy_object(legacy, site="edge-b"), site=SITE) is None
    assert managers.migrated_entries(legacy_object(entry(MINE, {"f:data": {}})),
                                     site=SITE) is None


def test_a_rollout_migrates_then_removes_a_field_taken_out_of_the_manifest():
    """An object applied under `reconciler` is patched once (guarded by its
    resourceVersion) to the site's manager before it is compared, so the next apply owns
    exactly the manifest's fields."""
    target = fakes.FakeCluster()
    target.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "a", "namespace": "ran", "labels": {contract.LABEL_SITE: SITE,
                                                    contract.LABEL_MANAGED_BY: "reconciler"},
        "annotations": {contract.ANNOTATION_INTENT_ID: "i"}}, "data": {"k": "v", "gone": "x"}},
        field_manager=contract.LEGACY_FIELD_MANAGER)
    result = run(target, [manifest("ConfigMap", "a", data={"k": "v"})])
    assert result.phase is state.Outcome.SUCCEEDED
    assert ("patch", "ConfigMap/ran/a") in target.calls
    live = target.objects[cluster.ObjectRef("v1", "ConfigMap", "ran", "a")]
    assert [e["manager"] for e in live["metadata"]["managedFields"]] == [MINE]
    assert live["data"] == {"k": "v"}


# --- the pipeline and the command line -------------------------------------------------


def test_a_revision_outside_the_policy_is_refused_with_zero_writes(
        tmp_path: Path, remote: gitrepo.GitRemote):
    """A revision adding an object in kube-system is refused whole: exit not ok, the
    finding names file, object and rule, nothing is written, the intent in force stays."""
    env = sites.Env(tmp_path, remote)
    assert env.sync().ok
    before = env.store.load().accepted
    env.cluster.calls.clear()
    gitrepo.restamp(remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    remote.write(f"sites/{sites.SITE}/manifests/40-kube.yaml",
                 "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: grab\n"
                 "  namespace: kube-system\n  annotations:\n"
                 "    reconciler.dev/intent-id: sfo-2\n")
    remote.commit_and_push("sfo-2 with a ConfigMap in kube-system")
    result = env.sync()
    assert not result.ok
    assert result.errors == (
        f"sites/{sites.SITE}/manifests/40-kube.yaml:1: ConfigMap/kube-system/grab: namespace "
        "kube-system is denied by default (lift it with --allow-namespace kube-system) "
        "(rule: policy-namespace)",)
    assert [c for c in env.cluster.calls if c[0] in ("apply", "delete", "patch")] == []
    assert env.store.load().accepted == before


def test_the_cli_refuses_a_malformed_kind_or_namespace_rule(tmp_path: Path):
    """--deny-kind and --allow-namespace are checked as they are parsed: exit 2."""
    for flag, value in (("--deny-kind", "rbac/ClusterRoleBinding"),
                        ("--allow-namespace", "Kube_System")):
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "sync", "--repo", str(tmp_path), "--site",
             "edge-a", "--state-dir", str(tmp_path), flag, value],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert f"{value!r} is not a" in done.stderr


def test_options_carry_the_policy_from_the_flags():
    """The flags of sync reach pipeline.Options as a Policy."""
    from reconciler import cli

    args = cli.build_parser().parse_args([
        "sync", "--repo", "x", "--site", "edge-a", "--allow-namespace", "sfo-*",
        "--deny-namespace", "sfo-secret", "--allow-kind", "ConfigMap", "--deny-kind",
        "ClusterRoleBinding"])
    options: pipeline.Options = cli._options(args, "edge-a")
    assert options.policy == policies.Policy(
        allow_namespaces=("sfo-*",), deny_namespaces=("sfo-secret",),
        allow_kinds=("ConfigMap",), deny_kinds=("ClusterRoleBinding",))


# --- plan -------------------------------------------------------------------------------


def test_plan_reports_an_object_outside_the_policy_as_an_error(
        tmp_path: Path, remote: gitrepo.GitRemote):
    """`plan` with the site's policy names the same finding sync would refuse."""
    options = planner.Options(url=remote.url, site=sites.SITE, state_dir=tmp_path / "state",
                              cache_dir=tmp_path / "cache",
                              policy=policies.Policy(deny_kinds=("ConfigMap",)))
    found = planner.make(options=options, target=None)
    assert not found.ok
    assert found.errors == (
        f"sites/{sites.SITE}/manifests/30-configmap.yaml:2: ConfigMap/sfo-ran/sfo-site-config: "
        "kind ConfigMap is denied (--deny-kind ConfigMap) (rule: policy-kind)",)


def test_plan_reports_an_object_the_rollout_would_not_adopt():
    """Online, an existing object that is not the site's is reported as failing, as the
    rollout would fail it; one of the site's own is compared as usual."""
    target = fakes.FakeCluster()
    target.objects[cluster.ObjectRef("v1", "ConfigMap", "ran", "c")] = live_object(None)
    previews = planner._preview(target=target, site=SITE, crds=(),
                                manifests=[manifest("ConfigMap", "c"), manifest("ConfigMap", "n")])
    assert [(str(p.ref), p.change, p.error.endswith("(rule: adoption)")) for p in previews] == [
        ("ConfigMap/ran/c", None, True), ("ConfigMap/ran/n", cluster.Change.CREATED, False)]
    assert target.applied() == []


# --- review findings (#12 item 7): scopes, shared CRDs, kind spellings, kept inventory ----


def widget_crd(scope: str, *, intent_id: str = "i", file: str = "m.yaml") -> documents.Manifest:
    return manifest("CustomResourceDefinition", "widgets.x.io", namespace=None, file=file,
                    api_version="apiextensions.k8s.io/v1",
                    annotations={contract.ANNOTATION_INTENT_ID: intent_id},
                    spec={"group": "x.io", "scope": scope, "names": {"kind": "Widget"},
                          "versions": [{"name": "v1", "served": True}]})


def test_a_crd_the_fence_drops_tells_no_scope():
    """A site CRD carrying a stale intent id is never applied, so its `scope: Cluster`
    does not exempt a Widget without a namespace from the namespace rules."""
    policy = policies.Policy(allow_namespaces=("sfo-*",))
    widget = manifest("Widget", "w1", namespace=None, api_version="x.io/v1")
    dropped = policies.check(policy=policy, intent_id="i", manifests=[
        widget_crd("Cluster", intent_id="stale"), widget])
    applied = policies.check(policy=policy, intent_id="i", manifests=[
        widget_crd("Cluster"), widget])
    assert [(r.object, r.rule, r.reason) for r in dropped] == [
        ("Widget/w1", policies.RULE_NAMESPACE,
         "namespace default is not allowed (--allow-namespace sfo-*)")]
    assert applied == ()


def test_the_clusters_scope_wins_over_the_repositorys_crd():
    """For a kind the cluster serves namespaced, a repository CRD (crds/ or the site's)
    calling it Cluster changes nothing: the object without a namespace is in default."""
    target = fakes.FakeCluster()
    target.kinds[("x.io/v1", "Widget")] = True
    policy = policies.Policy(allow_namespaces=("sfo-*",))
    widget = manifest("Widget", "w1", namespace=None, api_version="x.io/v1")
    found = policies.check(policy=policy, intent_id="i", crds=[widget_crd("Cluster")],
                           manifests=[widget_crd("Cluster"), widget],
                           served=policies.served_scope(target))
    assert [r.object for r in found] == ["Widget/w1"]
    assert policies.served_scope(None) is None


def test_a_rollout_never_writes_a_ref_the_cluster_resolves_outside_the_policy():
    """The last guard: whatever the check before said (no cluster, say), an object the
    cluster places in `default` is refused before any write of the site's manifests,
    rule policy-namespace, and the write itself is refused too."""
    target = fakes.FakeCluster()
    target.kinds[("x.io/v1", "Widget")] = True
    policy = policies.Policy(allow_namespaces=("sfo-*",))
    result = rollout.run(target=target, site=SITE, crds=(), abort=abort.Abort(),
                         manifests=[manifest("ConfigMap", "a", namespace="sfo-ran"),
                                    manifest("Widget", "w1", namespace=None,
                                             api_version="x.io/v1")],
                         on_progress=lambda waves: None, policy=policy)
    assert result.phase is state.Outcome.FAILED
    assert "Widget/default/w1" in result.message
    assert "namespace default is not allowed" in result.message
    assert "(rule: policy-namespace)" in result.message
    assert target.applied() == []
    with pytest.raises(Exception, match=r"apply refused: outside the site's policy"):
        rollout._apply_one(target=target, site=SITE, abort=abort.Abort(), live={}, wave=0,
                           intent_bound=True, policy=policy,
                           manifest=manifest("Widget", "w1", namespace=None,
                                             api_version="x.io/v1"))
    assert target.applied() == []


def helm_crd(labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.x.io", "labels": labels},
            "spec": {"group": "x.io", "scope": "Namespaced", "names": {"kind": "Widget"},
                     "versions": [{"name": "v1", "served": True}]}}


def test_a_crd_someone_else_installed_is_not_taken_over_by_crds():
    """An existing CRD without the reconciler's labels (installed by Helm) fails the
    rollout before anything is applied, naming crds/ and the adopt annotation; annotated,
    it is adopted."""
    target = fakes.FakeCluster()
    target.apply(helm_crd({"owner": "helm"}), field_manager="helm")
    target.calls.clear()
    crd = widget_crd("Namespaced", file="crds/widgets.yaml")
    result = rollout.run(target=target, site=SITE, crds=[crd], abort=abort.Abort(),
                         manifests=[manifest("ConfigMap", "a")], on_progress=lambda w: None)
    assert result.phase is state.Outcome.FAILED
    assert ("crds/widgets.yaml:3: CustomResourceDefinition/widgets.x.io: exists and was not "
            "applied by the reconciler (it carries neither app.kubernetes.io/managed-by="
            "reconciler nor a reconciler.dev/site label); not taken over: set the annotation "
            "reconciler.dev/adopt: \"enabled\" on the CRD in crds/ to adopt it "
            "(rule: adoption)") in result.message
    assert target.applied() == []
    adopting = widget_crd("Namespaced", file="crds/widgets.yaml")
    adopting.body["metadata"]["annotations"][contract.ANNOTATION_ADOPT] = "enabled"
    result = rollout.run(target=target, site=SITE, crds=[adopting], abort=abort.Abort(),
                         manifests=[manifest("ConfigMap", "a")], on_progress=lambda w: None)
    assert result.phase is state.Outcome.SUCCEEDED, result.message


@pytest.mark.parametrize("labels", [{contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE},
                                    {contract.LABEL_SITE: "edge-other"}])
def test_a_crd_any_site_applied_is_the_reconcilers_and_gets_no_site_label(
        labels: dict[str, str]):
    """crds/ is shared: a CRD carrying the managed-by label or any site's label is applied
    without a refusal, and ends with the managed-by label and no site label, so two sites
    on one cluster do not flip it back and forth."""
    target = fakes.FakeCluster()
    target.apply(helm_crd(labels), field_manager=contract.SHARED_FIELD_MANAGER)
    crd = widget_crd("Namespaced", file="crds/widgets.yaml")
    result = rollout.run(target=target, site=SITE, crds=[crd], abort=abort.Abort(),
                         manifests=[manifest("ConfigMap", "a")], on_progress=lambda w: None)
    assert result.phase is state.Outcome.SUCCEEDED, result.message
    live = target.objects[cluster.ObjectRef("apiextensions.k8s.io/v1",
                                            "CustomResourceDefinition", None, "widgets.x.io")]
    assert live["metadata"]["labels"] == {contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE}


def test_a_second_pass_over_the_shared_crds_reads_no_single_crd():
    """The shared CRDs are found by one list (the managed-by label): no GET of a CRD."""
    target = fakes.FakeCluster()
    crd = widget_crd("Namespaced", file="crds/widgets.yaml")
    for _ in range(2):
        target.calls.clear()
        result = rollout.run(target=target, site=SITE, crds=[crd], abort=abort.Abort(),
                             manifests=[manifest("ConfigMap", "a")],
                             on_progress=lambda w: None)
        assert result.phase is state.Outcome.SUCCEEDED, result.message
    assert ("get", "CustomResourceDefinition/widgets.x.io") not in target.calls


@pytest.mark.parametrize(("rule", "says"), [
    ("clusterrolebinding", "did you mean ClusterRoleBinding?"),
    ("clusterrolebindings", "did you mean ClusterRoleBinding?"),
    ("ClusterRoleBindings", "the Kind is singular, write ClusterRoleBinding"),
    ("ClusterRoleBinding.rbac", "did you mean ClusterRoleBinding.rbac.authorization.k8s.io?"),
    ("ConfigMap.core", "the core group is written with no group: ConfigMap"),
])
def test_a_kind_rule_that_could_never_match_is_refused(rule: str, says: str):
    """A lower-case kind, a plural of a built-in kind or a group cut short would deny
    nothing: the rule is refused, saying how to spell it, and a Policy cannot hold it."""
    assert says in policies.kind_rule_problem(rule)
    with pytest.raises(errors.UsageError, match=f"--deny-kind '{rule}'"):
        policies.Policy(deny_kinds=(rule,))


@pytest.mark.parametrize("rule", ["ClusterRoleBinding", "Deployment.apps", "Endpoints",
                                  "CronJob.batch", "Widgets.x.example.com",
                                  "ClusterRoleBinding.rbac.authorization.k8s.io"])
def test_well_spelled_kind_rules_are_accepted(rule: str):
    """Built-in kinds in CamelCase, dotless built-in groups, custom groups (any plural
    spelling: their kinds are not known) pass."""
    assert policies.kind_rule_problem(rule) == ""


def test_the_cli_refuses_a_kind_rule_that_could_never_match(tmp_path: Path):
    """`--deny-kind clusterrolebinding` is a usage error (exit 2) naming the flag and the
    spelling to use."""
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "sync", "--repo", str(tmp_path), "--site",
         "edge-a", "--state-dir", str(tmp_path), "--deny-kind", "ClusterRoleBinding.rbac"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "argument --deny-kind: 'ClusterRoleBinding.rbac' is not a kind rule" in done.stderr
    assert "ClusterRoleBinding.rbac.authorization.k8s.io" in done.stderr


def test_prune_reports_what_it_kept_that_stays_the_sites():
    """Objects kept outside the policy stay the site's (returned); one marked prune
    disabled is let go of, as is one that lost the site's label or is gone."""
    target = fakes.FakeCluster()
    entries = []
    for name, labels, notes in (
            ("outside", {contract.LABEL_SITE: SITE}, {}),
            ("disabled", {contract.LABEL_SITE: SITE}, {contract.ANNOTATION_PRUNE: "disabled"}),
            ("theirs", {contract.LABEL_SITE: "edge-b"}, {}),
            ("deleted", {contract.LABEL_SITE: SITE}, {})):
        namespace = "kube-system" if name == "outside" else "ran"
        target.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": name, "namespace": namespace, "labels": labels,
            "annotations": notes}})
        entries.append(state.InventoryEntry(
            id=f"{namespace}_{name}__ConfigMap", api_version="v1", kind="ConfigMap",
            namespace=namespace, name=name, intent_id="i", applied_at="2026-12-01T00:00:00Z"))
    entries.append(dataclasses.replace(entries[-1], id="ran_gone__ConfigMap", name="gone"))
    deleted: list[Any] = []
    kept = prune.run(target=target, site=SITE, stale=entries, abort=abort.Abort(),
                     into=deleted)
    assert kept == {"kube-system_outside__ConfigMap"}
    assert [str(r.ref) for r in deleted] == ["ConfigMap/ran/deleted"]


def test_an_object_kept_outside_the_policy_is_pruned_once_the_policy_allows(
        tmp_path: Path, remote: gitrepo.GitRemote):
    """Tightening the policy keeps a stale object and its inventory entry; loosening it
    later lets the next prune delete it."""
    env = sites.Env(tmp_path, remote)
    assert env.sync().ok
    config = cluster.ObjectRef("v1", "ConfigMap", "sfo-ran", "sfo-site-config")
    assert config in env.cluster.objects
    remote.remove(f"sites/{sites.SITE}/manifests/30-configmap.yaml")
    gitrepo.restamp(remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    remote.commit_and_push("sfo-2 drops the ConfigMap")
    env.options = dataclasses.replace(env.options,
                                      policy=policies.Policy(deny_kinds=("ConfigMap",)))
    assert env.sync().ok
    assert config in env.cluster.objects
    assert config.inventory_id in {e.id for e in env.store.load().inventory}
    env.options = dataclasses.replace(env.options, policy=policies.DEFAULT)
    result = env.sync()
    assert result.ok, result.message
    assert config not in env.cluster.objects
    assert config.inventory_id not in {e.id for e in env.store.load().inventory}

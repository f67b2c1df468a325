"""Site policy on both clusters (#12 item 7): a revision with an object outside the
operator's namespaces and kinds is refused before any write; prune never deletes outside
the policy; an existing object that is not the site's is not adopted silently."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler import contract
from reconciler.site import policy as policies
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl, kubectl_run

pytestmark = pytest.mark.e2e

MANIFESTS = f"sites/{SITE}/manifests"


def exists(target: ClusterUnderTest, *what: str) -> bool:
    return kubectl_run(target, "get", *what).returncode == 0


def new_intent(remote: gitrepo.GitRemote, new_id: str, sequence: int,
               files: dict[str, str], message: str) -> None:
    """Restamp the site for `new_id` and add `files` (manifests carrying `new_id`)."""
    gitrepo.restamp(remote, site=SITE, new_id=new_id, sequence=sequence)
    for name, text in files.items():
        remote.write(f"{MANIFESTS}/{name}", text)
    remote.commit_and_push(f"{message}\n\nIntent-Id: {new_id}")


def test_an_object_in_kube_system_is_refused_before_any_write(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """`sync` exits 1 naming the file, the object and the rule; nothing of the revision is
    written (not even its other objects), and the intent in force stays."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync_cli().returncode == 0
    new_intent(remote, "sfo-2", 2, {
        "25-extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n"
                         "  namespace: sfo-ran\n  annotations:\n"
                         "    reconciler.dev/intent-id: sfo-2\ndata:\n  k: v\n",
        "40-grab.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: grab\n"
                        "  namespace: kube-system\n  annotations:\n"
                        "    reconciler.dev/intent-id: sfo-2\n"}, "sfo-2 reaches into kube-system")
    mark = any_cluster.mark()
    refused = site.sync_cli()
    assert refused.returncode == 1
    assert (f"{MANIFESTS}/40-grab.yaml:1: ConfigMap/kube-system/grab: namespace kube-system "
            "is denied by default (lift it with --allow-namespace kube-system) "
            "(rule: policy-namespace)") in refused.stderr
    assert any_cluster.changed_since(mark) == []
    assert not exists(any_cluster, "configmap", "extra", "-n", "sfo-ran")
    record = site.store.load()
    assert record.accepted is not None and record.accepted.id == "sfo-baseline-1"


def test_a_denied_kind_stops_a_repository_granting_cluster_admin(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """With `--deny-kind ClusterRoleBinding` the binding is refused (rule policy-kind) and
    nothing is applied; without the flag the same revision is applied."""
    new_intent(remote, "sfo-rbac-2", 2, {
        "50-binding.yaml": "apiVersion: rbac.authorization.k8s.io/v1\n"
                           "kind: ClusterRoleBinding\nmetadata:\n  name: sfo-admin\n"
                           "  annotations:\n    reconciler.dev/intent-id: sfo-rbac-2\n"
                           "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n"
                           "  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n"
                           "- kind: ServiceAccount\n  name: default\n  namespace: sfo-ran\n"},
        "sfo-rbac-2 binds cluster-admin")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    mark = any_cluster.mark()
    refused = site.sync_cli("--deny-kind", "ClusterRoleBinding")
    assert refused.returncode == 1
    assert ("ClusterRoleBinding/sfo-admin: kind ClusterRoleBinding.rbac.authorization.k8s.io "
            "is denied (--deny-kind ClusterRoleBinding) (rule: policy-kind)") in refused.stderr
    assert any_cluster.changed_since(mark) == []
    try:
        assert site.sync_cli().returncode == 0
        assert exists(any_cluster, "clusterrolebinding", "sfo-admin")
    finally:
        kubectl_run(any_cluster, "delete", "clusterrolebinding", "sfo-admin",
                    "--ignore-not-found")


def test_prune_never_deletes_outside_the_policy(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """Objects the site applied in a namespace the operator later denies stay when a new
    intent no longer desires them; the rest of the prune happens."""
    extra = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sfo-extra\n"
             "  annotations:\n    reconciler.dev/intent-id: sfo-2\n    reconciler.dev/wave: \"0\"\n"
             "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n"
             "  namespace: sfo-extra\n  annotations:\n    reconciler.dev/intent-id: sfo-2\n"
             "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pruned\n"
             "  namespace: sfo-ran\n  annotations:\n    reconciler.dev/intent-id: sfo-2\n")
    new_intent(remote, "sfo-2", 2, {"40-extra.yaml": extra}, "sfo-2 adds sfo-extra")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    remote.remove(f"{MANIFESTS}/40-extra.yaml")
    new_intent(remote, "sfo-3", 3, {}, "sfo-3 drops sfo-extra")
    site.options = dataclasses.replace(
        site.options, policy=policies.Policy(deny_namespaces=("sfo-extra",)))
    result = site.sync()
    assert result.ok, result.message
    assert exists(any_cluster, "namespace", "sfo-extra")
    assert exists(any_cluster, "configmap", "kept", "-n", "sfo-extra")
    assert not exists(any_cluster, "configmap", "pruned", "-n", "sfo-ran")
    # Waited for: a namespace still terminating would be found by the next test's check
    # for a lost state (it carries the site's label).
    kubectl_run(any_cluster, "delete", "namespace", "sfo-extra", "--timeout=60s")


def test_an_existing_namespace_is_not_adopted_unless_its_manifest_says_so(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """The site's namespace created beforehand by someone else fails the rollout (rule
    adoption, naming the object and that it carries no site label) before any of the
    site's manifests is written; `reconciler.dev/adopt: "enabled"` takes it over."""
    created = kubectl_run(any_cluster, "create", "namespace", "sfo-ran")
    assert created.returncode == 0, created.stderr
    try:
        site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
        mark = any_cluster.mark()
        refused = site.sync_cli()
        assert refused.returncode == 1
        assert (f"{MANIFESTS}/00-namespace.yaml:2: Namespace/sfo-ran: exists and was not "
                f"applied for site {SITE} (it carries no reconciler.dev/site label); not "
                "taken over") in refused.stderr
        assert "(rule: adoption)" in refused.stderr
        site_writes = [w for w in (any_cluster.changed_since(mark))
                       if "customresourcedefinitions" not in w]
        assert site_writes == []
        labels = kubectl(any_cluster, "get", "namespace", "sfo-ran", "-o", "json")[
            "metadata"].get("labels", {})
        assert contract.LABEL_SITE not in labels

        namespace = f"{MANIFESTS}/00-namespace.yaml"
        remote.write(namespace, remote.read(namespace).replace(
            "  annotations:\n", f"  annotations:\n    {contract.ANNOTATION_ADOPT}: "
            f"\"{contract.ADOPT_ENABLED}\"\n"))
        remote.commit_and_push("Adopt the namespace made by hand")
        adopted = site.sync_cli()
        assert adopted.returncode == 0, adopted.stderr
        labels = kubectl(any_cluster, "get", "namespace", "sfo-ran", "-o", "json")[
            "metadata"]["labels"]
        assert labels[contract.LABEL_SITE] == SITE
    finally:
        kubectl_run(any_cluster, "label", "namespace", "sfo-ran", f"{contract.LABEL_SITE}={SITE}",
                    "--overwrite")  # so the fixture's cleanup deletes it on a shared cluster


WIDGET_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.review.example.com
{extra}spec:
  group: review.example.com
  scope: {scope}
  names: {{plural: {plural}, singular: {singular}, kind: {kind}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def crd_text(kind: str, *, scope: str = "Namespaced", extra: str = "") -> str:
    return WIDGET_CRD.format(plural=kind.lower() + "s", singular=kind.lower(), kind=kind,
                             scope=scope, extra=extra)


def test_a_dropped_crd_cannot_take_a_served_kind_out_of_the_namespace_rules(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """The platform serves Widget namespaced; a site CRD with a stale intent id calling
    it Cluster tells nothing: a Widget without a namespace is held to `default`, refused
    under `--allow-namespace sfo-*` (rule policy-namespace), and nothing is written."""
    installed = tmp_path / "widget-crd.yaml"
    installed.write_text(crd_text("Widget"))
    done = kubectl_run(any_cluster, "apply", "--server-side", "--field-manager=platform",
                       "-f", str(installed))
    assert done.returncode == 0, done.stderr
    try:
        kubectl_run(any_cluster, "wait", "--for=condition=Established", "--timeout=30s",
                    "crd/widgets.review.example.com")
        remote.write(f"{MANIFESTS}/40-crd.yaml", crd_text(
            "Widget", scope="Cluster",
            extra="  annotations:\n    reconciler.dev/intent-id: stale-id\n"))
        remote.write(f"{MANIFESTS}/50-widget.yaml",
                     "apiVersion: review.example.com/v1\nkind: Widget\nmetadata:\n"
                     "  name: w1\n  annotations:\n    reconciler.dev/intent-id: "
                     "sfo-baseline-1\nspec: {size: 1}\n")
        remote.commit_and_push("a dropped CRD calls Widget cluster-scoped")
        site = Site(root=tmp_path / "site", remote_url=remote.url, target=any_cluster)
        site.options = dataclasses.replace(
            site.options, policy=policies.Policy(allow_namespaces=("sfo-*",)))
        mark = any_cluster.mark()
        result = site.sync()
        assert not result.ok
        assert (f"{MANIFESTS}/50-widget.yaml:1: Widget/w1: namespace default is not allowed "
                "(--allow-namespace sfo-*) (rule: policy-namespace)") in result.errors
        assert any_cluster.changed_since(mark) == []
        assert not exists(any_cluster, "widget", "w1", "-n", "default")
    finally:
        kubectl_run(any_cluster, "delete", "crd", "widgets.review.example.com",
                    "--ignore-not-found")


def test_a_crd_someone_else_installed_is_not_taken_over_by_crds(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """A CRD Helm installed that crds/ also declares fails the sync (rule adoption) before
    any write, its labels and managers untouched; `reconciler.dev/adopt: "enabled"` in
    crds/ takes it over with the managed-by label and no site label."""
    installed = tmp_path / "gadget-crd.yaml"
    installed.write_text(crd_text("Gadget", extra="  labels: {owner: helm}\n"))
    done = kubectl_run(any_cluster, "apply", "--server-side", "--field-manager=helm",
                       "-f", str(installed))
    assert done.returncode == 0, done.stderr
    try:
        remote.write("crds/gadgets.review.example.com.yaml", crd_text("Gadget"))
        remote.commit_and_push("crds/ declares Helm's Gadget CRD")
        site = Site(root=tmp_path / "site", remote_url=remote.url, target=any_cluster)
        mark = any_cluster.mark()
        refused = site.sync_cli()
        assert refused.returncode == 1
        assert ("crds/gadgets.review.example.com.yaml:1: CustomResourceDefinition/"
                "gadgets.review.example.com: exists and was not applied by the reconciler"
                ) in refused.stderr, refused.stderr
        assert "(rule: adoption)" in refused.stderr
        assert any_cluster.changed_since(mark) == []
        live = kubectl(any_cluster, "get", "crd", "gadgets.review.example.com",
                       "--show-managed-fields", "-o", "json")["metadata"]
        assert live["labels"] == {"owner": "helm"}
        assert contract.SHARED_FIELD_MANAGER not in [m["manager"] for m in
                                                     live["managedFields"]]

        remote.write("crds/gadgets.review.example.com.yaml", crd_text(
            "Gadget", extra=f"  annotations:\n    {contract.ANNOTATION_ADOPT}: "
                            f"\"{contract.ADOPT_ENABLED}\"\n"))
        remote.commit_and_push("adopt Helm's Gadget CRD")
        adopted = site.sync_cli()
        assert adopted.returncode == 0, adopted.stderr
        labels = kubectl(any_cluster, "get", "crd", "gadgets.review.example.com", "-o",
                         "json")["metadata"]["labels"]
        assert labels[contract.LABEL_MANAGED_BY] == contract.MANAGED_BY_VALUE
        assert contract.LABEL_SITE not in labels
    finally:
        kubectl_run(any_cluster, "delete", "crd", "gadgets.review.example.com",
                    "--ignore-not-found")


def test_an_object_kept_outside_the_policy_is_pruned_once_the_policy_allows(
        any_cluster: ClusterUnderTest, remote: gitrepo.GitRemote, tmp_path: Path):
    """A stale Secret prune kept because the operator denied the kind since stays in the
    inventory; once the deny is lifted, the next pass deletes it."""
    secret = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: later\n"
              "  namespace: sfo-ran\n  annotations:\n    reconciler.dev/intent-id: sfo-2\n"
              "stringData:\n  k: v\n")
    new_intent(remote, "sfo-2", 2, {"40-later.yaml": secret}, "sfo-2 adds a Secret")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    remote.remove(f"{MANIFESTS}/40-later.yaml")
    new_intent(remote, "sfo-3", 3, {}, "sfo-3 drops it")
    site.options = dataclasses.replace(site.options,
                                       policy=policies.Policy(deny_kinds=("Secret",)))
    result = site.sync()
    assert result.ok, result.message
    assert exists(any_cluster, "secret", "later", "-n", "sfo-ran")
    assert "sfo-ran_later__Secret" in {e.id for e in site.store.load().inventory}
    site.options = dataclasses.replace(site.options, policy=policies.DEFAULT)
    result = site.sync()
    assert result.ok, result.message
    assert not exists(any_cluster, "secret", "later", "-n", "sfo-ran")
    assert "sfo-ran_later__Secret" not in {e.id for e in site.store.load().inventory}

"""`reconciler rbac`, the permission error that points at it, and in-cluster configuration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel import yaml as ruamel_yaml

from reconciler import cli, contract, errors, kube
from reconciler.manager import rbac

ROOT = Path(__file__).resolve().parents[2]
SITE = "edge-sfo-01"
INTENT = (f"apiVersion: {contract.INTENT_API_VERSION}\nkind: Intent\nmetadata:\n"
          "  name: {site}\nspec:\n  id: i-1\n")


def sample(tmp_path: Path) -> Path:
    """A copy of the sample repository to add files to."""
    root = tmp_path / "fleet"
    shutil.copytree(contract.sample_repo_dir(), root)
    return root


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def obj(api_version: str, kind: str, name: str, namespace: str | None = "sfo-ran") -> str:
    ns = f"  namespace: {namespace}\n" if namespace else ""
    return (f"apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\n{ns}"
            f"  annotations:\n    {contract.ANNOTATION_INTENT_ID}: i-1\n")


def rules_of(result: rbac.Result) -> dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
    """group -> [(resources, verbs)]."""
    found: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
    for rule in result.rules:
        found.setdefault(rule.group, []).append((rule.resources, rule.verbs))
    return found


def run(root: Path, *sites: str) -> rbac.Result:
    return rbac.run(options=rbac.Options(root=root, sites=sites or (SITE,)))


# --- the rules -------------------------------------------------------------------------------


def test_sample_site_needs_its_kinds_and_the_shared_crds() -> None:
    """The sample site's kinds get the reconciler's verbs; crds/ gets the CRD rule."""
    result = run(contract.sample_repo_dir())
    assert rules_of(result) == {
        "": [(("configmaps", "namespaces"), rbac.SITE_VERBS)],
        "apiextensions.k8s.io": [(("customresourcedefinitions",), rbac.SHARED_CRD_VERBS)],
        "telco.example.com": [(("networkfunctions", "workloadclusters"), rbac.SITE_VERBS)],
    }
    assert result.shared_crds and not result.guessed
    assert {k.kind: k.source for k in result.kinds}["WorkloadCluster"].startswith("crds/")


def test_built_in_kinds_map_to_their_resources_in_every_version(tmp_path: Path) -> None:
    """Built-in kinds resolve from Kubernetes' discovery, by group and kind, any version."""
    root = sample(tmp_path)
    write(root, f"sites/{SITE}/manifests/40-more.yaml", "---\n".join([
        obj("apps/v1", "Deployment", "d"), obj("networking.k8s.io/v1", "NetworkPolicy", "n"),
        obj("rbac.authorization.k8s.io/v1", "ClusterRole", "c", namespace=None),
        obj("policy/v1", "PodDisruptionBudget", "p"), obj("v1", "Endpoints", "e"),
    ]))
    rules = rules_of(run(root))
    assert rules["apps"] == [(("deployments",), rbac.SITE_VERBS)]
    assert rules["networking.k8s.io"] == [(("networkpolicies",), rbac.SITE_VERBS)]
    assert rules["rbac.authorization.k8s.io"] == [(("clusterroles",), rbac.SITE_VERBS)]
    assert rules["policy"] == [(("poddisruptionbudgets",), rbac.SITE_VERBS)]
    assert rules[""] == [(("configmaps", "endpoints", "namespaces"), rbac.SITE_VERBS)]


def test_rules_are_sorted_by_group_with_core_first(tmp_path: Path) -> None:
    """Rules come out in one order: core, then API groups alphabetically."""
    root = sample(tmp_path)
    write(root, f"sites/{SITE}/manifests/40-more.yaml", "---\n".join([
        obj("batch/v1", "Job", "j"), obj("apps/v1", "StatefulSet", "s")]))
    groups = [rule.group for rule in run(root).rules]
    assert groups == ["", "apiextensions.k8s.io", "apps", "batch", "telco.example.com"]


def test_a_kind_no_crd_defines_is_guessed_and_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A custom kind without a CRD in the repository gets Kubernetes' guessed plural, and
    both the YAML and the log say so, with the file and line."""
    root = sample(tmp_path)
    write(root, f"sites/{SITE}/manifests/40-mon.yaml",
          obj("monitoring.coreos.com/v1", "ServiceMonitor", "m") + "---\n"
          + obj("example.org/v1", "Policy", "p"))
    result = run(root)
    assert rules_of(result)["monitoring.coreos.com"] == [(("servicemonitors",), rbac.SITE_VERBS)]
    assert rules_of(result)["example.org"] == [(("policies",), rbac.SITE_VERBS)]
    assert [k.kind for k in result.guessed] == ["Policy", "ServiceMonitor"]
    code = cli.main(["rbac", "--site", SITE, str(root)])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_OK
    assert "ServiceMonitor" in err and "servicemonitors" in err and "40-mon.yaml:1" in err
    assert "# monitoring.coreos.com/v1 ServiceMonitor" in out


@pytest.mark.parametrize(("kind", "plural"), [
    ("Gadget", "gadgets"), ("Policy", "policies"), ("Ingress", "ingresses"),
    ("NetworkFunction", "networkfunctions")])
def test_guessed_plural_follows_kubernetes(kind: str, plural: str) -> None:
    """The guess is apimachinery's UnsafeGuessKindToResource."""
    assert rbac.guess_resource(kind) == plural


def test_a_crd_among_the_manifests_is_a_site_object_and_may_be_deleted(tmp_path: Path) -> None:
    """A CRD a site's manifests hold is pruned like any object: it gets delete; one in
    crds/ does not, and without crds/ there is no shared rule."""
    root = sample(tmp_path)
    shutil.rmtree(root / "crds")
    crd = (root.parent / "crd.yaml")
    shutil.copy(contract.sample_repo_dir() / "crds" / "workloadclusters.telco.example.com.yaml",
                crd)
    text = crd.read_text().replace("metadata:\n", "metadata:\n  annotations:\n    "
                                   f"{contract.ANNOTATION_INTENT_ID}: i-1\n", 1)
    write(root, f"sites/{SITE}/manifests/05-crd.yaml", text)
    result = run(root)
    assert not result.shared_crds
    assert rules_of(result)["apiextensions.k8s.io"] == [
        (("customresourcedefinitions",), rbac.SITE_VERBS)]
    # Its kind resolves from the site's own CRD; NetworkFunction's CRD is gone: guessed.
    sources = {k.kind: k.source for k in result.kinds}
    assert sources["WorkloadCluster"].endswith("05-crd.yaml")
    assert sources["NetworkFunction"] == rbac.GUESSED


def test_several_sites_get_one_role_covering_them_all(tmp_path: Path) -> None:
    """Repeated --site: the union of what each site needs."""
    root = sample(tmp_path)
    write(root, "sites/edge-lab-03/intent.yaml", INTENT.format(site="edge-lab-03"))
    write(root, "sites/edge-lab-03/manifests/a.yaml", obj("v1", "Secret", "s"))
    result = run(root, SITE, "edge-lab-03")
    assert rules_of(result)[""] == [(("configmaps", "namespaces", "secrets"), rbac.SITE_VERBS)]
    assert result.sites == (SITE, "edge-lab-03")


def test_missing_site_is_a_usage_error_naming_the_sites(
        capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown site exits 2 and lists the sites the checkout has."""
    code = cli.main(["rbac", "--site", "edge-nowhere", str(contract.sample_repo_dir())])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "edge-nowhere" in err and "edge-sfo-01" in err


# --- the output -----------------------------------------------------------------------------


def loaded(text: str) -> list[Any]:
    return [d for d in ruamel_yaml.YAML(typ="safe").load_all(text) if d is not None]


def test_yaml_is_a_cluster_role_bound_to_the_service_account(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Default output: the ClusterRole and a ClusterRoleBinding to deploy/'s account."""
    assert cli.main(["rbac", "--site", SITE, str(contract.sample_repo_dir())]) == cli.EXIT_OK
    role, binding = loaded(capsys.readouterr().out)
    assert role["kind"] == "ClusterRole" and role["metadata"]["name"] == "intent-reconciler-site"
    assert role["rules"][0] == {"apiGroups": [""], "resources": ["configmaps", "namespaces"],
                                "verbs": ["create", "delete", "get", "list", "patch"]}
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": "intent-reconciler-site"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "intent-reconciler",
                                    "namespace": "reconciler-system"}]


def test_json_is_a_list_with_the_names_given(capsys: pytest.CaptureFixture[str]) -> None:
    """-o json prints a v1 List; --name, --namespace and --service-account rename."""
    code = cli.main(["rbac", "--site", SITE, str(contract.sample_repo_dir()), "-o", "json",
                     "--name", "fleet-sites", "--namespace", "ops",
                     "--service-account", "gitops"])
    assert code == cli.EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "List"
    role, binding = data["items"]
    assert role["metadata"]["name"] == binding["roleRef"]["name"] == "fleet-sites"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gitops",
                                    "namespace": "ops"}]


def test_deploy_ships_what_rbac_prints_for_the_sample(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/rbac-site.yaml is exactly `reconciler rbac` for the sample site: regenerate
    it with the command in its first line when this fails."""
    monkeypatch.chdir(ROOT)
    shipped = (ROOT / "deploy" / "rbac-site.yaml").read_text(encoding="utf-8")
    assert cli.main(["rbac", "--site", SITE, "reconciler/data/sample-repo"]) == cli.EXIT_OK
    assert capsys.readouterr().out == shipped


# --- the permission error -------------------------------------------------------------------


def forbidden(action: str, what: str, message: str, **details: str) -> errors.ClusterError:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": "Forbidden", "details": details, "code": 403}
    return kube.KubeCluster._fail(403, body, what=what, action=action)


def test_forbidden_apply_names_verbs_resource_and_role() -> None:
    """A 403 on apply (as kube-apiserver v1.37.2 sends it) is a ForbiddenError naming
    create and patch, the resource with its group, and the ClusterRole to widen."""
    error = forbidden("apply", "Deployment/sfo-ran/upf",
                      'deployments.apps "upf" is forbidden: User "system:serviceaccount:'
                      'reconciler-system:intent-reconciler" cannot create resource '
                      '"deployments" in API group "apps" in the namespace "sfo-ran"',
                      name="upf", group="apps", kind="deployments")
    assert isinstance(error, errors.ForbiddenError) and not error.retryable
    assert (error.verbs, error.group, error.resource, error.name) == (
        ("create", "patch"), "apps", "deployments", "upf")
    assert error.role == contract.SITE_CLUSTER_ROLE
    text = str(error)
    assert text.startswith("Deployment/sfo-ran/upf apply failed: ")
    assert 'create and patch on deployments.apps (API group "apps")' in text
    assert "ClusterRole intent-reconciler-site" in text and "reconciler rbac --site" in text


def test_forbidden_read_is_get_for_a_name_and_list_without() -> None:
    """A read is `get` when the Status names the object, `list` when it does not."""
    got = forbidden("read", "Secret/sfo-ran/s", "denied", name="s", kind="secrets")
    listed = forbidden("read", "Secret list", "denied", kind="secrets")
    assert isinstance(got, errors.ForbiddenError) and isinstance(listed, errors.ForbiddenError)
    assert got.verbs == ("get",) and listed.verbs == ("list",)
    assert "needs list on secrets (the core API group)" in str(listed)


def test_forbidden_on_the_reconcilers_own_resources_names_its_own_role() -> None:
    """Leases and Events are the reconciler's own: the hint names its Role/ClusterRole."""
    error = forbidden("update", "Lease/reconciler-system/reconciler-x", "denied",
                      name="reconciler-x", group="coordination.k8s.io", kind="leases")
    assert isinstance(error, errors.ForbiddenError)
    assert error.role == contract.OWN_ROLE and "Role and ClusterRole intent-reconciler" in str(
        error)


def test_forbidden_without_details_still_points_at_the_role() -> None:
    """A bare 403 (a proxy's) still says which role to widen."""
    error = kube.KubeCluster._fail(403, None, what="ConfigMap/ns/x", action="delete")
    assert isinstance(error, errors.ForbiddenError) and error.resource is None
    assert error.verbs == ("delete",) and "intent-reconciler-site" in str(error)


# --- in-cluster configuration ---------------------------------------------------------------


def in_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, token: bool = True) -> Path:
    """A pod's environment: service host and port, the account's files in tmp_path."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    if token:
        (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setenv(kube.SERVICE_ACCOUNT_DIR_ENV, str(account))
    return account


def test_in_cluster_config_reads_the_service_account(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """Without a kubeconfig, in a pod: the service's address, the account's token and CA."""
    account = in_cluster(monkeypatch, tmp_path)
    target = kube.connect()
    try:
        configuration = target._api.configuration
        assert target.server == "https://10.0.0.1:6443"
        assert configuration.ssl_ca_cert == str(account / "ca.crt")
        assert configuration.get_api_key_with_prefix("BearerToken") == "bearer pod-token"
    finally:
        target.close()


def test_in_cluster_config_without_a_token_names_the_folder(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """A pod without a mounted token is a usage error that says where it looked."""
    account = in_cluster(monkeypatch, tmp_path, token=False)
    with pytest.raises(errors.UsageError, match="in-cluster") as caught:
        kube.connect()
    assert str(account) in str(caught.value)


def test_service_account_folder_defaults_to_the_kubelets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unless $RECONCILER_SERVICEACCOUNT_DIR moves it, the folder is the kubelet's mount."""
    monkeypatch.delenv(kube.SERVICE_ACCOUNT_DIR_ENV, raising=False)
    assert kube.service_account_dir() == Path("/var/run/secrets/kubernetes.io/serviceaccount")

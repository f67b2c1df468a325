"""deploy/, the kustomize base: it renders, every object passes our own validate, and the
pod runs restricted with the flags `reconciler run` has."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel import yaml as ruamel_yaml

from reconciler import cli, contract
from reconciler.manager import validate

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Flags the Deployment passes that `reconciler run` does not have yet, each with the
# issue that adds it. Remove a flag here once it exists (a test says when).
PENDING_FLAGS: dict[str, str] = {}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl is not installed (it renders deploy/)")


@functools.cache
def rendered() -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/`, as objects."""
    done = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in ruamel_yaml.YAML(typ="safe").load_all(done.stdout) if d)


def the(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in rendered()
             if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def container() -> dict[str, Any]:
    containers = the("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def test_base_renders_the_objects_the_docs_list() -> None:
    """The base holds exactly the objects docs/deploy.md describes."""
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered())
    assert kinds == sorted([
        ("Namespace", contract.DEPLOY_NAMESPACE),
        ("ServiceAccount", contract.SERVICE_ACCOUNT),
        ("Role", contract.OWN_ROLE), ("RoleBinding", contract.OWN_ROLE),
        ("ClusterRole", contract.OWN_ROLE), ("ClusterRoleBinding", contract.OWN_ROLE),
        ("ClusterRole", contract.SITE_CLUSTER_ROLE),
        ("ClusterRoleBinding", contract.SITE_CLUSTER_ROLE),
        ("ConfigMap", "intent-reconciler-settings"),
        ("Deployment", "intent-reconciler"),
    ])
    for obj in rendered():
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == contract.DEPLOY_NAMESPACE, obj["kind"]


def test_every_object_passes_validate(tmp_path: Path) -> None:
    """Each rendered object, put in a site's manifests, passes `reconciler validate
    --strict`: Kubernetes' own schemas (unknown fields refused), required fields,
    namespaces, no object defined twice."""
    site = tmp_path / "sites" / "deploy"
    (site / "manifests").mkdir(parents=True)
    (site / "intent.yaml").write_text(
        f"apiVersion: {contract.INTENT_API_VERSION}\nkind: {contract.INTENT_KIND}\n"
        "metadata:\n  name: deploy\nspec:\n  id: deploy-1\n")
    dumper = ruamel_yaml.YAML(typ="safe")
    for index, obj in enumerate(rendered()):
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations[contract.ANNOTATION_INTENT_ID] = "deploy-1"
        with (site / "manifests" / f"{index:02d}-{obj['kind'].lower()}.yaml").open("w") as out:
            dumper.dump(obj, out)
    report = validate.run(options=validate.Options(root=tmp_path, strict=True, jobs=1))
    assert [f.one_line() for f in report.findings] == []
    assert report.documents == len(rendered()) + 1  # and the intent


def test_pod_runs_restricted() -> None:
    """Non-root, read-only root file system, no privilege escalation, every capability
    dropped, the runtime's seccomp profile; the namespace enforces it."""
    pod = the("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == contract.SERVICE_ACCOUNT
    security = container()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    labels = the("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # What a read-only root needs: writable state/cache and /tmp volumes.
    mounts = {m["mountPath"] for m in container()["volumeMounts"]}
    assert {"/var/lib/reconciler", "/tmp"} <= mounts


def test_pod_has_probes_requests_and_limits() -> None:
    """Liveness and readiness probes on the named metrics port; cpu and memory requests
    and limits."""
    spec = container()
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert "metrics" in ports
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    for key in ("requests", "limits"):
        assert set(spec["resources"][key]) == {"cpu", "memory"}, key
    assert f"--metrics-port={ports['metrics']}" in spec["args"]


def test_git_credentials_come_from_a_secret_mounted_read_only() -> None:
    """The Secret intent-reconciler-git is mounted where the settings point git at it."""
    pod = the("Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "intent-reconciler-git"
    mount = next(m for m in container()["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    settings = the("ConfigMap", "intent-reconciler-settings")["data"]
    assert settings["RECONCILER_GIT_CREDENTIALS_FILE"] == mount["mountPath"]


def expanded_args() -> list[str]:
    """The container's args with $(VAR) filled in from the settings ConfigMap, as the
    kubelet fills them in."""
    settings = the("ConfigMap", "intent-reconciler-settings")["data"]
    refs = [container()["envFrom"][0]["configMapRef"]["name"]]
    assert refs == ["intent-reconciler-settings"]

    def fill(match: re.Match[str]) -> str:
        assert match.group(1) in settings, f"$({match.group(1)}) is not a setting"
        return str(settings[match.group(1)])

    return [re.sub(r"\$\(([A-Z_]+)\)", fill, arg) for arg in container()["args"]]


def test_args_are_flags_reconciler_run_has() -> None:
    """`reconciler run` parses the Deployment's args (settings filled in); the flags still
    pending are the ones PENDING_FLAGS lists, each unknown to the parser today."""
    args = expanded_args()
    known = [a for a in args if a.split("=", 1)[0] not in PENDING_FLAGS]
    parsed = cli.build_parser().parse_args(known)
    assert parsed.command == "run" and parsed.state_store == "kubernetes"
    assert parsed.site == ["edge-sfo-01"]
    for flag in PENDING_FLAGS:
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["run", "--repo", "x", "--site", "s", f"{flag}=1"])


def test_own_role_grants_what_the_state_store_and_leases_use() -> None:
    """The Role in the reconciler's namespace covers its state ConfigMaps and Leases; the
    ClusterRole its Events; each bound to its service account."""
    role = the("Role", contract.OWN_ROLE)
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert {"get", "list", "create", "update"} <= granted[("", "configmaps")]
    assert {"get", "create", "update"} <= granted[("coordination.k8s.io", "leases")]
    events = the("ClusterRole", contract.OWN_ROLE)["rules"]
    assert events == [{"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
                       "verbs": ["create", "patch"]}]
    for kind, name in (("RoleBinding", contract.OWN_ROLE),
                       ("ClusterRoleBinding", contract.OWN_ROLE),
                       ("ClusterRoleBinding", contract.SITE_CLUSTER_ROLE)):
        binding = the(kind, name)
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"kind": "ServiceAccount",
                                        "name": contract.SERVICE_ACCOUNT,
                                        "namespace": contract.DEPLOY_NAMESPACE}]

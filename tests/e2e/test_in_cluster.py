"""The in-cluster proof: deploy/ applied to a real kube-apiserver, and the reconciler run
as its pod would run it, on its service account's token alone.

No kubelet runs on the test cluster, so the Deployment is left out and the reconciler runs
here in a subprocess with what a pod gets: KUBERNETES_SERVICE_HOST and _PORT, and the
service account's `token`, `ca.crt` and `namespace` (in a folder that
$RECONCILER_SERVICEACCOUNT_DIR names, for the kubelet's mount). No kubeconfig, no admin
token: every request it makes is authorized by deploy/'s roles alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel import yaml as ruamel_yaml

import tests.kube
from reconciler import contract, kube
from tests import gitrepo
from tests.e2e import conftest as e2e

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
SITE = e2e.SITE
NAMESPACE = contract.DEPLOY_NAMESPACE
SECRET = f"""apiVersion: v1
kind: Secret
metadata:
  name: upf-license
  namespace: {e2e.SITE_NAMESPACE}
  annotations:
    {contract.ANNOTATION_INTENT_ID}: {{intent}}
stringData:
  license: lab-only
"""


@pytest.fixture
def cluster(real_cluster: tests.kube.RealCluster) -> Iterator[e2e.ClusterUnderTest]:
    """The session's real API server with the site's objects and deploy/ removed before
    and after: the roles widened here must not outlive the test."""
    target = e2e.ClusterUnderTest(name="real", kubeconfig=real_cluster.kubeconfig,
                                  audit_log=real_cluster.audit_log)
    _remove_deploy(target)
    e2e._cleanup(target)
    try:
        yield target
    finally:
        _remove_deploy(target)
        e2e._cleanup(target)


def _remove_deploy(target: e2e.ClusterUnderTest) -> None:
    """What deploy/ makes, and the state ConfigMaps and Leases in its namespace."""
    for kind, name in (("clusterrolebinding", contract.OWN_ROLE),
                       ("clusterrolebinding", contract.SITE_CLUSTER_ROLE),
                       ("clusterrole", contract.OWN_ROLE),
                       ("clusterrole", contract.SITE_CLUSTER_ROLE)):
        e2e.kubectl_run(target, "delete", kind, name, "--ignore-not-found", "--wait=false")
    e2e.kubectl_run(target, "delete", "namespace", NAMESPACE, "--ignore-not-found",
                    "--wait=true", "--timeout=60s")


def deploy_objects() -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/` without the Deployment: nothing here runs pods."""
    done = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], capture_output=True,
                          text=True, timeout=60, check=True)
    found = [d for d in ruamel_yaml.YAML(typ="safe").load_all(done.stdout) if d]
    return [d for d in found if d["kind"] != "Deployment"]


def kubectl_apply(target: e2e.ClusterUnderTest, text: str) -> None:
    assert target.direct_kubeconfig is not None
    done = subprocess.run(["kubectl", "--kubeconfig", str(target.direct_kubeconfig),
                           "--cache-dir", str(target.direct_kubeconfig.parent / "kubectl-cache"),
                           "apply", "-f", "-"],
                          input=text, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def reconciler(*args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env=env if env is not None else os.environ.copy())


def pod_environment(target: e2e.ClusterUnderTest, server: tests.kube.RealCluster,
                    root: Path) -> dict[str, str]:
    """What a pod of deploy/'s Deployment would have: the service's address and the
    account's files, with a token minted for intent-reconciler; nothing else to reach
    the cluster by."""
    token = e2e.kubectl(target, "create", "token", contract.SERVICE_ACCOUNT, "-n", NAMESPACE,
                        "--duration=1h").strip()
    account = root / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(token)  # the kubelet's file has no trailing newline
    shutil.copy(server.ca_file, account / "ca.crt")
    (account / "namespace").write_text(NAMESPACE)
    address = urllib.parse.urlsplit(server.url)
    env = {key: value for key, value in os.environ.items()
           if key not in ("KUBECONFIG", "RECONCILER_TEST_KUBECONFIG")}
    env.update({"HOME": str(root / "home"), "KUBERNETES_SERVICE_HOST": str(address.hostname),
                "KUBERNETES_SERVICE_PORT": str(address.port),
                kube.SERVICE_ACCOUNT_DIR_ENV: str(account)})
    return env


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.2)


def get(target: e2e.ClusterUnderTest, *args: str) -> dict[str, Any] | None:
    done = e2e.kubectl_run(target, "get", *args, "-o", "json")
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_agent_reconciles_on_its_service_account_alone(
        cluster: e2e.ClusterUnderTest, real_cluster: tests.kube.RealCluster,
        remote: gitrepo.GitRemote, tmp_path: Path) -> None:
    """deploy/ applied (and the ClusterRole `reconciler rbac` prints for the sample site):
    `sync` and `run` reconcile the site through the in-cluster configuration with the
    service account's token, keeping state and Lease in the reconciler's namespace; a
    Secret, outside the role, fails naming the verb, the resource and the role to widen;
    the role `reconciler rbac` prints for the new manifests lets it through."""
    # deploy/, then the role the command prints for the sample site.
    kubectl_apply(cluster, json.dumps({"apiVersion": "v1", "kind": "List",
                                       "items": deploy_objects()}))
    printed = reconciler("rbac", "--site", SITE, str(contract.sample_repo_dir()))
    assert printed.returncode == 0, printed.stderr
    kubectl_apply(cluster, printed.stdout)
    env = pod_environment(cluster, real_cluster, tmp_path)
    state_dir = tmp_path / "state"
    sync = ("sync", "--repo", remote.url, "--site", SITE, "--state-dir", str(state_dir),
            "--state-store", "kubernetes", "--state-namespace", NAMESPACE)

    # 1. One pass on the token alone: the sample site reconciles.
    first = reconciler(*sync, "-o", "json", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["ok"] is True
    e2e.wait_until_ready(cluster)
    assert get(cluster, "configmap", f"reconciler-state-{SITE}", "-n", NAMESPACE) is not None
    assert not (state_dir / f"{SITE}.json").exists()  # the state is in the cluster

    # 2. The agent takes the site's Lease and runs a pass, then stops on SIGTERM.
    before = get(cluster, "configmap", f"reconciler-state-{SITE}", "-n", NAMESPACE)
    assert before is not None
    agent = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "run", *sync[1:], "--interval", "1h",
         "--no-file-watch"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        def passed() -> bool:
            now = get(cluster, "configmap", f"reconciler-state-{SITE}", "-n", NAMESPACE)
            return (now is not None and now["metadata"]["resourceVersion"]
                    != before["metadata"]["resourceVersion"])
        wait_for("the agent's first pass to record the state", passed)
        lease = get(cluster, "lease", f"reconciler-{SITE}", "-n", NAMESPACE)
        assert lease is not None and lease["spec"].get("holderIdentity")
    finally:
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, out + err
    assert "forbidden" not in err.lower(), err

    # 3. A kind outside the ClusterRole: the pass fails and says what to widen.
    remote.write(f"sites/{SITE}/manifests/40-secret.yaml",
                 SECRET.format(intent=_intent_id(remote)))
    remote.commit_and_push("A license Secret for the UPF")
    refused = reconciler(*sync, env=env)
    shown = refused.stdout + refused.stderr
    assert refused.returncode == 1, shown
    assert "list" in shown and "secrets" in shown, shown
    assert f"ClusterRole {contract.SITE_CLUSTER_ROLE}" in shown, shown
    assert "reconciler rbac --site" in shown, shown
    assert get(cluster, "secret", "upf-license", "-n", e2e.SITE_NAMESPACE) is None

    # 4. Widened with what `reconciler rbac` prints for the new manifests: it goes through.
    widened = reconciler("rbac", "--site", SITE, str(remote.work))
    assert widened.returncode == 0, widened.stderr
    assert "secrets" in widened.stdout
    kubectl_apply(cluster, widened.stdout)
    again = reconciler(*sync, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert get(cluster, "secret", "upf-license", "-n", e2e.SITE_NAMESPACE) is not None


def _intent_id(remote: gitrepo.GitRemote) -> str:
    """The id in the site's intent.yaml at the remote's work tree."""
    doc = ruamel_yaml.YAML(typ="safe").load(remote.read(f"sites/{SITE}/intent.yaml"))
    return str(doc["spec"]["id"])

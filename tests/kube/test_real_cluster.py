"""The real cluster behaves like Kubernetes: kubectl, server-side apply, CRDs, finalizers, GC."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import kubernetes
import pytest

import tests.kube
from tests.kube import conftest

# Tests never build (a cold build takes about ten minutes): .ci/run builds first.
pytestmark = [
    pytest.mark.realcluster,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not tests.kube.built(),
        reason="real kube-apiserver not built: run `python -m tests.kube build` "
               "(needs Go; .ci/run does it) to test against a real API server too",
    ),
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    """A DNS-1123 name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll check() until true, failing with what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def test_kubectl_lists_the_system_namespaces(kubectl: conftest.Kubectl) -> None:
    """kubectl get ns shows the namespaces every cluster starts with."""
    names = kubectl("get", "ns", "-o", "name").stdout.split()
    assert {
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
        "namespace/kube-node-lease",
    } <= set(names)


def test_server_side_apply_records_the_field_manager(kubectl: conftest.Kubectl) -> None:
    """A server-side applied ConfigMap is stored with an Apply entry for its field manager."""
    name = unique("ssa")
    manifest = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}
    )
    kubectl("apply", "--server-side", "--field-manager=reconciler-test", "-f", "-", input=manifest)
    stored = json.loads(
        kubectl("get", "configmap", name, "-o", "json", "--show-managed-fields").stdout
    )
    assert stored["data"] == {"k": "v"}
    managers = {(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]}
    assert ("reconciler-test", "Apply") in managers


def test_custom_resource_is_served_once_its_crd_is_established(
    kubectl: conftest.Kubectl,
) -> None:
    """A CRD applied server-side becomes Established and then serves objects of its kind."""
    group = f"{unique('g')}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s")
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    # Discovery can lag Established by a moment; kubectl's cache is refreshed on a miss.
    wait_for(
        "the Widget to apply",
        lambda: (
            kubectl(
                "apply", "--server-side", "-f", "-", input=json.dumps(widget), check=False
            ).returncode
            == 0
        ),
        timeout=30,
    )
    stored = json.loads(kubectl("get", f"widgets.{group}", "w1", "-o", "json").stdout)
    assert stored["spec"] == {"size": 3}
    kubectl("delete", f"crd/widgets.{group}", "--wait=true", "--timeout=60s")


def test_deleted_namespace_finalizes_and_disappears(kubectl: conftest.Kubectl) -> None:
    """The namespace controller empties a deleted namespace and removes it."""
    namespace = unique("gone")
    kubectl("create", "namespace", namespace)
    kubectl("create", "configmap", "inside", "-n", namespace, "--from-literal=k=v")
    kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=60s")
    result = kubectl("get", "namespace", namespace, check=False)
    assert result.returncode != 0 and "NotFound" in result.stderr


def test_new_namespace_gets_default_service_account_and_root_ca(
    kubectl: conftest.Kubectl,
) -> None:
    """The controller manager gives each new namespace its default ServiceAccount and CA."""
    namespace = unique("fresh")
    kubectl("create", "namespace", namespace)
    for kind, name in (("serviceaccount", "default"), ("configmap", "kube-root-ca.crt")):
        wait_for(
            f"{kind}/{namespace}/{name}",
            lambda kind=kind, name=name: (
                kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0
            ),
            timeout=30,
        )
    kubectl("delete", "namespace", namespace, "--wait=false")


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(
    kubectl: conftest.Kubectl,
) -> None:
    """A ConfigMap whose ownerReference points at a deleted ConfigMap is collected."""
    owner, dependent = unique("owner"), unique("dependent")
    kubectl("create", "configmap", owner)
    uid = kubectl("get", "configmap", owner, "-o", "jsonpath={.metadata.uid}").stdout
    kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": dependent,
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid}
                    ],
                },
            }
        ),
    )
    kubectl("delete", "configmap", owner, "--cascade=background")
    wait_for(
        f"configmap/{dependent} to be garbage collected",
        lambda: kubectl("get", "configmap", dependent, check=False).returncode != 0,
        timeout=60,
    )


def test_kubernetes_client_trusts_the_kubeconfig(real_cluster: tests.kube.RealCluster) -> None:
    """The kubernetes Python client reaches the server through the written kubeconfig."""
    api_client = kubernetes.config.new_client_from_config(config_file=str(real_cluster.kubeconfig))
    with api_client:
        version = kubernetes.client.VersionApi(api_client).get_code()
        names = [
            ns.metadata.name
            for ns in kubernetes.client.CoreV1Api(api_client).list_namespace().items
        ]
    assert version.git_version == tests.kube.kubernetes_version()
    assert "default" in names


def test_up_command_serves_until_sigterm(tmp_path: Path) -> None:
    """`python -m tests.kube up` announces a working kubeconfig and stops cleanly on SIGTERM."""
    if conftest.KUBECTL is None:
        pytest.skip("kubectl not on PATH")
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kube", "up", f"--kubeconfig-out={kubeconfig}",
         f"--workdir={tmp_path / 'work'}"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        announced: list[str] = []
        for line in process.stdout:
            announced.append(line)
            if line.startswith("try:"):
                break
        assert any(line.startswith("url:") for line in announced), announced
        result = subprocess.run(
            [conftest.KUBECTL, f"--kubeconfig={kubeconfig}", "get", "ns", "default"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "kube: stopped" in stderr

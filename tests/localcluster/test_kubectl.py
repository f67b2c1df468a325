"""The real kubectl against the local cluster: get, apply --server-side, create, delete."""

from __future__ import annotations

import io
import json
import textwrap
import threading
from pathlib import Path

from reconciler import localcluster
from tests.localcluster import conftest, crds

CONFIGMAPS = textwrap.dedent("""\
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: x-one
      namespace: default
      labels: {app: x}
    data: {key: one}
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: y-one
      namespace: default
      labels: {app: why}
    data: {key: two}
    """)


def test_kubectl_server_side_apply_get_and_delete(kubectl: conftest.Kubectl,
                                                  tmp_path: Path) -> None:
    """kubectl applies server-side from a file, lists by label, and deletes."""
    manifest = tmp_path / "cms.yaml"
    manifest.write_text(CONFIGMAPS)
    applied = kubectl("apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert "configmap/x-one serverside-applied" in applied.stdout
    selected = kubectl.json("get", "cm", "-l", "app=x", "--show-managed-fields")
    assert [i["metadata"]["name"] for i in selected["items"]] == ["x-one"]
    managers = {e["manager"] for e in selected["items"][0]["metadata"]["managedFields"]}
    assert managers == {"kubectl"}
    assert "x-one" in kubectl("get", "cm", "-l", "app=x").stdout
    again = kubectl("apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert again.returncode == 0
    deleted = kubectl("delete", "-f", str(manifest))
    assert 'configmap "x-one" deleted' in deleted.stdout
    missing = kubectl("get", "cm", "x-one", check=False)
    assert missing.returncode != 0
    assert 'configmaps "x-one" not found' in missing.stderr


def test_kubectl_applies_a_crd_and_then_its_objects(kubectl: conftest.Kubectl,
                                                    tmp_path: Path) -> None:
    """kubectl applies the CRD, then a custom resource, and prints it with its columns."""
    crd_file = tmp_path / "crd.json"
    crd_file.write_text(json.dumps(crds.WORKLOAD_CLUSTER_CRD))
    kubectl("apply", "--server-side", "--validate=false", "-f", str(crd_file))
    wc_file = tmp_path / "wc.json"
    wc_file.write_text(json.dumps(crds.workload_cluster("edge-1")))
    kubectl("apply", "--server-side", "--validate=false", "-f", str(wc_file))
    listed = kubectl.json("get", "workloadclusters")
    assert listed["items"][0]["spec"]["nodes"] == 3
    table = kubectl("get", "wc").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "AGE"]
    assert table[1].startswith("edge-1")
    kubectl("delete", "crd", "workloadclusters.telco.example.com")
    gone = kubectl("get", "workloadclusters", check=False)
    assert gone.returncode != 0


def test_kubectl_client_side_apply_with_default_validation(kubectl: conftest.Kubectl) -> None:
    """Plain `kubectl apply` (client-side, validation on) creates, then patches, a ConfigMap."""
    created = kubectl("apply", "-f", "-", stdin=CONFIGMAPS)
    assert "configmap/x-one created" in created.stdout
    changed = kubectl("apply", "-f", "-", stdin=CONFIGMAPS.replace("key: one", "key: uno"))
    assert "configmap/x-one configured" in changed.stdout
    assert kubectl.json("get", "cm", "x-one")["data"] == {"key": "uno"}


def test_kubectl_strict_validation_refuses_unknown_custom_fields(
        telco: conftest.Raw, kubectl: conftest.Kubectl) -> None:
    """kubectl's strict validation refuses an undeclared CR field; --validate=false prunes it;
    server-side apply refuses it either way, as a real apiserver does."""
    manifest = json.dumps(crds.workload_cluster("typo", colour="blue"))
    result = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.colour"' in result.stderr
    lenient = kubectl("apply", "--validate=false", "-f", "-", stdin=manifest)
    assert lenient.returncode == 0
    server_side = kubectl("apply", "--server-side", "--validate=false", "-f", "-",
                          stdin=json.dumps(crds.workload_cluster("typo2", colour="blue")),
                          check=False)
    assert server_side.returncode != 0
    assert ".spec.colour: field not declared in schema" in server_side.stderr


def test_kubectl_create_uses_protobuf_and_works(kubectl: conftest.Kubectl) -> None:
    """kubectl create sends protobuf for built-in kinds; namespaces and configmaps are created."""
    kubectl("create", "namespace", "edge")
    kubectl("create", "configmap", "settings", "-n", "edge", "--from-literal=mode=fast")
    obj = kubectl.json("get", "cm", "settings", "-n", "edge", "--show-managed-fields")
    assert obj["data"] == {"mode": "fast"}
    assert "generateName" not in obj["metadata"]
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert managers == ["kubectl-create"]
    kubectl("delete", "namespace", "edge")
    assert kubectl("get", "ns", "edge", check=False).returncode != 0


def test_run_serves_until_stopped(tmp_path: Path) -> None:
    """run() prints the URL, kubeconfig and a usage hint, and returns 0 when stopped."""
    out = io.StringIO()
    stop = threading.Event()
    kubeconfig = tmp_path / "kc"
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(localcluster.run(
        port=0, kubeconfig_out=kubeconfig, ready_delay=0.1, out=out, stop=stop)))
    thread.start()
    conftest.wait_for(lambda: "press Ctrl-C" in out.getvalue())
    text = out.getvalue()
    assert "http://127.0.0.1:" in text
    assert f"kubectl --kubeconfig {kubeconfig} get ns" in text
    url = text.split("serving at ")[1].split()[0]
    assert conftest.Raw(url).request("GET", "/healthz").body == b"ok"
    stop.set()
    thread.join(10)
    assert result == [0]

"""Apply semantics end to end (#10 item 2), on both clusters: whether an object needs a
write is decided as server-side apply decides it. A field taken out of a manifest is
removed; what the server normalizes (an empty `data:`, a zero default, a Secret's
`stringData`, a quantity written another way) is not re-applied; a pass that changes
nothing sends no write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import cluster
from tests import gitrepo
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl

pytestmark = pytest.mark.e2e

CONFIG_FILE = f"sites/{SITE}/manifests/30-configmap.yaml"
NORMALIZED_FILE = f"sites/{SITE}/manifests/35-normalized.yaml"
CONFIG = cluster.ObjectRef("v1", "ConfigMap", "sfo-ran", "sfo-site-config")

# Each document says something the API server stores in another form.
NORMALIZED = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: empty-data
  namespace: sfo-ran
  annotations:
    reconciler.dev/intent-id: sfo-baseline-1
data:
---
apiVersion: v1
kind: Secret
metadata:
  name: written-as-string-data
  namespace: sfo-ran
  annotations:
    reconciler.dev/intent-id: sfo-baseline-1
type: Opaque
stringData:
  password: not-a-real-one
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: zero-defaults
  namespace: sfo-ran
  annotations:
    reconciler.dev/intent-id: sfo-baseline-1
    reconciler.dev/health: skip
spec:
  replicas: 1
  minReadySeconds: 0
  selector:
    matchLabels: {app: zero-defaults}
  template:
    metadata:
      labels: {app: zero-defaults}
    spec:
      containers:
        - name: app
          image: registry.example.com/app:1.0
          resources:
            requests: {cpu: "0.5", memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: default-protocol
  namespace: sfo-ran
  annotations:
    reconciler.dev/intent-id: sfo-baseline-1
spec:
  selector: {app: zero-defaults}
  ports:
    - port: 80
      targetPort: 8080
"""


def test_a_field_taken_out_of_a_manifest_is_removed(any_cluster: ClusterUnderTest,
                                                     remote: gitrepo.GitRemote, tmp_path: Path):
    """Under the same intent, a commit that drops a label and a data key: the apply
    removes both, the object is reported configured, and the next pass writes nothing."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    text = remote.read(CONFIG_FILE)
    trimmed = "\n".join(line for line in text.splitlines()
                        if not line.startswith(("  apn:", "    telco.example.com/site:")))
    assert trimmed != text
    remote.write(CONFIG_FILE, trimmed.replace("  labels:\n", "") + "\n")
    remote.commit_and_push("Drop the APN alias and the site label")
    result = site.sync()
    assert result.ok, result.message
    (config,) = [r for r in result.results if r.ref == CONFIG]
    assert config.change is cluster.Change.CONFIGURED
    live = kubectl(any_cluster, "get", "configmap", CONFIG.name, "-n", "sfo-ran", "-o", "json")
    assert "apn" not in live["data"] and live["data"]["dnn"] == "internet"
    assert "telco.example.com/site" not in live["metadata"].get("labels", {})
    mark = any_cluster.mark()
    again = site.sync()
    assert again.ok, again.message
    assert {r.change for r in again.results} == {cluster.Change.UNCHANGED}
    assert any_cluster.changed_since(mark) == []


def test_what_the_server_normalizes_is_not_written_again(any_cluster: ClusterUnderTest,
                                                         remote: gitrepo.GitRemote,
                                                         tmp_path: Path):
    """The first pass creates the objects; the second reports every one unchanged and
    sends no write (the server's dry run answers the live object), and so does the plan."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    remote.write(NORMALIZED_FILE, NORMALIZED)
    remote.commit_and_push("Objects the server stores in another form")
    first = site.sync()
    assert first.ok, first.message
    created = {r.ref.name for r in first.results if r.change is cluster.Change.CREATED}
    assert {"empty-data", "written-as-string-data", "zero-defaults",
            "default-protocol"} <= created
    mark = any_cluster.mark()
    again = site.sync()
    assert again.ok, again.message
    changed = [(str(r.ref), r.change.value) for r in again.results
               if r.change is not cluster.Change.UNCHANGED]
    assert changed == []
    assert any_cluster.changed_since(mark) == []
    plan = json.loads(site.cli(
        "plan", "--repo", remote.url, "--site", SITE, "--state-dir", str(site.state_dir),
        "--kubeconfig", str(any_cluster.kubeconfig), "-o", "json", check=True).stdout)
    assert [(o["object"], o["change"]) for o in plan["objects"]
            if o["change"] != "unchanged"] == []


def test_an_edit_to_a_managed_field_is_drift_and_is_put_back(any_cluster: ClusterUnderTest,
                                                             remote: gitrepo.GitRemote,
                                                             tmp_path: Path):
    """kubectl edits a data key the manifest sets: the next pass writes it back, once."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync().ok
    kubectl(any_cluster, "patch", "configmap", CONFIG.name, "-n", "sfo-ran", "--type=merge",
            "-p", '{"data":{"dnn":"edited"}}', "-o", "json")
    result = site.sync()
    assert result.ok, result.message
    (config,) = [r for r in result.results if r.ref == CONFIG]
    assert config.change is cluster.Change.CONFIGURED
    live = kubectl(any_cluster, "get", "configmap", CONFIG.name, "-n", "sfo-ran", "-o", "json")
    assert live["data"]["dnn"] == "internet"

"""An unreliable API server: what is retried, what fails, and what is never leaked."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from reconciler import localcluster
from reconciler.site import state
from tests import gitrepo
from tests.e2e import aggregated
from tests.e2e.conftest import SITE, ClusterUnderTest, Site, kubectl, kubectl_run

pytestmark = pytest.mark.e2e

WC_PATH = r"/workloadclusters/sfo-wc-01$"


def applies_to(target: ClusterUnderTest, name: str) -> list[int]:
    """The HTTP status of every server-side apply of the named object, in order."""
    return [r.status for r in target.requests()
            if r.verb == "patch" and r.patch_type == "apply" and r.name == name]


@pytest.mark.parametrize("fault", [
    pytest.param(localcluster.Fault(verb="apply", path_regex=WC_PATH, status=503), id="503"),
    pytest.param(localcluster.Fault(verb="apply", path_regex=WC_PATH, status=429), id="429"),
    pytest.param(localcluster.Fault(verb="apply", path_regex=WC_PATH, drop_connection=True),
                 id="dropped-connection"),
])
def test_transient_failure_is_retried(any_cluster: ClusterUnderTest,
                                      remote: gitrepo.GitRemote, tmp_path: Path,
                                      fault: localcluster.Fault):
    """One 503, 429 or dropped connection on an apply is retried and the sync succeeds."""
    handle = any_cluster.faults.add(fault)
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    result = site.sync()
    assert result.ok, result.message
    assert handle.hits == 1
    if any_cluster.has_request_log:
        statuses = applies_to(any_cluster, "sfo-wc-01")
        assert statuses[-1] in (200, 201)
        if any_cluster.local is not None:  # it logs the failed attempt; a proxy answers it
            assert statuses[:-1] == [fault.status or 0]


def test_persistent_server_error_fails_the_wave_and_stops(any_cluster: ClusterUnderTest,
                                                          remote: gitrepo.GitRemote,
                                                          tmp_path: Path):
    """A 500 on every try fails the rollout naming the object; later waves are not sent."""
    handle = any_cluster.faults.add(localcluster.Fault(verb="apply", path_regex=WC_PATH,
                                                       status=500, times=None))
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    result = site.sync()
    assert not result.ok
    assert result.phase is state.Outcome.FAILED
    assert "WorkloadCluster/sfo-ran/sfo-wc-01 apply failed" in result.message
    assert handle.hits == 4  # the first try and 3 retries
    nfs = kubectl(any_cluster, "get", "networkfunctions", "-n", "sfo-ran", "-o", "json")
    assert nfs["items"] == []  # wave 20 never started
    recorded = site.store.load()
    assert recorded.history[-1].outcome is state.Outcome.FAILED
    assert recorded.errors[-1].stage == "apply"


def test_field_owned_by_another_manager_conflicts_unless_forced(any_cluster: ClusterUnderTest,
                                                                remote: gitrepo.GitRemote,
                                                                tmp_path: Path):
    """A field another manager took is a conflict error; --force-conflicts takes it back."""
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    assert site.sync_cli().returncode == 0
    patch = tmp_path / "cm.yaml"
    patch.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sfo-site-config\n"
                     "  namespace: sfo-ran\ndata:\n  dnn: ims\n")
    taken = kubectl_run(any_cluster, "apply", "--server-side", "--force-conflicts",
                        "--field-manager=field-engineer", "-f", str(patch))
    assert taken.returncode == 0, taken.stderr
    conflicted = site.sync_cli()
    assert conflicted.returncode == 1
    for stream in (conflicted.stdout, conflicted.stderr):
        assert "ConfigMap/sfo-ran/sfo-site-config apply failed" in stream
        assert "field-engineer" in stream and "--force-conflicts" in stream
    forced = site.sync_cli("--force-conflicts")
    assert forced.returncode == 0, forced.stderr
    got = kubectl(any_cluster, "get", "configmap", "sfo-site-config", "-n", "sfo-ran",
                  "-o", "jsonpath={.data.dnn}")
    assert got == "internet"


def test_secret_values_never_appear_in_output_or_state(any_cluster: ClusterUnderTest,
                                                       remote: gitrepo.GitRemote,
                                                       tmp_path: Path):
    """A Secret is applied, and its value is in no log line, summary, status or state file."""
    value = "pfcp-psk-0123456789"
    encoded = base64.b64encode(value.encode()).decode()
    remote.write("sites/edge-sfo-01/manifests/40-secret.yaml",
                 "apiVersion: v1\nkind: Secret\nmetadata:\n  name: upf-psk\n"
                 "  namespace: sfo-ran\n  annotations:\n"
                 "    reconciler.dev/intent-id: sfo-baseline-1\n"
                 f"stringData:\n  psk: {value}\ndata:\n  psk-b64: {encoded}\n")
    remote.commit_and_push("A secret for the UPF")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    synced = site.sync_cli("-v", "-o", "json")
    assert synced.returncode == 0, synced.stderr
    assert '"Secret/sfo-ran/upf-psk"' in synced.stdout
    status = site.cli("-v", "status", "--state-dir", str(site.state_dir), "--site", SITE)
    texts = [synced.stdout, synced.stderr, status.stdout, status.stderr,
             site.store.path.read_text()]
    assert not [t for t in texts if value in t or encoded in t]


def test_manifest_not_matching_its_crd_fails_without_retries(any_cluster: ClusterUnderTest,
                                                             remote: gitrepo.GitRemote,
                                                             tmp_path: Path):
    """A field the CRD does not declare fails the apply once, naming the field: no retry."""
    path = "sites/edge-sfo-01/manifests/10-workloadcluster.yaml"
    remote.write(path, remote.read(path).replace("  region: us-west-2",
                                                 "  region: us-west-2\n  colour: blue"))
    remote.commit_and_push("A field the CRD does not have")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    result = site.sync()
    assert not result.ok
    assert ".spec.colour: field not declared in schema" in result.message
    assert "does not match its CRD's schema" in result.message
    if any_cluster.has_request_log:
        assert len(applies_to(any_cluster, "sfo-wc-01")) == 1


def test_an_unavailable_api_group_fails_only_its_objects(any_cluster: ClusterUnderTest,
                                                         remote: gitrepo.GitRemote,
                                                         tmp_path: Path):
    """With metrics.k8s.io/v1beta1 listed but answering 503, the sync applies every other
    object, the rest of the wave too, and fails naming the object, the group and the reason."""
    remote.write("sites/edge-sfo-01/manifests/25-podmetrics.yaml",
                 "apiVersion: metrics.k8s.io/v1beta1\nkind: PodMetrics\nmetadata:\n"
                 "  name: sfo-upf-metrics\n  namespace: sfo-ran\n  annotations:\n"
                 "    reconciler.dev/intent-id: sfo-baseline-1\n"
                 "    reconciler.dev/wave: \"20\"\n")
    remote.commit_and_push("An object of an aggregated API")
    site = Site(root=tmp_path, remote_url=remote.url, target=any_cluster)
    with aggregated.unavailable_metrics(any_cluster):
        result = site.sync()
    assert not result.ok
    assert result.phase is state.Outcome.FAILED
    assert result.message.startswith(
        "intent sfo-baseline-1 failed: wave 20: PodMetrics/sfo-ran/sfo-upf-metrics apply "
        "failed: kind 'PodMetrics' cannot be reached: the cluster lists "
        "metrics.k8s.io/v1beta1 but cannot serve it now: HTTP 503: service unavailable")
    assert "CRD" not in result.message
    nfs = kubectl(any_cluster, "get", "networkfunctions", "-n", "sfo-ran", "-o", "json")
    assert sorted(i["metadata"]["name"] for i in nfs["items"]) == ["sfo-smf", "sfo-upf"]
    recorded = site.store.load()
    assert sorted(e.name for e in recorded.inventory if not e.pending) == [
        "sfo-ran", "sfo-site-config", "sfo-smf", "sfo-upf", "sfo-wc-01"]
    # Written ahead of its apply, which failed: known to the site (prunable), not applied.
    assert [e.name for e in recorded.inventory if e.pending] == ["sfo-upf-metrics"]
    assert recorded.rollout is not None
    assert [w.phase for w in recorded.rollout.waves][-1] is state.WavePhase.FAILED

"""A pass whose applies partly fail: an unavailable API group, and successes reported next to
failures, through the pipeline with our own Cluster port faked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.site import report, rollout, state
from tests import gitrepo, sites

SITE_OBJECTS = {"Namespace/sfo-ran", "ConfigMap/sfo-ran/sfo-site-config",
                "WorkloadCluster/sfo-ran/sfo-wc-01", "NetworkFunction/sfo-ran/sfo-upf",
                "NetworkFunction/sfo-ran/sfo-smf"}
METRICS = "metrics.k8s.io/v1beta1"
REASON = "HTTP 503: service unavailable"
PODMETRICS = ("apiVersion: metrics.k8s.io/v1beta1\nkind: PodMetrics\nmetadata:\n"
              "  name: sfo-upf-metrics\n  namespace: sfo-ran\n  annotations:\n"
              "    reconciler.dev/intent-id: sfo-baseline-1\n    reconciler.dev/wave: \"20\"\n")
INGRESS_CLASS = ("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n"
                 "  name: sfo-n6\n  annotations:\n    reconciler.dev/intent-id: sfo-baseline-1\n"
                 "spec:\n  controller: example.com/n6-ingress\n")
PDB = ("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: sfo-upf\n"
       "  namespace: sfo-ran\n  annotations:\n    reconciler.dev/intent-id: sfo-baseline-1\n"
       "spec:\n  minAvailable: 1\n")

@pytest.fixture
def env(tmp_path: Path, remote: gitrepo.GitRemote, monkeypatch: pytest.MonkeyPatch
        ) -> sites.Env:
    monkeypatch.setattr(rollout, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    return sites.Env(tmp_path, remote)


def add_manifest(env: sites.Env, name: str, text: str) -> None:
    env.remote.write(f"sites/{sites.SITE}/manifests/{name}", text)
    env.remote.commit_and_push(f"Add {name}")


def test_an_unavailable_group_fails_only_its_objects(env: sites.Env):
    """With metrics.k8s.io/v1beta1 listed but unavailable, everything else of the site is
    applied and inventoried; the pass fails naming the object, the group and the reason."""
    add_manifest(env, "25-podmetrics.yaml", PODMETRICS)
    env.cluster.unavailable[METRICS] = REASON
    result = env.sync()
    assert not result.ok
    assert result.phase is state.Outcome.FAILED
    assert "PodMetrics/sfo-ran/sfo-upf-metrics apply failed" in result.message
    assert METRICS in result.message and REASON in result.message
    assert "CRD" not in result.message
    assert {str(r.ref) for r in result.results if r.intent_id} == SITE_OBJECTS
    recorded = env.store.load()
    assert {f"{e.kind}/{e.namespace}/{e.name}".replace("/None", "")
            for e in recorded.inventory if not e.pending} == SITE_OBJECTS
    # Written ahead of its apply, which failed: known to the site (prunable), not applied.
    assert [e.name for e in recorded.inventory if e.pending] == ["sfo-upf-metrics"]
    assert recorded.rollout is not None
    assert [w.phase.value for w in recorded.rollout.waves] == ["healthy", "healthy", "failed"]


def test_an_object_of_an_unavailable_group_is_not_pruned(env: sites.Env):
    """A stale object whose group became unavailable is neither deleted nor forgotten: the
    pass fails at prune, naming it, and the inventory keeps it."""
    env.cluster.kinds[(METRICS, "PodMetrics")] = True
    add_manifest(env, "25-podmetrics.yaml", PODMETRICS)
    assert env.sync().ok
    env.remote.remove(f"sites/{sites.SITE}/manifests/25-podmetrics.yaml")
    gitrepo.restamp(env.remote, site=sites.SITE, new_id="sfo-2", sequence=2)
    env.remote.commit_and_push("No more pod metrics")
    env.cluster.unavailable[METRICS] = REASON
    result = env.sync()
    assert not result.ok
    assert "prune failed" in result.message
    assert "PodMetrics/sfo-ran/sfo-upf-metrics" in result.message and REASON in result.message
    assert ("delete", "PodMetrics/sfo-ran/sfo-upf-metrics") not in env.cluster.calls
    recorded = env.store.load()
    assert "sfo-upf-metrics" in {e.name for e in recorded.inventory}
    assert recorded.errors[-1].stage == "prune"
    del env.cluster.unavailable[METRICS]
    assert env.sync().ok  # the group is back: the next pass prunes it
    assert "sfo-upf-metrics" not in {e.name for e in env.store.load().inventory}


def test_a_success_next_to_a_failure_is_inventoried(env: sites.Env):
    """An IngressClass applied in the same kind group as a failing PodDisruptionBudget is in
    the inventory and in `sync -o json`'s applied objects."""
    add_manifest(env, "40-ingressclass.yaml", INGRESS_CLASS)
    add_manifest(env, "40-pdb.yaml", PDB)
    fail_the_budget(env)
    result = env.sync()
    assert not result.ok
    assert "IngressClass/sfo-n6" in {f"{e.kind}/{e.name}" for e in env.store.load().inventory}
    applied = json.loads(report.sync_json(result))["applied"]
    assert {"object": "IngressClass/sfo-n6", "change": "created",
            "intentId": "sfo-baseline-1"} in applied


def test_sync_output_lists_failures_next_to_successes(env: sites.Env):
    """`sync -o json` and the text summary list the failed PodDisruptionBudget, with its
    error, next to the IngressClass created in the same batch."""
    add_manifest(env, "40-ingressclass.yaml", INGRESS_CLASS)
    add_manifest(env, "40-pdb.yaml", PDB)
    fail_the_budget(env)
    result = env.sync()
    out = json.loads(report.sync_json(result))
    assert {"object": "IngressClass/sfo-n6", "change": "created",
            "intentId": "sfo-baseline-1"} in out["applied"]
    assert out["failed"] == [{"object": "PodDisruptionBudget/sfo-ran/sfo-upf",
                              "error": "PodDisruptionBudget/sfo-ran/sfo-upf apply failed: "
                                       "spec.minAvailable: Invalid value"}]
    text = report.sync_text(result)
    assert "  IngressClass/sfo-n6  created" in text
    assert ("  PodDisruptionBudget/sfo-ran/sfo-upf  failed: PodDisruptionBudget/sfo-ran/"
            "sfo-upf apply failed: spec.minAvailable: Invalid value") in text
    assert "1 failed" in text.splitlines()[1]


def fail_the_budget(env: sites.Env) -> None:
    """Serve IngressClass and PodDisruptionBudget; every apply of the budget is refused."""
    env.cluster.kinds[("networking.k8s.io/v1", "IngressClass")] = False
    env.cluster.kinds[("policy/v1", "PodDisruptionBudget")] = True
    env.cluster.fail["PodDisruptionBudget/sfo-ran/sfo-upf"] = errors.ApplyError(
        "PodDisruptionBudget/sfo-ran/sfo-upf apply failed: spec.minAvailable: Invalid value",
        status=422)

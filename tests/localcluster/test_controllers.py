"""The simulated controllers: Ready after a delay, per generation, with cluster dependencies."""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes

from reconciler import localcluster
from reconciler.localcluster import controllers
from tests.localcluster import conftest, crds

WC = conftest.WC_PATH
NF = conftest.NF_PATH


def ready(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The Ready condition of an object."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition
    return None


def wait_ready(raw: conftest.Raw, path: str, generation: int) -> dict[str, Any]:
    """Wait until the object is Ready=True for the generation; return it."""
    def check() -> dict[str, Any] | None:
        obj = raw.request("GET", path).json()
        condition = ready(obj)
        if condition and condition["status"] == "True" and \
                obj["status"].get("observedGeneration") == generation:
            return obj
        return None
    return conftest.wait_for(check)


def test_workload_cluster_turns_ready_after_the_delay(live_cluster: localcluster.LocalCluster
                                                      ) -> None:
    """A new WorkloadCluster is Progressing at once and Ready after ready_delay, per generation."""
    raw = conftest.Raw(live_cluster.url)
    conftest.install_crds(raw)
    started = time.monotonic()
    raw.apply(f"{WC}/a", crds.workload_cluster("a"))
    progressing = conftest.wait_for(lambda: ready(raw.request("GET", f"{WC}/a").json()))
    assert (progressing["status"], progressing["reason"]) in (("False", "Progressing"),
                                                              ("True", "Reconciled"))
    obj = wait_ready(raw, f"{WC}/a", 1)
    assert time.monotonic() - started >= 0.3
    assert obj["status"]["phase"] == "Ready"
    assert ready(obj)["reason"] == "Reconciled"
    assert ready(obj)["observedGeneration"] == 1
    raw.apply(f"{WC}/a", crds.workload_cluster("a", nodes=7))
    changed = raw.request("GET", f"{WC}/a").json()
    assert changed["metadata"]["generation"] == 2
    assert changed["status"]["observedGeneration"] == 1
    assert wait_ready(raw, f"{WC}/a", 2)["status"]["phase"] == "Ready"


def test_network_function_waits_for_its_cluster(live_cluster: localcluster.LocalCluster) -> None:
    """A NetworkFunction whose cluster is not Ready stays Progressing until the cluster is."""
    raw = conftest.Raw(live_cluster.url)
    conftest.install_crds(raw)
    raw.apply(f"{NF}/upf", crds.network_function("upf", clusterRef="edge"))
    waiting = conftest.wait_for(lambda: ready(raw.request("GET", f"{NF}/upf").json()))
    assert waiting["reason"] == "Progressing"
    assert "waiting for WorkloadCluster edge" in waiting["message"]
    threading.Event().wait(0.6)
    assert ready(raw.request("GET", f"{NF}/upf").json())["status"] == "False"
    raw.apply(f"{WC}/edge", crds.workload_cluster("edge"))
    cluster_ready = wait_ready(raw, f"{WC}/edge", 1)
    nf = wait_ready(raw, f"{NF}/upf", 1)
    assert ready(nf)["lastTransitionTime"] >= ready(cluster_ready)["lastTransitionTime"]


def test_fail_annotation_ends_in_failed(live_cluster: localcluster.LocalCluster) -> None:
    """`sim.reconciler.dev/fail: "true"` ends in Ready=False reason Failed for the generation."""
    raw = conftest.Raw(live_cluster.url)
    conftest.install_crds(raw)
    body = crds.workload_cluster("bad")
    body["metadata"]["annotations"] = {controllers.FAIL_ANNOTATION: "true"}
    raw.apply(f"{WC}/bad", body)

    def failed() -> dict[str, Any] | None:
        obj = raw.request("GET", f"{WC}/bad").json()
        condition = ready(obj)
        return obj if condition and condition["reason"] == "Failed" else None

    obj = conftest.wait_for(failed)
    assert ready(obj)["status"] == "False"
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["observedGeneration"] == 1


def test_controllers_wait_for_the_crd_to_appear(live_cluster: localcluster.LocalCluster) -> None:
    """Controllers started before the CRDs exist pick the kinds up once they are applied."""
    raw = conftest.Raw(live_cluster.url)
    threading.Event().wait(0.3)
    conftest.install_crds(raw)
    raw.apply(f"{WC}/late", crds.workload_cluster("late"))
    assert wait_ready(raw, f"{WC}/late", 1)


def test_controllers_stop_promptly(cluster: localcluster.LocalCluster) -> None:
    """SimulatedControllers run against a server through the official client and stop fast."""
    raw = conftest.Raw(cluster.url)
    conftest.install_crds(raw)
    stop = threading.Event()
    client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
    sims = controllers.SimulatedControllers(api_client=client, ready_delay=30.0, stop=stop)
    sims.start()
    raw.apply(f"{WC}/slow", crds.workload_cluster("slow"))
    conftest.wait_for(lambda: ready(raw.request("GET", f"{WC}/slow").json()))
    started = time.monotonic()
    sims.stop()
    assert time.monotonic() - started < 3
    assert ready(raw.request("GET", f"{WC}/slow").json())["reason"] == "Progressing"
    client.close()

"""Drift: whether applying a manifest again would change the live object, decided as
server-side apply decides it: the values, and the fields the reconciler's manager owns."""

from __future__ import annotations

import copy
from typing import Any

from reconciler import contract
from reconciler.site import drift

MANAGER = contract.field_manager("edge-sfo-01")  # the site's own field manager

DESIRED: dict[str, Any] = {
    "apiVersion": "telco.example.com/v1alpha1", "kind": "NetworkFunction",
    "metadata": {"name": "upf", "namespace": "ran", "labels": {"a": "1"}},
    "spec": {"type": "UPF", "replicas": 2, "ports": [{"name": "n3", "port": 2152}],
             "args": ["--fast"], "finalizers": ["x", "y"]},
}

# What the API server records for the reconciler's apply of DESIRED, as v1.37 writes it:
# `ports` a list map keyed by name, `args` atomic, `finalizers` a set.
OWNED: dict[str, Any] = {
    "f:metadata": {"f:labels": {".": {}, "f:a": {}}},
    "f:spec": {"f:type": {}, "f:replicas": {}, "f:args": {},
               "f:ports": {'k:{"name":"n3"}': {".": {}, "f:name": {}, "f:port": {}}},
               "f:finalizers": {'v:"x"': {}, 'v:"y"': {}}},
}


def entry(fields: dict[str, Any], *, manager: str = MANAGER,
          api_version: str = "telco.example.com/v1alpha1", operation: str = "Apply",
          time: str = "2026-12-01T00:00:00Z") -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "apiVersion": api_version,
            "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields}


def live(*, owned: dict[str, Any] | None = None, **spec_changes: object) -> dict[str, Any]:
    return {
        "apiVersion": "telco.example.com/v1alpha1", "kind": "NetworkFunction",
        "metadata": {"name": "upf", "namespace": "ran", "labels": {"a": "1", "extra": "x"},
                     "resourceVersion": "7", "uid": "u", "generation": 3,
                     "managedFields": [
                         entry(copy.deepcopy(OWNED if owned is None else owned)),
                         entry({"f:metadata": {"f:labels": {"f:extra": {}}}},
                               manager="kubectl-label", operation="Update"),
                         entry({"f:status": {"f:phase": {}}}, manager="operator",
                               operation="Update")]},
        "spec": {"type": "UPF", "replicas": 2, "ports": [{"name": "n3", "port": 2152,
                                                          "protocol": "UDP"}],
                 "args": ["--fast"], "finalizers": ["x", "y"], **spec_changes},
        "status": {"phase": "Ready"},
    }


def test_live_with_server_added_fields_and_exact_ownership_is_in_sync():
    """Fields the server or others add (status, defaults, another manager's label) are not
    drift when the reconciler owns exactly what the manifest sets."""
    assert drift.in_sync(manager=MANAGER, desired=DESIRED, live=live())


def test_changed_value_is_drift():
    assert not drift.in_sync(manager=MANAGER, desired=DESIRED, live=live(replicas=3))


def test_missing_field_is_not_in_sync():
    current = live()
    del current["metadata"]["labels"]["a"]
    assert not drift.in_sync(manager=MANAGER, desired=DESIRED, live=current)


def test_a_field_removed_from_the_manifest_that_the_reconciler_owns_needs_an_apply():
    """The live object holds every desired value, but the reconciler still owns label `a`,
    which the manifest no longer sets: the apply would remove it."""
    desired = copy.deepcopy(DESIRED)
    del desired["metadata"]["labels"]
    assert not drift.in_sync(manager=MANAGER, desired=desired, live=live())


def test_a_field_the_reconciler_does_not_own_yet_needs_an_apply():
    """Same values, but the manifest now sets `extra`, which only kubectl-label owns: the
    apply would take shared ownership, a change of managedFields."""
    desired = copy.deepcopy(DESIRED)
    desired["metadata"]["labels"]["extra"] = "x"
    assert not drift.in_sync(manager=MANAGER, desired=desired, live=live())


def test_list_length_change_is_drift():
    current = live(ports=[{"name": "n3", "port": 2152}, {"name": "n6", "port": 8805}])
    assert not drift.in_sync(manager=MANAGER, desired=DESIRED, live=current)


def test_list_map_element_owned_by_its_key():
    """A list map element is matched by its key fields wherever it sits."""
    owned = copy.deepcopy(OWNED)
    owned["f:spec"]["f:ports"] = {'k:{"name":"n4"}': {".": {}, "f:name": {}, "f:port": {}}}
    assert not drift.in_sync(manager=MANAGER, desired=DESIRED, live=live(owned=owned))


def test_set_elements_owned_by_value():
    owned = copy.deepcopy(OWNED)
    owned["f:spec"]["f:finalizers"] = {'v:"x"': {}}
    assert not drift.in_sync(manager=MANAGER, desired=DESIRED, live=live(owned=owned))


def test_no_apply_entry_or_another_api_version_is_uncertain():
    """Created by kubectl create, or applied last as another version: ask the server."""
    current = live()
    current["metadata"]["managedFields"] = current["metadata"]["managedFields"][1:]
    assert not drift.in_sync(manager=MANAGER, desired=DESIRED, live=current)
    current = live()
    current["metadata"]["managedFields"][0]["apiVersion"] = "telco.example.com/v1alpha0"
    assert not drift.in_sync(manager=MANAGER, desired=DESIRED, live=current)


def test_a_null_value_is_uncertain():
    """`data:` with no value: what the server keeps of it is the server's call."""
    desired = copy.deepcopy(DESIRED)
    desired["spec"]["data"] = None
    current = live(data=None)
    current["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:data"] = {}
    assert not drift.in_sync(manager=MANAGER, desired=desired, live=current)


def test_bool_is_not_equal_to_int():
    """`true` and `1` differ, as they do to the API server."""
    assert not drift.in_sync(manager=MANAGER, desired={"spec": {"on": True}},
                             live={"spec": {"on": 1}})


def test_a_dry_run_that_answers_the_live_object_is_unchanged():
    """The server's answer is compared with the live object, status, resourceVersion and
    managedFields times aside (a controller may have moved them since the read)."""
    answer = live()
    answer["status"] = {"phase": "Degraded"}
    answer["metadata"]["resourceVersion"] = "9"
    answer["metadata"]["managedFields"][0]["time"] = "2026-12-02T00:00:00Z"
    assert drift.unchanged_by(manager=MANAGER, live=live(), result=answer)


def test_a_dry_run_that_removes_a_field_or_moves_ownership_is_a_change():
    answer = live()
    del answer["metadata"]["labels"]["extra"]
    assert not drift.unchanged_by(manager=MANAGER, live=live(), result=answer)
    answer = live()
    answer["metadata"]["managedFields"][0]["fieldsV1"] = {"f:spec": {"f:type": {}}}
    assert not drift.unchanged_by(manager=MANAGER, live=live(), result=answer)
    answer = live()
    answer["metadata"]["generation"] = 4
    assert not drift.unchanged_by(manager=MANAGER, live=live(), result=answer)


def test_an_unset_creation_timestamp_is_the_servers_to_set():
    """Generated manifests carry `creationTimestamp: null`: not drift, not owned."""
    desired = copy.deepcopy(DESIRED)
    desired["metadata"]["creationTimestamp"] = None
    assert drift.in_sync(manager=MANAGER, desired=desired, live=live())

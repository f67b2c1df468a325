"""Drift: whether a live object already holds every field we would apply."""

from __future__ import annotations

from reconciler.site import drift

DESIRED = {
    "apiVersion": "telco.example.com/v1alpha1", "kind": "NetworkFunction",
    "metadata": {"name": "upf", "namespace": "ran", "labels": {"a": "1"}},
    "spec": {"type": "UPF", "replicas": 2, "ports": [{"name": "n3", "port": 2152}]},
}


def live(**spec_changes: object) -> dict:
    return {
        "metadata": {"name": "upf", "namespace": "ran", "labels": {"a": "1", "extra": "x"},
                     "resourceVersion": "7", "uid": "u", "generation": 3},
        "spec": {"type": "UPF", "replicas": 2, "ports": [{"name": "n3", "port": 2152,
                                                          "protocol": "UDP"}],
                 **spec_changes},
        "status": {"phase": "Ready"},
    }


def test_live_with_server_added_fields_is_in_sync():
    """Fields the server or controllers add (status, defaults, metadata) are not drift."""
    assert drift.in_sync(desired=DESIRED, live=live())


def test_changed_value_is_drift():
    """A desired field with another live value is drift."""
    assert not drift.in_sync(desired=DESIRED, live=live(replicas=3))


def test_missing_field_is_drift():
    """A desired field absent from the live object is drift."""
    current = live()
    del current["metadata"]["labels"]["a"]
    assert not drift.in_sync(desired=DESIRED, live=current)


def test_list_length_change_is_drift():
    """Lists are compared element by element: an extra live element is drift."""
    current = live(ports=[{"name": "n3", "port": 2152}, {"name": "n6", "port": 8805}])
    assert not drift.in_sync(desired=DESIRED, live=current)


def test_bool_is_not_equal_to_int():
    """`true` and `1` differ, as they do to the API server."""
    assert not drift.in_sync(desired={"spec": {"on": True}}, live={"spec": {"on": 1}})
    assert drift.in_sync(desired={"spec": {"on": True}}, live={"spec": {"on": True}})

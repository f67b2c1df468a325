"""The narrow port through which the reconciler reaches a cluster. Implemented by kube.py.

Stages depend on this Protocol only; unit tests fake it. Nothing here imports the
kubernetes client.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from reconciler import contract


@dataclasses.dataclass(frozen=True, order=True)
class ObjectRef:
    """Which object: enough to find it on any cluster."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def inventory_id(self) -> str:
        """`<namespace>_<name>_<group>_<Kind>`: the stable id the inventory is keyed by."""
        return f"{self.namespace or ''}_{self.name}_{self.group}_{self.kind}"

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion", "")),
            kind=str(obj.get("kind", "")),
            namespace=meta.get("namespace") or None,
            name=str(meta.get("name", "")),
        )


class Change(enum.StrEnum):
    """What an apply did to the live object."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"  # pruned


@dataclasses.dataclass(frozen=True)
class Applied:
    """The result of one server-side apply."""

    ref: ObjectRef
    created: bool  # the server answered 201: the object did not exist
    resource_version: str | None
    generation: int | None
    live: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Resource:
    """What discovery knows of one kind."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool


@dataclasses.dataclass(frozen=True)
class Event:
    """One Kubernetes Event the reconciler records (core v1), as its recorder keeps it:
    `name` is fixed when it is first seen, `count` and `last` move when it recurs."""

    name: str
    namespace: str  # the regarding object's, or `default` for a cluster-scoped one
    regarding: ObjectRef
    type: str  # Normal or Warning
    reason: str  # Accepted, Aborted, Dropped, Failed, ...
    message: str
    first: str  # RFC 3339
    last: str
    count: int = 1
    component: str = "intent-reconciler"
    instance: str = ""  # the replica (host name or pod)
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Cluster(Protocol):
    """Apply, get, list by label, delete, discovery; and for the reconciler's own objects
    (its state, its Leases) create and update with optimistic concurrency, and the Events
    it records. Errors are errors.ClusterError."""

    def resource(self, *, api_version: str, kind: str) -> Resource:
        """The kind's resource; NotFoundError when the cluster does not serve it,
        GroupUnavailableError when it lists the kind's group version but cannot serve it
        now (an aggregated API whose backend is down)."""
        ...

    def refresh_discovery(self) -> None:
        """Forget what discovery cached, so newly established CRDs are seen."""
        ...

    def apply(self, obj: Mapping[str, Any], *, force: bool = False,
              dry_run: bool = False,
              field_manager: str = contract.SHARED_FIELD_MANAGER) -> Applied:
        """Server-side apply of `obj` as `field_manager`: a site's own
        (`contract.field_manager(site)`) for its manifests, the shared one for crds/."""
        ...

    def json_patch(self, ref: ObjectRef, operations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """A JSON patch (RFC 6902) of the object, returned as stored: how the reconciler
        rewrites the managedFields of its own objects (site/managers.py), guarded by a
        `test` of the resourceVersion it read. A failed test is a ClusterError."""
        ...

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        ...

    def list(self, *, api_version: str, kind: str, label_selector: str,
             namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of one kind matching a label selector (all namespaces by default)."""
        ...

    def delete(self, ref: ObjectRef, *, foreground: bool = False) -> bool:
        """Delete the object; False when it was already gone. `foreground`: the object
        stays, being deleted, until the garbage collector has deleted its dependents (a
        Job's pods); otherwise they are deleted after it, in the background."""
        ...

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create `obj` (POST) and return it as stored, with its resourceVersion;
        VersionConflictError when it exists already."""
        ...

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace `obj` (PUT) only if its `metadata.resourceVersion` is still the live
        one, and return it as stored; VersionConflictError when another writer changed it
        since it was read, NotFoundError when it is gone."""
        ...

    def record_event(self, event: Event) -> None:
        """Record `event`: created the first time (count 1), else its count, last time
        and message patched (created again when it is gone: Events expire)."""
        ...


def write_deadline(request_timeout: float) -> int:
    """The `timeout` a write asks the API server for, in whole seconds, when the client
    waits `request_timeout` for an answer: two thirds of it. The server gives up on the
    write (its context deadline ends the admission calls and the storage transaction)
    before the client gives up on the answer, so a write the client abandoned cannot take
    effect afterwards, when a newer intent may have been accepted. Without it the server
    allows a write 34 s, more than the client's 30 s."""
    return max(1, int(request_timeout * 2 / 3))

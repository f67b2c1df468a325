"""A fake of our own Cluster port, for unit tests of the pipeline. Never fakes a library."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import cluster, contract, errors

CORE_KINDS = {
    ("v1", "Namespace"): False, ("v1", "ConfigMap"): True, ("v1", "Secret"): True,
    ("v1", "ServiceAccount"): True, ("v1", "Service"): True, ("apps/v1", "Deployment"): True,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): False, ("batch/v1", "Job"): True,
    ("coordination.k8s.io/v1", "Lease"): True,
}


class FakeCluster:
    """Objects in a dict; a resourceVersion that moves only when an object changes.

    Custom resources get a generation and, at once, a Ready status at that generation, as
    an instant controller would write it; those named in `not_ready` never get one.
    A group version in `unavailable` is listed but cannot be served, as an APIService whose
    backend is down: every verb on its kinds raises GroupUnavailableError with the reason.
    A Job completes at once, as if its pod ran in no time; an apply that changes its
    spec.template is refused as the API server refuses it (422 Invalid, a FieldValueInvalid
    cause ending `field is immutable`).
    """

    def __init__(self) -> None:
        self.kinds: dict[tuple[str, str], bool] = dict(CORE_KINDS)
        self.objects: dict[cluster.ObjectRef, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (verb, "Kind/ns/name")
        self.fail: dict[str, errors.ClusterError] = {}  # "Kind/ns/name" -> error to raise
        self.not_ready: set[str] = set()  # "Kind/ns/name" of custom resources kept unready
        self.unavailable: dict[str, str] = {}  # group version -> the server's reason
        self.deletes: list[tuple[str, bool]] = []  # ("Kind/ns/name", foreground)
        self.events: dict[tuple[str, str], cluster.Event] = {}  # (namespace, name) -> Event
        self.event_writes: list[tuple[str, str]] = []  # ("create" | "patch", name)
        self._version = 0

    def resource(self, *, api_version: str, kind: str) -> cluster.Resource:
        self._check_available(api_version, kind)
        if (api_version, kind) not in self.kinds:
            raise errors.NotFoundError(f"no kind {kind} in {api_version}", retryable=True)
        return cluster.Resource(api_version=api_version, kind=kind, plural=kind.lower() + "s",
                                namespaced=self.kinds[(api_version, kind)])

    def _check_available(self, api_version: str, kind: str) -> None:
        why = self.unavailable.get(api_version)
        if why is not None:
            raise errors.GroupUnavailableError(
                f"kind {kind!r} cannot be reached: the cluster lists {api_version} but "
                f"cannot serve it now: {why}",
                group_version=api_version, why=why)

    def refresh_discovery(self) -> None:
        self.calls.append(("discovery", ""))

    def apply(self, obj: Mapping[str, Any], *, force: bool = False,
              dry_run: bool = False,
              field_manager: str = contract.SHARED_FIELD_MANAGER) -> cluster.Applied:
        ref = cluster.ObjectRef.of(obj)
        self.resource(api_version=ref.api_version, kind=ref.kind)
        self.calls.append(("dry-run" if dry_run else "apply", str(ref)))
        if str(ref) in self.fail:
            raise self.fail[str(ref)]
        before = self.objects.get(ref)
        desired = copy.deepcopy(dict(obj))
        created = before is None
        if (ref.kind == "Job" and before is not None
                and before["spec"].get("template") != desired["spec"].get("template")):
            raise _immutable(ref, "spec.template")
        desired["metadata"]["managedFields"] = [_apply_entry(desired, manager=field_manager)]
        if created or _content(before) != _content(desired):
            self._version += 1
            desired["metadata"]["resourceVersion"] = str(self._version)
            if (ref.api_version, ref.kind) not in CORE_KINDS:
                old_generation = (before or {}).get("metadata", {}).get("generation", 0)
                spec_changed = before is None or before.get("spec") != desired.get("spec")
                generation = old_generation + 1 if spec_changed else old_generation
                desired["metadata"]["generation"] = generation
                if str(ref) not in self.not_ready:
                    desired["status"] = {"observedGeneration": generation, "conditions": [
                        {"type": "Ready", "status": "True", "reason": "Reconciled",
                         "observedGeneration": generation}]}
            if ref.kind == "Job":
                desired["status"] = {"succeeded": 1, "conditions": [
                    {"type": "Complete", "status": "True"}]}
            if not dry_run:
                self.objects[ref] = desired
            if ref.kind == "CustomResourceDefinition":
                # Served at once, as a real server does within moments.
                desired["status"] = {"conditions": [
                    {"type": "NamesAccepted", "status": "True"},
                    {"type": "Established", "status": "True"}]}
            if ref.kind == "CustomResourceDefinition" and not dry_run:
                spec = desired["spec"]
                for version in spec["versions"]:
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    self.kinds[key] = spec.get("scope") == "Namespaced"
        else:
            desired = before
        return cluster.Applied(ref=ref, created=created,
                               resource_version=desired["metadata"]["resourceVersion"],
                               generation=None, live=desired)

    def json_patch(self, ref: cluster.ObjectRef,
                   operations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The `test` and `replace` operations of a JSON patch, on `/`-separated paths."""
        self.calls.append(("patch", str(ref)))
        if str(ref) in self.fail:
            raise self.fail[str(ref)]
        live = self.objects.get(ref)
        if live is None:
            raise errors.NotFoundError(f"{ref} patch failed: not found", status=404)
        patched = copy.deepcopy(live)
        for operation in operations:
            *parents, last = operation["path"].strip("/").split("/")
            node = patched
            for key in parents:
                node = node[key]
            if operation["op"] == "test" and node.get(last) != operation["value"]:
                raise errors.ClusterError(f"{ref} patch failed: testing value "
                                          f"{operation['path']} failed", status=422)
            if operation["op"] == "replace":
                node[last] = copy.deepcopy(operation["value"])
        return self._store(ref, patched)

    def get(self, ref: cluster.ObjectRef) -> dict[str, Any] | None:
        self.calls.append(("get", str(ref)))
        self._check_available(ref.api_version, ref.kind)
        return copy.deepcopy(self.objects.get(ref))

    def list(self, *, api_version: str, kind: str, label_selector: str,
             namespace: str | None = None) -> list[dict[str, Any]]:
        self.calls.append(("list", kind))
        self._check_available(api_version, kind)
        key, equals, value = label_selector.partition("=")  # `key=value`, or `key` (exists)
        return [copy.deepcopy(o) for r, o in self.objects.items()
                if (r.api_version, r.kind) == (api_version, kind)
                and (namespace is None or r.namespace == namespace)
                and key in o["metadata"].get("labels", {})
                and (not equals or o["metadata"]["labels"][key] == value)]

    def delete(self, ref: cluster.ObjectRef, *, foreground: bool = False) -> bool:
        self.calls.append(("delete", str(ref)))
        self.deletes.append((str(ref), foreground))
        self._check_available(ref.api_version, ref.kind)
        return self.objects.pop(ref, None) is not None

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """POST: stored with a new resourceVersion; 409 when the object exists."""
        ref = cluster.ObjectRef.of(obj)
        self.resource(api_version=ref.api_version, kind=ref.kind)
        self.calls.append(("create", str(ref)))
        if str(ref) in self.fail:
            raise self.fail[str(ref)]
        if ref in self.objects:
            raise errors.VersionConflictError(f"{ref} create failed: already exists",
                                              status=409, reason="AlreadyExists")
        if (obj.get("metadata") or {}).get("resourceVersion"):
            raise errors.ClusterError(f"{ref} create failed: resourceVersion should not be "
                                      "set on objects to be created", status=500)
        return self._store(ref, obj)

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: only over the live resourceVersion (409 Conflict otherwise); 404 when gone."""
        ref = cluster.ObjectRef.of(obj)
        self.resource(api_version=ref.api_version, kind=ref.kind)
        self.calls.append(("update", str(ref)))
        if str(ref) in self.fail:
            raise self.fail[str(ref)]
        live = self.objects.get(ref)
        if live is None:
            raise errors.NotFoundError(f"{ref} update failed: not found", status=404,
                                       reason="NotFound")
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted != live["metadata"]["resourceVersion"]:
            raise errors.VersionConflictError(
                f"{ref} update failed: the object has been modified; please apply your "
                "changes to the latest version and try again", status=409, reason="Conflict")
        return self._store(ref, obj)

    def record_event(self, event: cluster.Event) -> None:
        """Kept as recorded: created the first time, patched when it recurs."""
        self.calls.append(("event", f"{event.reason}/{event.name}"))
        if "events" in self.fail:
            raise self.fail["events"]
        key = (event.namespace, event.name)
        self.event_writes.append(("patch" if key in self.events else "create", event.name))
        self.events[key] = event

    def _store(self, ref: cluster.ObjectRef, obj: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(obj))
        self._version += 1
        stored.setdefault("metadata", {})["resourceVersion"] = str(self._version)
        self.objects[ref] = stored
        return copy.deepcopy(stored)

    def applied(self) -> list[str]:
        """Every object an apply was sent for, in order."""
        return [what for verb, what in self.calls if verb == "apply"]


def _immutable(ref: cluster.ObjectRef, field: str) -> errors.ApplyError:
    """The API server's refusal of an update that changes an immutable field."""
    message = "Invalid value: {...}: field is immutable"
    cause = {"reason": "FieldValueInvalid", "message": message, "field": field}
    return errors.ApplyError(
        f'{ref} apply failed: {ref.kind} "{ref.name}" is invalid: {field}: {message}',
        status=422, reason="Invalid",
        details={"name": ref.name, "kind": ref.kind, "causes": [cause]},
        causes=(errors.Cause(type="FieldValueInvalid", field=field, message=message),))


def _apply_entry(obj: Mapping[str, Any], *, manager: str) -> dict[str, Any]:
    """The managedFields entry a server records for `manager`'s apply of `obj`: every
    field it sets, each list owned as a whole (the fake knows no list keys)."""
    def fields(value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping):
            return {f"f:{k}": fields(v) for k, v in value.items()}
        return {}
    top = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    metadata = {k: v for k, v in top.get("metadata", {}).items()
                if k not in ("name", "namespace", "resourceVersion", "generation",
                             "managedFields")}
    top = {**top, "metadata": metadata} if metadata else \
        {k: v for k, v in top.items() if k != "metadata"}
    return {"manager": manager, "operation": "Apply", "apiVersion": obj["apiVersion"],
            "fieldsType": "FieldsV1", "fieldsV1": fields(top)}


def _content(obj: Mapping[str, Any]) -> Any:
    body = copy.deepcopy(dict(obj))
    body.pop("status", None)
    for key in ("resourceVersion", "generation"):
        body.get("metadata", {}).pop(key, None)
    return body

"""The local cluster's object store: objects, resourceVersions, writes with apiserver semantics,
and the watch event feed. Called by the HTTP handlers in `api`.

One lock guards everything; watchers receive events through their own queues, so a slow watch
never blocks a write.
"""

from __future__ import annotations

import base64
import builtins  # `list` in Store's signatures would name Store.list
import collections
import copy
import dataclasses
import datetime
import enum
import json
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.localcluster import (
    kinds,
    managedfields,
    patches,
    resources,
    schema,
    selectors,
    statuses,
)

HISTORY_LIMIT = 4096
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class PatchType(enum.StrEnum):
    """The PATCH content types, by their short name in the request log."""

    APPLY = "apply"
    MERGE = "merge"
    STRATEGIC = "strategic"
    JSON = "json"


def rfc3339(epoch: float) -> str:
    """Seconds-precision UTC timestamp, as metav1.Time serializes."""
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class Event:
    """One change: its resourceVersion, type, resource, and the object before and after."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    group_resource: tuple[str, str]
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class WriteResult:
    """What a write answers: the object (or Status) and the HTTP code."""

    body: dict[str, Any]
    code: int
    warnings: tuple[str, ...] = ()


class Watcher:
    """One open watch: a filter and a queue of (type, object) the HTTP stream drains."""

    def __init__(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        labels: selectors.Selector,
        fields: selectors.FieldSelector,
    ) -> None:
        self.rtype = rtype
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        """Whether an object is in this watch's selection."""
        if obj is None:
            return False
        metadata = obj.get("metadata") or {}
        if self.namespace and metadata.get("namespace", "") != self.namespace:
            return False
        if not self.labels.matches(metadata.get("labels")):
            return False
        return self.fields.matches(kinds.selectable_fields(self.rtype, obj))

    def offer(self, event: Event) -> None:
        """Queue an event translated for this watch (a change out of selection is DELETED)."""
        if event.group_resource != self.rtype.group_resource:
            return
        now, before = self.matches(event.obj), self.matches(event.old)
        if event.type == "MODIFIED":
            if now and before:
                kind = "MODIFIED"
            elif now:
                kind = "ADDED"
            elif before:
                kind = "DELETED"
            else:
                return
        elif not now:
            return
        else:
            kind = event.type
        self.queue.put((kind, _for_version(event.obj, self.rtype)))

    def close(self) -> None:
        """Wake the stream and tell it to end."""
        self.queue.put(None)


def _for_version(obj: Mapping[str, Any], rtype: resources.ResourceType) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    out["apiVersion"] = rtype.group_version
    return out


class Store:
    """Objects of every served kind, keyed by group resource, then (namespace, name)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:  # injected by tests
        self._clock = clock
        self._lock = threading.RLock()
        self._rv = 0
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY_LIMIT)
        self._compacted = 0
        self._watchers: set[Watcher] = set()
        self._next_ip = 10
        self.registry = resources.Registry(resources.BUILTINS)
        self._bootstrap()

    # ---- bootstrap -------------------------------------------------------------------------

    def _bootstrap(self) -> None:
        namespaces = self.registry.lookup(group="", version="v1", plural="namespaces")
        services = self.registry.lookup(group="", version="v1", plural="services")
        assert namespaces is not None and services is not None
        for name in SYSTEM_NAMESPACES:
            self.create(rtype=namespaces, namespace="", body={"metadata": {"name": name}},
                        manager="kube-apiserver", dry_run=False)
        kubernetes_service = {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver",
                                                          "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1",
                     "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        }
        self.create(rtype=services, namespace="default", body=kubernetes_service,
                    manager="kube-apiserver", dry_run=False)

    # ---- reads -----------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        with self._lock:
            return str(self._rv)

    def get(self, *, rtype: resources.ResourceType, namespace: str, name: str) -> dict[str, Any]:
        """One object, or a 404."""
        with self._lock:
            obj = self._bucket(rtype).get((namespace, name))
            if obj is None:
                raise statuses.not_found(resource=rtype.plural, group=rtype.group, name=name)
            return _for_version(obj, rtype)

    def list(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        labels: selectors.Selector,
        fields: selectors.FieldSelector,
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        """A `<Kind>List` sorted as etcd keys sort, with limit/continue paging."""
        with self._lock:
            start = _decode_continue(continue_token) if continue_token else None
            keys = sorted(self._bucket(rtype))
            items: list[dict[str, Any]] = []
            remaining = 0
            next_key: tuple[str, str] | None = None
            for key in keys:
                if start is not None and key <= start:
                    continue
                if namespace and key[0] != namespace:
                    continue
                obj = self._bucket(rtype)[key]
                if not labels.matches((obj.get("metadata") or {}).get("labels")):
                    continue
                if not fields.matches(kinds.selectable_fields(rtype, obj)):
                    continue
                if limit and len(items) >= limit:
                    remaining += 1
                    continue
                items.append(_for_version(obj, rtype))
                next_key = key
            metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
            if remaining and next_key is not None:
                metadata["continue"] = _encode_continue(next_key, self._rv)
                metadata["remainingItemCount"] = remaining
        if not rtype.custom:
            for item in items:  # typed lists of built-in kinds carry no per-item kind
                item.pop("apiVersion", None)
                item.pop("kind", None)
        return {
            "kind": rtype.list_kind_name,
            "apiVersion": rtype.group_version,
            "metadata": metadata,
            "items": items,
        }

    def namespace_exists(self, name: str) -> bool:
        """Whether a Namespace object exists."""
        with self._lock:
            return ("", name) in self._objects.get(("", "namespaces"), {})

    # ---- watch -----------------------------------------------------------------------------

    def watch(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        labels: selectors.Selector,
        fields: selectors.FieldSelector,
        resource_version: str,
        send_initial_events: bool = False,
        bookmarks: bool = False,
    ) -> Watcher:
        """Open a watch; its queue starts with the catch-up events for resource_version."""
        watcher = Watcher(rtype=rtype, namespace=namespace, labels=labels, fields=fields)
        with self._lock:
            if resource_version in ("", "0") or send_initial_events:
                for key in sorted(self._bucket(rtype)):
                    obj = self._bucket(rtype)[key]
                    if watcher.matches(obj):
                        watcher.queue.put(("ADDED", _for_version(obj, rtype)))
                if send_initial_events and bookmarks:
                    watcher.queue.put(("BOOKMARK", self._bookmark(rtype)))
            else:
                try:
                    since = int(resource_version)
                except ValueError as exc:
                    raise statuses.bad_request(
                        f'invalid resource version "{resource_version}": {exc}'
                    ) from exc
                if since < self._compacted:
                    expired = statuses.failure(
                        code=410,
                        reason="Expired",
                        message=f"too old resource version: {since} ({self._compacted + 1})",
                    )
                    watcher.queue.put(("ERROR", expired))
                    watcher.queue.put(None)
                    return watcher
                for event in self._history:
                    if event.rv > since:
                        watcher.offer(event)
            self._watchers.add(watcher)
        return watcher

    def _bookmark(self, rtype: resources.ResourceType) -> dict[str, Any]:
        """The BOOKMARK that ends a watch's initial events, at the current resourceVersion."""
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv),
                                    "annotations": {"k8s.io/initial-events-end": "true"}}
        return {"kind": rtype.kind, "apiVersion": rtype.group_version, "metadata": metadata}

    def unwatch(self, watcher: Watcher) -> None:
        """Forget a watch whose stream ended."""
        with self._lock:
            self._watchers.discard(watcher)

    def close_watches(self) -> None:
        """End every open watch (server stop)."""
        with self._lock:
            watchers = list(self._watchers)
            self._watchers.clear()
        for watcher in watchers:
            watcher.close()

    # ---- writes ----------------------------------------------------------------------------

    def create(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        body: Any,
        manager: str,
        dry_run: bool,
        field_validation: str = "",
    ) -> WriteResult:
        """POST: 201 with the new object; 409 AlreadyExists; 404 for a missing namespace."""
        obj = self._check_body(rtype, body, namespace=namespace, name=None)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
            metadata["name"] = f"{metadata['generateName']}{suffix}"
        name = metadata.get("name") or ""
        if not name:
            raise statuses.invalid(kind=rtype.kind, group=rtype.group, name="", causes=[
                statuses.Cause(type="FieldValueRequired",
                               message="Required value: name or generateName is required",
                               field="metadata.name")])
        if metadata.get("resourceVersion"):
            raise statuses.internal("resourceVersion should not be set on objects to be created")
        with self._lock:
            self._require_namespace(rtype, namespace)
            if (namespace, name) in self._bucket(rtype):
                raise statuses.already_exists(resource=rtype.plural, group=rtype.group, name=name)
            new, warnings = self._prepare(rtype=rtype, old=None, new=obj, subresource="",
                                          field_validation=field_validation)
            entries = managedfields.update(old=None, new=new, rtype=rtype, manager=manager,
                                           subresource="", now=self._now())
            new["metadata"]["managedFields"] = managedfields.serialize(entries)
            return WriteResult(body=self._persist(rtype, None, new, dry_run=dry_run), code=201,
                               warnings=warnings)

    def update(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str,
        manager: str,
        dry_run: bool,
        field_validation: str = "",
    ) -> WriteResult:
        """PUT: 200; 409 Conflict on a stale resourceVersion; 404 when absent."""
        obj = self._check_body(rtype, body, namespace=namespace, name=name)
        with self._lock:
            old = self._existing(rtype, namespace, name)
            wanted = (obj.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise statuses.conflict(resource=rtype.plural, group=rtype.group, name=name,
                                        why=statuses.STALE_OBJECT)
            return self._write(rtype=rtype, old=old, candidate=obj, subresource=subresource,
                               manager=manager, dry_run=dry_run, apply_entries=None,
                               field_validation=field_validation)

    def patch(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        name: str,
        body: Any,
        patch_type: PatchType,
        subresource: str,
        manager: str,
        force: bool,
        dry_run: bool,
        field_validation: str = "",
    ) -> WriteResult:
        """PATCH of any type; apply creates the object when it is absent."""
        with self._lock:
            old = self._bucket(rtype).get((namespace, name))
            if patch_type is PatchType.APPLY:
                return self._apply(rtype=rtype, namespace=namespace, name=name, config=body,
                                   old=old, subresource=subresource, manager=manager,
                                   force=force, dry_run=dry_run,
                                   field_validation=field_validation)
            if old is None:
                raise statuses.not_found(resource=rtype.plural, group=rtype.group, name=name)
            current = _for_version(old, rtype)
            if patch_type is PatchType.JSON:
                candidate = patches.json_patch(current, body)
            elif not isinstance(body, dict):
                raise statuses.bad_request(
                    "json: cannot unmarshal array into Go value of type map[string]interface {}"
                )
            elif patch_type is PatchType.STRATEGIC:
                candidate = patches.strategic_merge_patch(current, body,
                                                          managedfields.shape_of(rtype))
            else:
                candidate = patches.merge_patch(current, body)
            if not isinstance(candidate, dict):
                raise statuses.bad_request("patched object is not a JSON object")
            wanted = (candidate.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise statuses.conflict(resource=rtype.plural, group=rtype.group, name=name,
                                        why=statuses.STALE_OBJECT)
            self._check_body(rtype, candidate, namespace=namespace, name=name)
            return self._write(rtype=rtype, old=old, candidate=candidate,
                               subresource=subresource, manager=manager, dry_run=dry_run,
                               apply_entries=None, field_validation=field_validation)

    def _apply(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        name: str,
        config: Any,
        old: dict[str, Any] | None,
        subresource: str,
        manager: str,
        force: bool,
        dry_run: bool,
        field_validation: str,
    ) -> WriteResult:
        config = self._check_apply_body(rtype, config, namespace=namespace, name=name)
        if old is None:
            if subresource:
                raise statuses.not_found(resource=rtype.plural, group=rtype.group, name=name)
            self._require_namespace(rtype, namespace)
        wanted = (config.get("metadata") or {}).get("resourceVersion")
        if old is not None and wanted and wanted != old["metadata"]["resourceVersion"]:
            raise statuses.conflict(resource=rtype.plural, group=rtype.group, name=name,
                                    why=statuses.STALE_OBJECT)
        live = _for_version(old, rtype) if old is not None else None
        merged, entries = managedfields.apply(live=live, config=config, rtype=rtype,
                                              manager=manager, force=force,
                                              subresource=subresource, now=self._now())
        if old is None:
            new, warnings = self._prepare(rtype=rtype, old=None, new=merged, subresource="",
                                          field_validation=field_validation)
            if rtype.custom:
                entries = managedfields.retain_existing(entries, new, rtype)
            new["metadata"]["managedFields"] = managedfields.serialize(entries)
            return WriteResult(body=self._persist(rtype, None, new, dry_run=dry_run), code=201,
                               warnings=warnings)
        return self._write(rtype=rtype, old=old, candidate=merged, subresource=subresource,
                           manager=manager, dry_run=dry_run, apply_entries=entries,
                           field_validation=field_validation)

    def delete(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        name: str,
        options: Mapping[str, Any],
        dry_run: bool,
    ) -> WriteResult:
        """DELETE: a Status (or the object, for some kinds); finalizers defer the removal."""
        with self._lock:
            old = self._existing(rtype, namespace, name)
            _check_preconditions(rtype, old, options)
            if rtype.kind == "Namespace" and name in PROTECTED_NAMESPACES:
                raise statuses.forbidden(resource="namespaces", group="", name=name,
                                         why="this namespace may not be deleted")
            uid = old["metadata"].get("uid", "")
            if rtype.kind in ("Namespace", "CustomResourceDefinition"):
                return WriteResult(body=self._delete_container(rtype, old, dry_run=dry_run),
                                   code=200)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return WriteResult(body=_for_version(old, rtype), code=200)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = self._now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if old["metadata"].get("generation") is not None:
                    new["metadata"]["generation"] = old["metadata"]["generation"] + 1
                return WriteResult(body=self._persist(rtype, old, new, dry_run=dry_run), code=200)
            if not dry_run:
                self._remove(rtype, old)
            body = (
                _for_version(old, rtype)
                if rtype.returns_deleted
                else statuses.success(name=name, group=rtype.group, resource=rtype.plural, uid=uid)
            )
            return WriteResult(body=body, code=200)

    def delete_collection(
        self,
        *,
        rtype: resources.ResourceType,
        namespace: str,
        labels: selectors.Selector,
        fields: selectors.FieldSelector,
        dry_run: bool,
    ) -> WriteResult:
        """DELETE on a collection: deletes what the selectors match, answers with the list."""
        with self._lock:
            listing = self.list(rtype=rtype, namespace=namespace, labels=labels, fields=fields)
            deleted = []
            for item in listing["items"]:
                metadata = item["metadata"]
                result = self.delete(rtype=rtype, namespace=metadata.get("namespace", ""),
                                     name=metadata["name"], options={}, dry_run=dry_run)
                deleted.append(result.body if result.body.get("kind") != "Status" else item)
            listing["items"] = deleted
            listing["metadata"] = {"resourceVersion": str(self._rv)}
            return WriteResult(body=listing, code=200)

    # ---- the write pipeline ----------------------------------------------------------------

    def _write(
        self,
        *,
        rtype: resources.ResourceType,
        old: dict[str, Any],
        candidate: dict[str, Any],
        subresource: str,
        manager: str,
        dry_run: bool,
        apply_entries: builtins.list[managedfields.Entry] | None,
        field_validation: str,
    ) -> WriteResult:
        new, warnings = self._prepare(rtype=rtype, old=old, new=candidate,
                                      subresource=subresource, field_validation=field_validation)
        now = self._now()
        if apply_entries is None:
            entries = managedfields.update(old=old, new=new, rtype=rtype, manager=manager,
                                           subresource=subresource, now=now)
        elif rtype.custom:
            entries = managedfields.retain_existing(apply_entries, new, rtype)
        else:
            # A built-in kind's applier owns what it applied, a null or an empty list too,
            # though the typed object leaves those out.
            entries = apply_entries
        new["metadata"]["managedFields"] = managedfields.serialize(entries)
        if _same(old, new):
            return WriteResult(body=_for_version(old, rtype), code=200, warnings=warnings)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if not dry_run:
                self._remove(rtype, old)
            return WriteResult(body=_for_version(new, rtype), code=200, warnings=warnings)
        return WriteResult(body=self._persist(rtype, old, new, dry_run=dry_run), code=200,
                           warnings=warnings)

    def _prepare(
        self,
        *,
        rtype: resources.ResourceType,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        subresource: str,
        field_validation: str,
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Everything between the request body and the stored object, except managedFields."""
        new = copy.deepcopy(new)
        new["apiVersion"] = rtype.group_version
        new["kind"] = rtype.kind
        metadata = new.setdefault("metadata", {})
        if old is not None:
            if subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                new["apiVersion"] = rtype.group_version
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
                metadata = new["metadata"]
            elif rtype.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            for key in ("uid", "creationTimestamp", "resourceVersion", "generation",
                        "deletionTimestamp", "deletionGracePeriodSeconds", "name", "namespace"):
                if key in old["metadata"]:
                    metadata[key] = old["metadata"][key]
                else:
                    metadata.pop(key, None)
            if old["metadata"].get("deletionTimestamp") is None:
                metadata.pop("deletionTimestamp", None)
        else:
            for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                        "deletionGracePeriodSeconds", "selfLink"):
                metadata.pop(key, None)
            status = kinds.initial_status(rtype, new)
            if rtype.has_status or status is not None:
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = self._now()
        if not rtype.namespaced:
            metadata.pop("namespace", None)
        if subresource != "status":
            if old is not None and rtype.kind == "Service":
                kinds.keep_allocated(old, new)
            kinds.default(rtype, new, allocate_ip=self._allocate_ip)
        name = metadata.get("name", "")
        causes = kinds.name_errors(rtype, name) if old is None else []
        new, kind_causes, pruned = kinds.validate(rtype, new)
        causes.extend(kind_causes)
        if old is not None and subresource != "status":
            causes.extend(kinds.immutable_errors(rtype, old, new))
        if causes:
            raise statuses.invalid(kind=rtype.kind, group=rtype.group, name=name, causes=causes)
        if pruned and field_validation == "Strict":
            raise statuses.bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in pruned)
            )
        warnings = () if field_validation == "Ignore" else tuple(
            f'unknown field "{p}"' for p in pruned
        )
        if rtype.tracks_generation:
            if old is None:
                new["metadata"]["generation"] = 1
            else:
                generation = old["metadata"].get("generation", 1)
                if kinds.spec_of(rtype, old) != kinds.spec_of(rtype, new):
                    generation += 1
                new["metadata"]["generation"] = generation
            kinds.after_generation(rtype, old, new)
        return new, warnings

    def _persist(
        self,
        rtype: resources.ResourceType,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Store a changed object under a new resourceVersion and publish its event."""
        if dry_run:
            return _for_version(new, rtype)
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        new = copy.deepcopy(new)
        new["apiVersion"] = self._storage_api_version(rtype)
        key = (new["metadata"].get("namespace", "") if rtype.namespaced else "",
               new["metadata"]["name"])
        self._objects.setdefault(rtype.group_resource, {})[key] = new
        self._publish(Event(rv=self._rv, type="MODIFIED" if old else "ADDED",
                            group_resource=rtype.group_resource, obj=new, old=old))
        if rtype.kind == "CustomResourceDefinition" and not rtype.custom:
            self._crd_changed(new)
        return _for_version(new, rtype)

    def _remove(self, rtype: resources.ResourceType, old: dict[str, Any]) -> None:
        key = (old["metadata"].get("namespace", "") if rtype.namespaced else "",
               old["metadata"]["name"])
        bucket = self._objects.get(rtype.group_resource, {})
        if key not in bucket:
            return
        del bucket[key]
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._publish(Event(rv=self._rv, type="DELETED", group_resource=rtype.group_resource,
                            obj=gone, old=old))

    def _delete_container(
        self, rtype: resources.ResourceType, old: dict[str, Any], *, dry_run: bool
    ) -> dict[str, Any]:
        """Delete a namespace or CRD and everything in it, at once.

        A real server marks it Terminating and its namespace controller (or the CRD finalizer)
        removes the contents in the background; doing it at once is the only difference.
        """
        answer = copy.deepcopy(old)
        answer["metadata"]["deletionTimestamp"] = self._now()
        if rtype.kind == "Namespace":
            answer["status"] = {"phase": "Terminating"}
        else:
            finalizers = answer["metadata"].setdefault("finalizers", [])
            if kinds.CRD_FINALIZER not in finalizers:
                finalizers.append(kinds.CRD_FINALIZER)
        if dry_run:
            return _for_version(answer, rtype)
        if rtype.kind == "Namespace":
            namespace = old["metadata"]["name"]
            for t in self._storage_types():
                if not t.namespaced:
                    continue
                for key, obj in sorted(self._objects.get(t.group_resource, {}).items()):
                    if key[0] == namespace:
                        self._remove(t, obj)
        else:
            spec = old.get("spec") or {}
            group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
            for t in self.registry.of_group_resource(group, plural)[:1]:
                for obj in list(self._objects.get(t.group_resource, {}).values()):
                    self._remove(t, obj)
            self._objects.pop((group, plural), None)
        self._remove(rtype, old)
        if rtype.kind == "CustomResourceDefinition":
            self._rebuild_registry()
            spec = old.get("spec") or {}
            gone = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
            for watcher in [w for w in self._watchers if w.rtype.group_resource == gone]:
                self._watchers.discard(watcher)
                watcher.close()  # a real server ends watches on a resource it stops serving
        return _for_version(answer, rtype)

    # ---- CRDs ------------------------------------------------------------------------------

    def _crd_changed(self, crd: dict[str, Any]) -> None:
        """Serve the CRD's versions and mark it NamesAccepted and Established, as its
        controllers do within milliseconds on a real server."""
        self._rebuild_registry()
        spec = crd.get("spec") or {}
        names = copy.deepcopy(spec.get("names") or {})
        status = crd.get("status") or {}
        types = {c.get("type"): c for c in status.get("conditions") or []}
        established = types.get("Established", {}).get("status") == "True"
        accepted = types.get("NamesAccepted", {}).get("status") == "True"
        if established and accepted and status.get("acceptedNames") == names:
            return
        now = self._now()
        new = copy.deepcopy(crd)
        new["status"] = {
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
                 "reason": "NoConflicts", "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": now,
                 "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted"},
            ],
            "storedVersions": status.get("storedVersions")
            or [v.get("name") for v in spec.get("versions") or [] if v.get("storage")][:1],
        }
        crd_type = self.registry.lookup(group="apiextensions.k8s.io", version="v1",
                                        plural="customresourcedefinitions")
        assert crd_type is not None
        entries = managedfields.update(old=crd, new=new, rtype=crd_type,
                                       manager="kube-apiserver", subresource="status", now=now)
        new["metadata"]["managedFields"] = managedfields.serialize(entries)
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        key = ("", new["metadata"]["name"])
        self._objects[crd_type.group_resource][key] = new
        self._publish(Event(rv=self._rv, type="MODIFIED", group_resource=crd_type.group_resource,
                            obj=new, old=crd))

    def _rebuild_registry(self) -> None:
        types = list(resources.BUILTINS)
        for _, crd in sorted(self._objects.get(("apiextensions.k8s.io",
                                                "customresourcedefinitions"), {}).items()):
            types.extend(resources.types_from_crd(crd))
        self.registry = resources.Registry(types)

    def _storage_types(self) -> builtins.list[resources.ResourceType]:
        seen: dict[tuple[str, str], resources.ResourceType] = {}
        for t in self.registry.types:
            seen.setdefault(t.group_resource, t)
        return list(seen.values())

    def _storage_api_version(self, rtype: resources.ResourceType) -> str:
        if rtype.custom and rtype.storage_version:
            return f"{rtype.group}/{rtype.storage_version}"
        return rtype.group_version

    # ---- helpers ---------------------------------------------------------------------------

    def _bucket(self, rtype: resources.ResourceType) -> dict[tuple[str, str], dict[str, Any]]:
        return self._objects.get(rtype.group_resource, {})

    def _existing(self, rtype: resources.ResourceType, namespace: str, name: str
                  ) -> dict[str, Any]:
        old = self._bucket(rtype).get((namespace, name))
        if old is None:
            raise statuses.not_found(resource=rtype.plural, group=rtype.group, name=name)
        return old

    def _require_namespace(self, rtype: resources.ResourceType, namespace: str) -> None:
        if rtype.namespaced and not self.namespace_exists(namespace):
            raise statuses.not_found(resource="namespaces", group="", name=namespace)

    def _check_body(self, rtype: resources.ResourceType, body: Any, *, namespace: str,
                    name: str | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise statuses.bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
            )
        api_version = body.get("apiVersion")
        if api_version and api_version != rtype.group_version:
            raise statuses.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.group_version})"
            )
        kind = body.get("kind")
        if kind and kind != rtype.kind:
            raise statuses.bad_request(
                f'{kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                f'no kind "{kind}" is registered for version "{rtype.group_version}"'
            )
        problem = kinds.decode_errors(rtype, body)
        if problem:
            raise statuses.bad_request(problem)
        metadata = body.get("metadata") or {}
        body_namespace = metadata.get("namespace")
        if rtype.namespaced and body_namespace and body_namespace != namespace:
            raise statuses.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if name is not None and metadata.get("name") and metadata["name"] != name:
            raise statuses.bad_request(
                f"the name of the object ({metadata['name']}) does not match the name on the "
                f"URL ({name})"
            )
        out = copy.deepcopy(body)
        out.setdefault("metadata", {})
        if name is not None:
            out["metadata"]["name"] = name
        if rtype.namespaced:
            out["metadata"]["namespace"] = namespace
        return out

    def _check_apply_body(self, rtype: resources.ResourceType, body: Any, *, namespace: str,
                          name: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise statuses.bad_request("error decoding YAML: apply patch is not an object")
        for field in ("apiVersion", "kind"):
            if not body.get(field):
                raise statuses.bad_request(f"invalid object type: /, Kind={body.get('kind', '')}"
                                           if field == "kind" else
                                           "apiVersion must be set in the applied configuration")
        problem = schema.typed_patch_error(body, rtype.schema)
        if problem:
            # The apiserver names the object as the applied body does: its namespace may
            # be empty even when the URL names one.
            meta = body.get("metadata") or {}
            where = f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"
            raise statuses.ApiError(
                code=500, reason="",
                message=f"failed to create typed patch object ({where}; {rtype.group}/"
                        f"{rtype.version}, Kind={rtype.kind}): {problem}")
        return self._check_body(rtype, body, namespace=namespace, name=name)

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        n = self._next_ip
        return f"10.96.{n // 250}.{n % 250 + 1}"

    def _now(self) -> str:
        return rfc3339(self._clock())

    def _publish(self, event: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(event)
        for watcher in list(self._watchers):
            watcher.offer(event)


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """A no-op write: equal once managedFields timestamps are ignored."""
    return _comparable(old) == _comparable(new)


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    out.pop("apiVersion", None)
    metadata = out.get("metadata") or {}
    metadata.pop("resourceVersion", None)
    metadata["managedFields"] = sorted(
        (json.dumps({k: v for k, v in e.items() if k != "time"}, sort_keys=True)
         for e in metadata.get("managedFields") or []),
    )
    return out


def _check_preconditions(rtype: resources.ResourceType, old: Mapping[str, Any],
                         options: Mapping[str, Any]) -> None:
    preconditions = options.get("preconditions") or {}
    name = old["metadata"]["name"]
    uid = preconditions.get("uid")
    if uid and uid != old["metadata"].get("uid"):
        raise statuses.conflict(
            resource=rtype.plural, group=rtype.group, name=name,
            why=f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
            f"{old['metadata'].get('uid')}",
        )
    rv = preconditions.get("resourceVersion")
    if rv and rv != old["metadata"].get("resourceVersion"):
        raise statuses.conflict(
            resource=rtype.plural, group=rtype.group, name=name,
            why=f"Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion "
            f"in object meta: {old['metadata'].get('resourceVersion')}",
        )


def _encode_continue(key: tuple[str, str], rv: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{key[0]}/{key[1]}"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        namespace, _, name = str(data["start"]).partition("/")
        return (namespace, name)
    except (ValueError, KeyError, TypeError) as exc:
        raise statuses.bad_request(f"continue key is not valid: {exc}") from exc

"""Server-side apply and field ownership (metadata.managedFields). Called by the store.

`apply()` merges an applied configuration into the live object the way structured-merge-diff
does for the common cases: fields the manager applied before and omits now are removed unless
another manager owns them; a field another manager owns and the apply would change is a
conflict unless forced. `update()` records ownership for every other write.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.localcluster import fieldpaths, resources, statuses

_RESET_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One managedFields entry."""

    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    subresource: str
    paths: frozenset[fieldpaths.Path]

    @property
    def key(self) -> tuple[str, str, str]:
        """Entries are unique per manager, operation and subresource."""
        return (self.manager, self.operation, self.subresource)

    def to_dict(self) -> dict[str, Any]:
        """The JSON entry."""
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fieldpaths.encode(self.paths),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def describe(self) -> str:
        """The manager as conflict messages print it. The apiserver's printManager can add
        ` at <time>`, but the manager identifier it prints carries no time, so the real
        server (v1.37) never does; neither do we."""
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


def shape_of(rtype: resources.ResourceType) -> fieldpaths.Shape:
    """The walking shape of a resource type's objects."""
    return fieldpaths.Shape(schema=rtype.schema, custom=rtype.custom)


def parse(obj: Mapping[str, Any] | None) -> list[Entry]:
    """The entries recorded on an object."""
    if not obj:
        return []
    raw = (obj.get("metadata") or {}).get("managedFields") or []
    out = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        out.append(
            Entry(
                manager=str(item.get("manager", "")),
                operation=str(item.get("operation", "Update")),
                api_version=str(item.get("apiVersion", "")),
                time=str(item.get("time", "")),
                subresource=str(item.get("subresource", "")),
                paths=frozenset(fieldpaths.decode(item.get("fieldsV1"))),
            )
        )
    return out


def serialize(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Entries in the real server's order: operation, time, manager, apiVersion, subresource."""
    ordered = sorted(
        (e for e in entries if e.paths),
        key=lambda e: (e.operation, e.time, e.manager, e.api_version, e.subresource),
    )
    return [e.to_dict() for e in ordered]


def tracked(
    obj: Mapping[str, Any], *, rtype: resources.ResourceType, subresource: str
) -> set[fieldpaths.Path]:
    """The paths of an object that a write in this subresource can own."""
    out = set()
    for path in fieldpaths.leaves(obj, shape_of(rtype)):
        top = path[0][1]
        if top in ("apiVersion", "kind"):
            continue
        if top == "metadata" and (len(path) == 1 or path[1][1] in _RESET_METADATA):
            continue
        if rtype.has_status and (top == "status") != (subresource == "status"):
            continue
        out.add(path)
    return out


def conflict_error(
    conflicts: Sequence[tuple[Entry, fieldpaths.Path]],
) -> statuses.ApiError:
    """409 `Apply failed with N conflict(s): ...` worded as the apiserver's fieldmanager,
    with its causes in the same order: by manager, then field."""
    conflicts = sorted(conflicts, key=lambda c: (c[0].describe(), fieldpaths.render(c[1])))
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {entry.describe()}",
            "field": fieldpaths.render(path),
        }
        for entry, path in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {entry.describe()}: "
            f"{fieldpaths.render(path)}"
        )
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(fieldpaths.render(path))
        lines = []
        for manager in sorted(by_manager):
            lines.append(f"conflicts with {manager}:")
            lines.extend(f"- {p}" for p in by_manager[manager])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return statuses.ApiError(
        code=409, reason="Conflict", message=message, details={"causes": causes}
    )


def merge(live: Any, applied: Any, shape: fieldpaths.Shape) -> Any:
    """Apply semantics: maps merge field by field, keyed lists by key, sets by value."""
    if isinstance(live, dict) and isinstance(applied, dict) and not shape.atomic_map():
        out = dict(live)
        for key, value in applied.items():
            if key in live:
                out[key] = merge(live[key], value, shape.child(key))
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        kind, keys = shape.list_kind(applied if applied else live)
        if kind == "map" and shape.list_kind(live)[0] in ("map", "atomic"):
            item_shape = shape.item()
            out_list = list(live)
            index = {
                fieldpaths.item_key(item, keys): i
                for i, item in enumerate(out_list)
                if isinstance(item, dict)
            }
            for item in applied:
                k = fieldpaths.item_key(item, keys)
                if k in index:
                    out_list[index[k]] = merge(out_list[index[k]], item, item_shape)
                else:
                    index[k] = len(out_list)
                    out_list.append(copy.deepcopy(item))
            return out_list
        if kind == "set":
            out_set = list(live)
            for item in applied:
                if item not in out_set:
                    out_set.append(copy.deepcopy(item))
            return out_set
    return copy.deepcopy(applied)


def apply(
    *,
    live: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    rtype: resources.ResourceType,
    manager: str,
    force: bool,
    subresource: str,
    now: str,
) -> tuple[dict[str, Any], list[Entry]]:
    """Merge an applied configuration; returns the new object and its managed-field entries.

    Raises a 409 Conflict ApiError for fields other managers own, unless forced.
    """
    shape = shape_of(rtype)
    entries = parse(live)
    applied = tracked(config, rtype=rtype, subresource=subresource)
    key = (manager, "Apply", subresource)
    mine = next((e for e in entries if e.key == key), None)
    others = [e for e in entries if e.key != key]

    conflicts: list[tuple[Entry, fieldpaths.Path]] = []
    if live is not None:
        for path in sorted(applied):
            if path[-1][0] in ("k", "v"):
                continue
            current = fieldpaths.get(live, path, shape)
            if current == fieldpaths.get(config, path, shape):
                continue
            if current is fieldpaths.MISSING and rtype.custom:
                continue
            conflicts.extend((entry, path) for entry in others if path in entry.paths)
    if conflicts and not force:
        raise conflict_error(conflicts)
    lost = {path for _, path in conflicts}
    others = [dataclasses.replace(e, paths=e.paths - lost) for e in others]

    result: dict[str, Any] = merge(copy.deepcopy(dict(live or {})), dict(config), shape)
    kept = set(applied)
    for e in others:
        kept |= e.paths
    previously = set(mine.paths) if mine else set()
    doomed = {
        path
        for path in previously - applied
        if path not in kept and not any(fieldpaths.under(p, path) for p in kept)
    }
    # An item that goes takes its fields with it; remove the outermost paths only.
    outermost = [p for p in doomed if not any(a in doomed for a in fieldpaths.iter_prefixes(p))]
    for path in sorted(outermost, key=len, reverse=True):
        if fieldpaths.remove(result, path, shape):
            _prune_empty_parents(result, path, shape, kept)

    entries = [*others, Entry(manager=manager, operation="Apply",
                              api_version=_api_version(rtype), time=now,
                              subresource=subresource, paths=frozenset(applied))]
    return result, entries


def _prune_empty_parents(
    obj: dict[str, Any], path: fieldpaths.Path, shape: fieldpaths.Shape, kept: set[fieldpaths.Path]
) -> None:
    for parent in fieldpaths.iter_prefixes(path):
        value = fieldpaths.get(obj, parent, shape)
        if value not in ({}, []) or parent in kept or any(
            fieldpaths.under(p, parent) for p in kept
        ):
            return
        fieldpaths.remove(obj, parent, shape)


def retain_existing(
    entries: Sequence[Entry], obj: Mapping[str, Any], rtype: resources.ResourceType
) -> list[Entry]:
    """Entries with every path the stored object lacks (pruned, defaulted away) dropped."""
    shape = shape_of(rtype)
    return [
        dataclasses.replace(
            e,
            paths=frozenset(
                p for p in e.paths if fieldpaths.get(obj, p, shape) is not fieldpaths.MISSING
            ),
        )
        for e in entries
    ]


def _api_version(rtype: resources.ResourceType) -> str:
    return rtype.group_version


def update(
    *,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    rtype: resources.ResourceType,
    manager: str,
    subresource: str,
    now: str,
) -> list[Entry]:
    """Ownership after a non-apply write: the writer takes every field it changed.

    A write whose body carries managedFields of its own (not a subresource's) sets them,
    as the API server lets a client rewrite them (fieldmanager.go: the request's entries
    when they decode to any, else the live object's); `[{}]` clears them all."""
    shape = shape_of(rtype)
    supplied = parse(new) if not subresource else []
    entries = supplied if supplied else parse(old)
    before = tracked(old, rtype=rtype, subresource=subresource) if old else set()
    after = tracked(new, rtype=rtype, subresource=subresource)
    changed = {
        p
        for p in after
        if p not in before or fieldpaths.get(old, p, shape) != fieldpaths.get(new, p, shape)
    }
    key = (manager, "Update", subresource)
    out: list[Entry] = []
    mine: Entry | None = None
    for e in entries:
        # A write takes away the fields it removed; a field owned though absent (a null
        # or a zero a built-in kind's typed object leaves out) stays owned.
        paths = frozenset(p for p in e.paths
                          if fieldpaths.get(new, p, shape) is not fieldpaths.MISSING
                          or fieldpaths.get(old, p, shape) is fieldpaths.MISSING)
        if e.key == key:
            mine = dataclasses.replace(e, paths=paths)
            continue
        out.append(dataclasses.replace(e, paths=paths - changed))
    if changed:
        base = mine.paths if mine else frozenset()
        out.append(Entry(manager=manager, operation="Update", api_version=_api_version(rtype),
                         time=now, subresource=subresource, paths=base | changed))
    elif mine is not None:
        out.append(mine)
    return out

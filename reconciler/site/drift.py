"""Would a server-side apply change a live object? Pure logic, called by rollout and plan.

Server-side apply decides by two things: the field values, and the set of fields the
applying manager owns (`metadata.managedFields`, its `Apply` entry). Applying the same
manifest again changes nothing only when the live object holds every desired value AND the
site's field manager (`reconciler/<site>`, passed in as `manager`) owns exactly the
manifest's fields: a field it owns that the manifest no longer sets is removed by the apply
(a label or a data key taken out of Git).

`in_sync()` is the cheap check, made on the live object already read: True only when both
hold with certainty. Anything else is uncertain, not necessarily drift: the server
normalizes what a manifest says (`data:` with no value, `apiGroup: ""`, a zero default it
omits, a Secret's `stringData` stored as `data`, `cpu: 0.5` stored as `500m`). For those the
rollout asks the server itself with a dry-run apply and compares its answer with the live
object (`unchanged_by()`): the same result means no write is needed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_IGNORED_TOP_LEVEL = ("apiVersion", "kind", "status")
# Set by the request path, never owned by an apply (structured-merge-diff resets them).
_UNOWNED_METADATA = ("name", "namespace", "creationTimestamp")


def in_sync(*, desired: Mapping[str, Any], live: Mapping[str, Any],
            manager: str) -> bool:
    """True when applying `desired` would certainly change nothing: every desired field has
    the same value live, and `manager`'s apply entry owns exactly the desired fields."""
    values = all(
        key in live and _contains(live[key], value)
        for key, value in _without_unset_timestamp(desired).items()
        if key not in _IGNORED_TOP_LEVEL
    )
    return values and owns_exactly(desired=desired, live=live, manager=manager)


def _without_unset_timestamp(desired: Mapping[str, Any]) -> Mapping[str, Any]:
    """`creationTimestamp: null`, which generated manifests carry, is the server's to set."""
    metadata = desired.get("metadata")
    if not isinstance(metadata, Mapping) or "creationTimestamp" not in metadata \
            or metadata["creationTimestamp"] is not None:
        return desired
    return {**desired, "metadata": {k: v for k, v in metadata.items()
                                    if k != "creationTimestamp"}}


def owns_exactly(*, desired: Mapping[str, Any], live: Mapping[str, Any],
                 manager: str) -> bool:
    """Whether `manager`'s Apply entry on `live` (same apiVersion) owns exactly the fields
    `desired` sets. False when it cannot tell: no entry, a null value, an unknown shape."""
    entry = _apply_entry(live, manager)
    if entry is None or entry.get("apiVersion") != desired.get("apiVersion"):
        return False
    fields = entry.get("fieldsV1")
    if not isinstance(fields, Mapping):
        return False
    top = {k: v for k, v in desired.items() if k not in _IGNORED_TOP_LEVEL}
    metadata = top.get("metadata")
    if isinstance(metadata, Mapping):
        kept = {k: v for k, v in metadata.items() if k not in _UNOWNED_METADATA}
        if kept:
            top["metadata"] = kept
        else:
            del top["metadata"]
    return _same_fields(fields, top)


def unchanged_by(*, live: Mapping[str, Any], result: Mapping[str, Any],
                 manager: str) -> bool:
    """Whether the object a dry-run apply answered is the live one: the same content
    (status, resourceVersion and managedFields aside, which a controller may have moved
    since the read) and the same fields owned by `manager`'s apply entry."""
    if _content(live) != _content(result):
        return False
    before, after = _apply_entry(live, manager), _apply_entry(result, manager)
    if before is None or after is None:
        return before is after
    return (before.get("apiVersion"), before.get("fieldsV1")) == \
        (after.get("apiVersion"), after.get("fieldsV1"))


def _apply_entry(obj: Mapping[str, Any], manager: str) -> Mapping[str, Any] | None:
    entries = (obj.get("metadata") or {}).get("managedFields") or ()
    for entry in entries:
        if (isinstance(entry, Mapping) and entry.get("manager") == manager
                and entry.get("operation") == "Apply" and not entry.get("subresource")):
            return entry
    return None


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    metadata = out.get("metadata")
    if isinstance(metadata, Mapping):
        out["metadata"] = {k: v for k, v in metadata.items()
                           if k not in ("resourceVersion", "managedFields")}
    return out


def _same_fields(fields: Mapping[str, Any], value: Any) -> bool:
    """Whether a fieldsV1 node owns exactly the fields of `value` (a map or a list node;
    a scalar, or a list owned as a whole, is the empty node)."""
    children = {k: v for k, v in fields.items() if k != "."}
    if isinstance(value, Mapping):
        if set(children) != {f"f:{key}" for key in value}:
            return False
        return all(_field(children[f"f:{key}"], item) for key, item in value.items())
    return False


def _field(node: Any, value: Any) -> bool:
    if not isinstance(node, Mapping) or value is None:
        return False  # a null in a manifest: how the server reads it is its call
    if isinstance(value, Mapping):
        if not value:
            return not node or set(node) == {"."}
        return _same_fields(node, value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return _list(node, value)
    return not node


def _list(node: Mapping[str, Any], items: Sequence[Any]) -> bool:
    """A list owned as a whole (atomic: an empty node), or element by element: `k:` by its
    key fields (a list map), `v:` by value (a set)."""
    if not node:
        return True
    if len(node) != len(items):
        return False
    matched: set[int] = set()
    for key, child in node.items():
        kind, _, raw = key.partition(":")
        try:
            wanted = json.loads(raw)
        except ValueError:
            return False
        if kind == "k" and isinstance(wanted, Mapping):
            index = next((i for i, item in enumerate(items) if i not in matched
                          and isinstance(item, Mapping)
                          and all(item.get(k) == v for k, v in wanted.items())), None)
            if index is None:
                return False
            matched.add(index)
            element = {k: v for k, v in child.items() if k != "."} \
                if isinstance(child, Mapping) else None
            if element is None or not _same_fields(element, items[index]):
                return False
        elif kind == "v":
            index = next((i for i, item in enumerate(items)
                          if i not in matched and item == wanted), None)
            if index is None:
                return False
            matched.add(index)
        else:
            return False
    return len(matched) == len(items)


def _contains(live: Any, desired: Any) -> bool:
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and _contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, Sequence) and not isinstance(desired, str | bytes):
        return (
            isinstance(live, Sequence) and not isinstance(live, str | bytes)
            and len(live) == len(desired)
            and all(_contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    return bool(desired == live)

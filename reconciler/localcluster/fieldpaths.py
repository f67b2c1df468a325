"""Field paths and field sets, as server-side apply's managedFields (FieldsV1) describe them.

A path is a tuple of elements: ("f", name) a map field, ("k", '{"name":"a"}') a keyed list
item, ("v", '"x"') a set value, ("i", "0") a list index. Called by `managedfields`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from reconciler.localcluster import schema as schemas

Element = tuple[str, str]
Path = tuple[Element, ...]

MISSING: Any = object()

# Lists of built-in kinds merged by key rather than replaced (a subset of the strategic merge keys).
_BUILTIN_LIST_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "secrets": ("name",),
    "tolerations": (),  # atomic
}
_BUILTIN_SETS = ("finalizers",)


class Shape:
    """How to walk a value: which maps are atomic and how lists merge."""

    def __init__(self, *, schema: Mapping[str, Any] | None, custom: bool, name: str = "") -> None:
        self.schema = schema
        self.custom = custom
        self.name = name

    def child(self, key: str) -> Shape:
        """The shape of a map field."""
        return Shape(schema=schemas.child_schema(self.schema, key), custom=self.custom, name=key)

    def item(self) -> Shape:
        """The shape of a list item."""
        return Shape(schema=schemas.items_schema(self.schema), custom=self.custom, name="")

    def atomic_map(self) -> bool:
        """Whether a map is owned and replaced as a whole."""
        return bool(self.schema and self.schema.get("x-kubernetes-map-type") == "atomic")

    def list_kind(self, value: list[Any]) -> tuple[str, tuple[str, ...]]:
        """("atomic"|"map"|"set", keys) for a list value."""
        if self.schema is not None and self.custom:
            kind = self.schema.get("x-kubernetes-list-type", "atomic")
            if kind == "map":
                return "map", tuple(self.schema.get("x-kubernetes-list-map-keys") or ())
            return ("set", ()) if kind == "set" else ("atomic", ())
        if self.schema:  # a built-in kind's shipped schema: its list type, else its merge key
            kind = self.schema.get("x-kubernetes-list-type")
            merge_key = self.schema.get("x-kubernetes-patch-merge-key")
            if kind is None and merge_key:
                return "map", (str(merge_key),)
            kind = kind or "atomic"
            if kind == "map":
                return "map", tuple(self.schema.get("x-kubernetes-list-map-keys") or ())
            return ("set", ()) if kind == "set" else ("atomic", ())
        if self.custom and self.name != "finalizers":
            return "atomic", ()
        if self.name in _BUILTIN_SETS and all(isinstance(v, str) for v in value):
            return "set", ()
        if not value or not all(isinstance(v, dict) for v in value):
            return "atomic", ()
        if self.name == "ports":
            port = "containerPort" if all("containerPort" in v for v in value) else "port"
            return "map", (port, "protocol")
        keys = _BUILTIN_LIST_KEYS.get(self.name)
        if keys is None and all("name" in v for v in value):
            keys = ("name",)
        if not keys:
            return "atomic", ()
        if not all(all(k in v for k in keys) for v in value):
            return "atomic", ()
        return "map", keys


def item_key(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """The `k:` element text of a keyed list item (protocol defaults to TCP for ports)."""
    key: dict[str, Any] = {}
    for k in keys:
        if k in item:
            key[k] = item[k]
        elif k == "protocol":
            key[k] = "TCP"
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def value_key(value: Any) -> str:
    """The `v:` element text of a set value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def leaves(value: Any, shape: Shape, prefix: Path = ()) -> set[Path]:
    """Every owned path of a value: leaf fields, atomic values and list items."""
    out: set[Path] = set()
    _collect(value, shape, prefix, out)
    return out


def _collect(value: Any, shape: Shape, path: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and not shape.atomic_map():
        if not value:
            if path:
                out.add(path)
            return
        for k, v in value.items():
            _collect(v, shape.child(k), (*path, ("f", k)), out)
        return
    if isinstance(value, list):
        kind, keys = shape.list_kind(value)
        if kind == "map" and value:
            item_shape = shape.item()
            for item in value:
                item_path = (*path, ("k", item_key(item, keys)))
                out.add(item_path)
                _collect(item, item_shape, item_path, out)
            return
        if kind == "set" and value:
            for v in value:
                out.add((*path, ("v", value_key(v))))
            return
    if path:
        out.add(path)


def _find_item(items: list[Any], element: Element, shape: Shape) -> int:
    kind, keys = shape.list_kind(items)
    for i, item in enumerate(items):
        if element[0] == "k" and isinstance(item, dict) and item_key(item, keys) == element[1]:
            return i
        if (element[0] == "k" and isinstance(item, dict) and kind != "map"
                and item_key(item, tuple(json.loads(element[1]))) == element[1]):
            return i
        if element[0] == "v" and value_key(item) == element[1]:
            return i
        if element[0] == "i" and str(i) == element[1]:
            return i
    return -1


def get(value: Any, path: Path, shape: Shape) -> Any:
    """The value at a path, or MISSING."""
    for element in path:
        if element[0] == "f":
            if not isinstance(value, dict) or element[1] not in value:
                return MISSING
            value = value[element[1]]
            shape = shape.child(element[1])
        else:
            if not isinstance(value, list):
                return MISSING
            index = _find_item(value, element, shape)
            if index < 0:
                return MISSING
            value = value[index]
            shape = shape.item()
    return value


def remove(value: Any, path: Path, shape: Shape) -> bool:
    """Remove the field or item at a path in place; returns whether it was there."""
    if not path:
        return False
    parent = get(value, path[:-1], shape) if len(path) > 1 else value
    parent_shape = shape
    for element in path[:-1]:
        parent_shape = parent_shape.child(element[1]) if element[0] == "f" else parent_shape.item()
    last = path[-1]
    if last[0] == "f":
        if isinstance(parent, dict) and last[1] in parent:
            del parent[last[1]]
            return True
        return False
    if isinstance(parent, list):
        index = _find_item(parent, last, parent_shape)
        if index >= 0:
            del parent[index]
            return True
    return False


def _element_text(element: Element) -> str:
    return f"{element[0]}:{element[1]}"


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set as FieldsV1 JSON (`f:data: {f:key: {}}`, `.` for an owned inner node)."""
    root: dict[str, Any] = {}
    members = set(paths)
    for path in sorted(members):
        node = root
        for element in path:
            node = node.setdefault(_element_text(element), {})
    for path in members:
        node = root
        for element in path:
            node = node[_element_text(element)]
        if node and "." not in node:
            node["."] = {}
    return _sorted(root)


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted(node[k]) for k in sorted(node)}


def decode(fields: Mapping[str, Any] | None) -> set[Path]:
    """FieldsV1 JSON back to a set of paths."""
    out: set[Path] = set()

    def walk(node: Mapping[str, Any], path: Path) -> None:
        for text, child in node.items():
            if text == ".":
                if path:
                    out.add(path)
                continue
            kind, _, rest = text.partition(":")
            element = (kind, rest)
            if isinstance(child, dict) and child:
                walk(child, (*path, element))
            else:
                out.add((*path, element))

    if isinstance(fields, Mapping):
        walk(fields, ())
    return out


def render(path: Path) -> str:
    """A path as the apiserver prints it in conflicts: `.spec.containers[name="a"].image`."""
    out = []
    for kind, text in path:
        if kind == "f":
            out.append(f".{text}")
        elif kind == "k":
            key = json.loads(text)
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]")
        elif kind == "v":
            out.append(f"[={text}]")
        else:
            out.append(f"[{text}]")
    return "".join(out)


def under(path: Path, prefix: Path) -> bool:
    """Whether a path is the prefix itself or inside it."""
    return path[: len(prefix)] == prefix


def iter_prefixes(path: Path) -> Iterator[Path]:
    """Every proper ancestor path, nearest first."""
    for i in range(len(path) - 1, 0, -1):
        yield path[:i]

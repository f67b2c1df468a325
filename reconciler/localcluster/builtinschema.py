"""The schemas of the built-in kinds, from the OpenAPI Kubernetes ships, read lazily.

The `kubernetes-validate` package (a dependency) ships the OpenAPI of Kubernetes v1.37 as
JSON Schema: `_definitions.json` holds every type, each top-level kind marked with
`x-kubernetes-group-version-kind`. `for_kind()` answers a `Node`: a read-only view of one
kind's schema in the structural form `schema` and `fieldpaths` walk for custom resources
(`type` one name plus `nullable`, `$ref`s followed on access, int-or-string marked,
`enum`s left to the kinds' own validation). Nothing is read until an object of a
built-in kind is first validated, so the local cluster starts as fast without it.
Called by `resources` (each built-in ResourceType's schema).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "1.37"
_FOLDER = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
_REF_PREFIX = "#/$defs/"
# Keys of the shipped schemas the structural view leaves out: documentation, and what
# Go validation (not the schema) enforces on a real server, in its own words.
_DROPPED = frozenset({"description", "enum", "format", "$ref", "oneOf", "type",
                      "additionalProperties", "properties", "items",
                      "x-kubernetes-group-version-kind", "x-kubernetes-unions"})


def _schema_dir() -> Path:
    """Where the package keeps its schemas, found without importing it (it imports
    jsonschema, slow to load)."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / _FOLDER


@functools.cache
def _definitions() -> Mapping[str, Any]:
    raw = json.loads((_schema_dir() / "_definitions.json").read_text())
    definitions: Mapping[str, Any] = raw["$defs"]
    return definitions


@functools.cache
def _kinds() -> Mapping[tuple[str, str, str], str]:
    """(group, version, kind) -> the definition's name."""
    out: dict[tuple[str, str, str], str] = {}
    for name, definition in _definitions().items():
        for gvk in definition.get("x-kubernetes-group-version-kind") or ():
            key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
            out.setdefault(key, name)
    return out


def has_kind(*, group: str, version: str, kind: str) -> bool:
    """Whether the shipped OpenAPI has a schema for the kind (reads it on first call)."""
    return (group, version, kind) in _kinds()


class Node(Mapping[str, Any]):
    """One schema node of a shipped definition, in structural form, resolved on access."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        while "$ref" in raw:  # {"$ref": ..., "description": ...}: the referenced type
            raw = _definitions()[str(raw["$ref"]).removeprefix(_REF_PREFIX)]
        self._raw = raw
        self._view: dict[str, Any] | None = None

    def _build(self) -> dict[str, Any]:
        raw = self._raw
        view: dict[str, Any] = {k: v for k, v in raw.items() if k not in _DROPPED}
        types = raw.get("type")
        names = [types] if isinstance(types, str) else list(types or ())
        if "null" in names:
            view["nullable"] = True
        names = [t for t in names if t != "null"]
        if len(names) == 1:
            view["type"] = names[0]
        alternatives = {t for option in raw.get("oneOf") or ()
                        for t in ([option.get("type")] if isinstance(option.get("type"), str)
                                  else option.get("type") or ()) if t != "null"}
        if alternatives == {"string", "integer"}:
            view["x-kubernetes-int-or-string"] = True  # IntOrString
        elif alternatives:
            view["nullable"] = True  # Quantity: a string or any number, no one type
        if isinstance(raw.get("properties"), Mapping):
            view["properties"] = _Properties(raw["properties"])
        if isinstance(raw.get("items"), Mapping):
            view["items"] = Node(raw["items"])
        additional = raw.get("additionalProperties")
        if isinstance(additional, Mapping):
            view["additionalProperties"] = Node(additional)
        elif view.get("type") == "object" and "properties" not in view and additional is None:
            view["x-kubernetes-preserve-unknown-fields"] = True  # RawExtension, FieldsV1
        if not names and not alternatives and not any(
                k in raw for k in ("properties", "items", "additionalProperties")):
            view["x-kubernetes-preserve-unknown-fields"] = True  # JSON: any value at all
        return view

    @property
    def _data(self) -> dict[str, Any]:
        if self._view is None:
            self._view = self._build()
        return self._view

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class _Properties(Mapping[str, Any]):
    """A node's `properties`, each property's node made when first asked for."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._nodes: dict[str, Node] = {}

    def __getitem__(self, key: str) -> Node:
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = Node(self._raw[key])
        return node

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class LazyKind(Mapping[str, Any]):
    """A kind's schema that reads the shipped OpenAPI only when first looked into, so a
    ResourceType can carry it from the start at no cost. Empty when Kubernetes ships no
    schema for the kind."""

    def __init__(self, *, group: str, version: str, kind: str) -> None:
        self.gvk = (group, version, kind)

    @functools.cached_property
    def _node(self) -> Mapping[str, Any]:
        name = _kinds().get(self.gvk)
        return Node(_definitions()[name]) if name else {}

    def __getitem__(self, key: str) -> Any:
        return self._node[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __bool__(self) -> bool:
        return True  # present, even before it is read

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LazyKind) and other.gvk == self.gvk

    def __hash__(self) -> int:
        return hash(self.gvk)
